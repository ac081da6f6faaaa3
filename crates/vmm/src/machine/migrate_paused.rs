//! Migrating a paused domain (`migrate` of a guest that does not run): nothing can dirty its memory,
//! so there is no pre-copy and no dirty logging: one pass sends the machine state and all non-zero
//! RAM — the save stream ([`crate::snapshot::write`]), which the receiving side reads like any
//! migration stream. The writable disks' locks go to the target before the stream starts (the paused
//! guest has no request in flight); the guest stays paused afterwards, and also on a failure (the
//! caller then takes the locks back).

use std::cell::RefCell;
use std::fs::File;
use std::io::BufWriter;
use std::time::Instant;

use domus_vmm_api::{MigrateReply, Phase};

use super::progress::{ram_pages, Counting, Reporter};
use super::save::SaveSources;
use super::vcpus::Vcpus;
use crate::devices::Devices;

/// Sends the paused machine into `out` in one pass; `progress` hears of the bytes sent.
///
/// # Errors
/// A message; the stream is then incomplete (the target refuses it).
pub fn send(
    src: &SaveSources<'_>,
    vcpus: &RefCell<Vcpus>,
    devices: &Devices,
    memory_mib: u64,
    out: File,
    progress: &Reporter<'_>,
) -> Result<MigrateReply, String> {
    let started = Instant::now();
    let snap = super::save::collect(src, vcpus, devices, memory_mib, true)?;
    progress.stage(Phase::Snapshot, 1, 0, ram_pages(src.ram.mmap()));
    let out = Counting::new(out, progress);
    let bytes = crate::snapshot::write(
        BufWriter::with_capacity(1 << 20, out),
        &snap,
        src.ram.mmap(),
    )
    .map_err(|e| format!("migrate: {e}"))?;
    let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(bytes, ms, "paused domain sent");
    Ok(MigrateReply {
        bytes,
        iterations: 1,
        dirty_pages: Vec::new(),
        tracking: "none".into(),
        total_ms: ms,
        // The guest did not run at any point: all of it was stop-and-copy.
        stop_copy_ms: ms,
    })
}
