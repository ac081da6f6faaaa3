//! `xl rename DOMAIN NEW-NAME`.

use clap::Args as ClapArgs;
use domus_api::messages::RenameRequest;

use super::Ctx;
use crate::api;

/// Options of `rename`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The domain (name or domid).
    pub domain: String,
    /// Its new name.
    pub new_name: String,
}

/// Runs `rename`.
///
/// # Errors
/// When the domain does not exist or the name is taken.
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    api::client().action(
        &args.domain,
        "rename",
        Some(&RenameRequest {
            name: args.new_name,
        }),
    )?;
    Ok(())
}
