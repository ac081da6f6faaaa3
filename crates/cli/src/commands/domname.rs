//! `xl domname DOMID`: print the domain's name.

use clap::Args as ClapArgs;

use super::Ctx;
use crate::api;

/// Options of `domname`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The domain id.
    pub domid: u32,
}

/// Runs `domname`.
///
/// # Errors
/// When there is no such domain.
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let d = api::client().get(&args.domid.to_string())?;
    println!("{}", d.name);
    Ok(())
}
