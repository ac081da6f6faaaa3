//! `xl domid NAME`: print the domain's id.

use clap::Args as ClapArgs;

use super::Ctx;
use crate::api;

/// Options of `domid`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The domain's name.
    pub name: String,
}

/// Runs `domid`.
///
/// # Errors
/// xl's "Can't get domid of domain name ..." when there is no such domain.
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let d = api::client().get(&args.name)?;
    println!("{}", d.domid);
    Ok(())
}
