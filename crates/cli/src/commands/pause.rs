//! `xl pause DOMAIN`.

use clap::Args as ClapArgs;

use super::Ctx;
use crate::api;

/// Options of `pause`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The domain (name or domid).
    pub domain: String,
}

/// Runs `pause`.
///
/// # Errors
/// When the domain does not exist or is not running.
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    api::client().action(&args.domain, "pause", None::<&()>)?;
    Ok(())
}
