//! `xl dmesg [-c]`: domusd's own recent log lines (Domus's counterpart of the hypervisor's ring).

use clap::Args as ClapArgs;

use super::Ctx;
use crate::api;

/// Options of `dmesg`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Clear the ring after printing it.
    #[arg(short = 'c', long = "clear")]
    pub clear: bool,
}

/// Runs `dmesg`.
///
/// # Errors
/// When domusd is unreachable.
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    for l in api::client().dmesg(args.clear)?.lines {
        println!("{l}");
    }
    Ok(())
}
