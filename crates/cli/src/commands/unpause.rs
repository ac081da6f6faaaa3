//! `xl unpause DOMAIN`.

use clap::Args as ClapArgs;

use super::Ctx;
use crate::api;

/// Options of `unpause`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The domain (name or domid).
    pub domain: String,
}

/// Runs `unpause`.
///
/// # Errors
/// When the domain does not exist or is not running.
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    api::client().action(&args.domain, "unpause", None::<&()>)?;
    Ok(())
}
