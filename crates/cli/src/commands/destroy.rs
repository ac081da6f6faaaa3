//! `xl destroy DOMAIN`: stop the domain at once (its VMM is told to stop, killed if it does not).

use clap::Args as ClapArgs;

use super::Ctx;
use crate::api;

/// Options of `destroy`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The domain (name or domid).
    pub domain: String,
}

/// Runs `destroy`; returns once the domain is gone.
///
/// # Errors
/// When the domain does not exist.
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    api::client().action(&args.domain, "destroy", None::<&()>)?;
    Ok(())
}
