//! `xl migrate-receive`: the receiving end of `migrate`, normally started by it over ssh. Reads the
//! migration stream on stdin and has the local domusd restore it: its stdin goes to domusd with the
//! request (SCM_RIGHTS) and from there to the new VMM, which reads the stream from it as it arrives,
//! with no copy in this process. With a domusd that predates passed streams, the stream reaches it
//! through a private FIFO this copies into. It prints `migrate-receive: the target reads the stream`
//! on stdout once the VMM started reading (the VMM says so on a pipe passed with the stream; with a
//! FIFO, its draining tells) — the sender pauses the guest for the stop-and-copy only then:
//! `migrate_link` — and, once the domain runs, `migrate-receive: running as domid N`, which the
//! sender waits for. On any failure domusd removes what it started and this exits 1.
//! `DOMUS_MIGRATE_RELAY=1` in the environment takes the FIFO in any case.

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
    // `DOMUS_MIGRATE_RELAY=1` (tests; the sender's environment reaches this through a local "ssh")
    // takes the FIFO as with an older domusd.
    let fifo = std::env::var_os("DOMUS_MIGRATE_RELAY").is_some_and(|v| !v.is_empty());
    let passed = if fifo { None } else { restore_passed(&args)? };
    let d = match passed {
        Some(d) => d,
        None => restore_through_fifo(&args)?,
    };
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

/// Says on stdout that the target reads the stream.
fn say_receiving() {
    phase("migrate-receive: the target reads the stream");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", super::migrate_link::RECEIVING);
    let _ = out.flush();
}

/// Has domusd restore the stream on stdin, passing stdin itself along with a pipe the new VMM writes
/// one byte to once it reads the stream; None when domusd predates passed streams (nothing was read
/// from stdin then).
///
/// # Errors
/// domusd refused the stream or could not start the domain.
fn restore_passed(args: &Args) -> anyhow::Result<Option<DomainInfo>> {
    use std::os::fd::AsFd;
    let (told, tell) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .context("cannot create the notifier pipe")?;
    std::thread::spawn(move || {
        let mut b = [0u8; 1];
        if matches!(rustix::io::read(&told, &mut b), Ok(1)) {
            say_receiving();
        }
    });
    let req = RestoreRequest {
        path: "(the stdin of migrate-receive)".into(),
        paused: args.paused,
        config: None,
        incoming: true,
        passed: true,
    };
    phase("migrate-receive: asking domusd to restore the stream on stdin");
    let stdin = std::io::stdin();
    let got =
        api::client().call_with::<DomainInfo>("POST", "/v1/restore", Some(&req), &|s, msg| {
            super::migrate_link::send_with_fds(s, msg, &[stdin.as_fd(), tell.as_fd()])
        });
    drop(tell);
    match got {
        Ok(d) => Ok(Some(d)),
        Err(domus_api::client::ClientError::Api {
            status: 400,
            message,
        }) if message.contains("unknown field `passed`") => {
            tracing::debug!("domusd predates passed streams: through a FIFO");
            Ok(None)
        }
        Err(e) => Err(anyhow!(
            "the incoming domain could not be started here: {e}"
        )),
    }
}

/// Has domusd restore the stream from a private FIFO this copies stdin into (a domusd that predates
/// passed streams).
///
/// # Errors
/// As [`run`].
fn restore_through_fifo(args: &Args) -> anyhow::Result<DomainInfo> {
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
        super::migrate_link::feed(&writer_path, say_receiving)
    });
    let req = RestoreRequest {
        path: fifo.display().to_string(),
        paused: args.paused,
        config: None,
        incoming: true,
        passed: false,
    };
    phase("migrate-receive: asking domusd to restore");
    api::client()
        .call("POST", "/v1/restore", Some(&req))
        .map_err(|e| anyhow!("the incoming domain could not be started here: {e}"))
}
