//! `xl info`: host facts in xl's `key : value` layout.

use clap::Args as ClapArgs;

use super::Ctx;
use crate::{api, output};

/// Options of `info` (xl's `-n` NUMA detail is not shown).
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Accepted for compatibility.
    #[arg(short = 'n', long = "numa")]
    pub numa: bool,
}

/// Runs `info`.
///
/// # Errors
/// When domusd is unreachable.
pub fn run(_ctx: &Ctx, _args: Args) -> anyhow::Result<()> {
    print!("{}", output::info(&api::client().host()?));
    Ok(())
}
