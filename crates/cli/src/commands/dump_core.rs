//! `xl dump-core DOMAIN FILENAME`: an ELF core of the guest — its memory and one NT_PRSTATUS note per
//! vCPU — readable by gdb (and by crash(8) for a Linux guest). The domain keeps running afterwards, or
//! stays paused if it was. The file is written on the host by the domain's VMM; a relative name is taken
//! from the current directory, as xl does.

use anyhow::Context;
use clap::Args as ClapArgs;
use domus_api::messages::DumpCoreRequest;

use super::Ctx;
use crate::api;

/// Arguments of `dump-core`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The domain (name or domid).
    pub domain: String,
    /// The core file to write.
    pub filename: std::path::PathBuf,
}

/// Runs `dump-core`.
///
/// # Errors
/// The domain missing or not running, or the core not written.
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let path = std::path::absolute(&args.filename)
        .with_context(|| format!("cannot resolve {}", args.filename.display()))?;
    let req = DumpCoreRequest {
        path: path.display().to_string(),
    };
    api::client().action(&args.domain, "dump-core", Some(&req))?;
    Ok(())
}
