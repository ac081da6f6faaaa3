//! `xl save [-c] [-p] DOMAIN FILE [CONFIG]`: writes the domain's whole state (RAM, vCPUs, devices)
//! and its configuration to FILE, then destroys it; `-c` leaves it running, `-p` (with `-c`) paused.
//! CONFIG names an xl config file to embed instead of the domain's own. FILE appears only once
//! complete (domusd writes a temporary file next to it and renames it); a relative FILE is taken from
//! the current directory, as xl does. See `restore`.
//!
//! While the VMM writes, a progress line (bytes written, rate) appears on stderr about once a second
//! (`super::progress`): the request runs on a thread while this one polls domusd for the VMM's
//! latest report.

use std::sync::mpsc::RecvTimeoutError;

use anyhow::Context;
use clap::Args as ClapArgs;
use domus_api::messages::{ProgressReply, SaveRequest};

use super::Ctx;
use crate::api;

/// Arguments of `save`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Leave the domain running after saving it.
    #[arg(short = 'c')]
    pub keep: bool,
    /// Leave the domain paused after saving it (with or without -c, as xl: implies keeping it).
    #[arg(short = 'p')]
    pub paused: bool,
    /// The domain (name or domid).
    pub domain: String,
    /// The image file to write.
    pub file: std::path::PathBuf,
    /// An xl config file to embed instead of the domain's own.
    pub config: Option<std::path::PathBuf>,
}

/// Runs `save`.
///
/// # Errors
/// The domain missing or not running, FILE not writable, or the state not saved (the domain then
/// runs on).
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let path = std::path::absolute(&args.file)
        .with_context(|| format!("cannot resolve {}", args.file.display()))?;
    let config = match &args.config {
        Some(f) => Some(api::prepare_config(super::create::load(
            &super::create::Args::for_file(f.clone()),
        )?)?),
        None => None,
    };
    let req = SaveRequest {
        path: path.display().to_string(),
        keep: args.keep || args.paused,
        paused: args.paused,
        config,
        progress_ms: Some(super::progress::interval_ms()),
    };
    let started = std::time::Instant::now();
    eprintln!("Saving domain {} to {}", args.domain, path.display());
    let (tx, rx) = std::sync::mpsc::channel();
    let dom = args.domain.clone();
    std::thread::spawn(move || {
        let _ = tx.send(api::client().action(&dom, "save", Some(&req)));
    });
    let client = api::client();
    let mut last = None;
    let result = loop {
        match rx.recv_timeout(super::progress::interval()) {
            Ok(r) => break r,
            Err(RecvTimeoutError::Disconnected) => {
                anyhow::bail!("the save request was lost (its thread ended without an answer)")
            }
            Err(RecvTimeoutError::Timeout) => {
                // Progress is best effort: a failed poll just shows nothing this time.
                if let Ok(ProgressReply { progress: Some(p) }) = client.progress(&args.domain) {
                    if last != Some(p) {
                        eprintln!("{}", super::progress::line("save", &args.domain, &p));
                        last = Some(p);
                    }
                }
            }
        }
    };
    result?;
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "Saved {} MiB in {secs:.2} s ({:.0} MiB/s)",
        bytes >> 20,
        (bytes as f64 / (1 << 20) as f64) / secs.max(1e-3)
    );
    Ok(())
}
