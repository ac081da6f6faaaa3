//! `xl migrate-receive`: the receiving end of `migrate`, normally started by it over ssh. Reads the
//! migration stream on stdin and has the local domusd restore it (the stream reaches domusd through a
//! private FIFO, and from there the new VMM, which reads it as it arrives). It prints
//! `migrate-receive: the target reads the stream` on stdout once the VMM started reading (the sender
//! pauses the guest for the stop-and-copy only then: `migrate_link`) and, once the domain runs,
//! `migrate-receive: running as domid N`, which the sender waits for. On any failure
//! domusd removes what it started and this exits 1.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Args as ClapArgs;
use domus_api::messages::{DomainInfo, RestoreRequest};

use super::Ctx;
use crate::api;

/// Arguments of `migrate-receive`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Debug messages (xl's -d).
    #[arg(short = 'd')]
    pub debug: bool,
    /// Leave the domain paused on arrival.
    #[arg(short = 'p')]
    pub paused: bool,
}

/// Logs a migration phase at debug level with its wall-clock time (`DOMUS_LOG=debug` or `-vv`): the
/// CLI's log lines carry no timestamps, and a phase breakdown lines these up with domusd's and the
/// VMMs' (UTC, microseconds).
pub fn phase(what: &str) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        tracing::debug!(
            at = format!("{}.{:06}", at.as_secs(), at.subsec_micros()),
            "{what}"
        );
    }
}

/// Removes the FIFO and its directory.
struct FifoDir(PathBuf);

impl Drop for FifoDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `migrate-receive`.
///
/// # Errors
/// The stream broken or refused, or the local domusd unable to start the domain.
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    phase("migrate-receive: started");
    let dir = std::env::temp_dir().join(format!("domus-migrate-{}", std::process::id()));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let _cleanup = FifoDir(dir.clone());
    let fifo = dir.join("stream");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .with_context(|| format!("cannot create the FIFO {}", fifo.display()))?;
    let writer_path = fifo.clone();
    // The sender waits for the "receiving" line before pausing the guest (see `migrate_link`).
    std::thread::spawn(move || -> std::io::Result<u64> {
        super::migrate_link::feed(&writer_path, || {
            phase("migrate-receive: the target reads the stream");
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", super::migrate_link::RECEIVING);
            let _ = out.flush();
        })
    });
    let req = RestoreRequest {
        path: fifo.display().to_string(),
        paused: args.paused,
        config: None,
        incoming: true,
    };
    phase("migrate-receive: asking domusd to restore");
    let d: DomainInfo = api::client()
        .call("POST", "/v1/restore", Some(&req))
        .map_err(|e| anyhow!("the incoming domain could not be started here: {e}"))?;
    phase("migrate-receive: domusd says the domain runs");
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}{} ({})",
        super::migrate::READY_PREFIX,
        d.domid,
        d.name
    )?;
    out.flush()?;
    Ok(())
}
