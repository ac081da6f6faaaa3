//! Live migration, sending side (`migrate` control request): the snapshot stream
//! ([`crate::snapshot::format`]) written while the guest runs.
//!
//! 1. KVM's dirty logging goes on (the bitmap, KVM_MEM_LOG_DIRTY_PAGES, for every memory slot) and so
//!    does the device model's dirty hook ([`crate::vstate::memory::GuestRam::mark_dirty`]: device
//!    writes to guest memory, which KVM does not see).
//! 2. Round 1 sends all non-zero RAM (pages the host never mapped are skipped unread:
//!    [`crate::snapshot::resident`]); each later round sends the pages dirtied meanwhile (vCPU and
//!    device writes), measuring the stream's rate.
//! 3. When the dirty set fits the downtime target at that rate (or after [`MAX_ROUNDS`], or when it
//!    stops shrinking), and — when `migrate` hands a socket for the go byte — once the target
//!    VMM reads the stream ([`super::migrate_ready`]: rounds go on every 20 ms until then, and the
//!    socket is drained first; meanwhile the code of the stop-and-copy is mapped and the state
//!    collection rehearsed once: [`crate::warm`], `rehearse`), the guest is paused (devices drain their in-flight requests, whose writes are
//!    marked dirty), the last dirty pages and the machine state ([`super::save::without_vcpus`]; the vCPUs
//!    report theirs meanwhile: [`super::save::add_vcpus`]) are sent,
//!    and the trailer ends the stream (no progress report meanwhile: [`super::progress::Reporter::hold`]).
//!    The guest stays paused: the caller destroys it once the target runs, or resumes it, after
//!    turning dirty logging off ([`stop_tracking`], no longer right after the stream).
//! 4. The reply waits [`REPLY_DELAY`] (see there).
//!
//! vCPU hotplug: `set-vcpus` cannot arrive during a migration (the main loop serves one control
//! request at a time), vCPUs created earlier have their dirty rings mapped like the boot vCPUs, and a
//! vCPU the guest ejects during the pre-copy is parked and still reports its state.
//!
//! Writable disks: their locks go from this VMM to the target's when the guest is paused for the
//! stop-and-copy, and come back if the guest runs here again ([`super::disk_locks`]).
//!
//! The receiving side needs nothing special: a restore reads RAM runs in order (later ones overwrite
//! earlier ones) and the machine state, whichever comes first.
//!
//! Dirty tracking: KVM's dirty ring where the machine was built with it
//! ([`crate::vstate::dirty_ring`]), else the bitmap; the reply says which ran.

use std::cell::RefCell;
use std::fs::File;
use std::io::BufWriter;
use std::time::Instant;

use domus_vmm_api::{MigrateReply, Phase};

use super::progress::{ram_pages, Counting};
use super::save::SaveSources;
use super::vcpus::Vcpus;
use crate::devices::Devices;
use crate::snapshot::format::{StreamWriter, TAG_MACHINE};
use crate::snapshot::{write_pages, write_pause_mark, write_ram};

/// Most pre-copy rounds before the stop-and-copy regardless of the dirty set.
pub const MAX_ROUNDS: u32 = 30;
/// Default downtime target, ms.
pub const DEFAULT_DOWNTIME_MS: u64 = 300;
/// How long a complete stream's sender waits before it goes on (logs, progress, its reply). Nothing
/// the target needs comes after the stream's last byte, and what does come wakes the client and
/// the supervisor, which need it only together with the target's confirmation (2-10 ms later:
/// the target records the running domain, synced, first). On a host shared with the target (a
/// local migration; the benchmark's two "hosts") that work otherwise ran on the CPUs the target
/// restarts the guest on, inside the guest-visible downtime: a scheduler trace showed the client,
/// the benchmark's own reader of its output and the source VMM's log writes running ahead of the
/// target's released vCPU thread for 100-300 µs.
pub const REPLY_DELAY: std::time::Duration = std::time::Duration::from_millis(1);

/// The pages dirtied since the previous call: KVM's bitmap plus device writes, sorted, unique.
fn dirty(src: &SaveSources<'_>) -> Result<Vec<u64>, String> {
    let mut pages = src
        .vm
        .take_dirty_pages(src.ram.mmap())
        .map_err(|e| format!("migrate: KVM_GET_DIRTY_LOG failed: {e}"))?;
    pages.extend(src.ram.take_dirty_pages().into_iter().map(|a| a.0));
    pages.sort_unstable();
    pages.dedup();
    Ok(pages)
}

/// Maps the code the stop-and-copy runs for the first time ([`crate::warm`]): its page faults
/// are then no part of the guest-visible downtime.
fn warm_up() {
    crate::warm::map_code_logged("migration");
}

/// Collects and encodes the machine state once while the guest runs, and throws it away: the
/// stop-and-copy then runs code, heap and KVM paths that have run before (each vCPU thread's
/// first state read and encoding took 60-85 µs against 45-50 µs later on the development host;
/// decoding and encoding the snapshot the first time 10-20 µs against 1-2 µs). Costs the guest one
/// state read per vCPU (~50 µs each) during the pre-copy. Nothing read here is sent.
///
/// # Errors
/// A vCPU did not report its state (none is left pending).
fn rehearse(
    src: &SaveSources<'_>,
    vcpus: &RefCell<Vcpus>,
    devices: &Devices,
    memory_mib: u64,
) -> Result<(), String> {
    let t = Instant::now();
    let acks = vcpus
        .borrow_mut()
        .broadcast(crate::threads::ThreadEvent::SaveState)
        .map_err(|e| format!("migrate: a vCPU did not report its state: {e}"))?;
    let encoded = super::save::assemble(src, acks, devices, memory_mib, false)
        .and_then(|snap| crate::snapshot::encode_state(&snap).map_err(|e| e.to_string()));
    match encoded {
        Ok(state) => tracing::debug!(
            us = t.elapsed().as_micros(),
            state_bytes = state.len(),
            "migration: state collection rehearsed"
        ),
        // Only a rehearsal: the stop-and-copy reads everything again and reports its errors.
        Err(e) => tracing::debug!(error = %e, "migration: state collection rehearsal failed"),
    }
    Ok(())
}

/// Runs the pre-copy and the stop-and-copy into `out`. `pause` stops vCPUs and device threads,
/// with each vCPU's `SaveState` queued behind its pause (collected here; none pending on an error);
/// `out`'s reporter hears of each round and of the bytes sent. The go byte is awaited on `go`
/// (a direct stream's socket) or, without it, on `out` when that is a socket.
///
/// On success dirty logging stays on: the caller turns it off with [`stop_tracking`] before the
/// guest can run again.
///
/// # Errors
/// A message; the caller then resumes the guest (the stream is incomplete: the target refuses it).
pub fn send(
    src: &SaveSources<'_>,
    vcpus: &RefCell<Vcpus>,
    devices: &Devices,
    memory_mib: u64,
    (out, go): (Counting<'_, '_, File>, Option<&File>),
    downtime_ms: u64,
    pause: &dyn Fn() -> Result<(), String>,
) -> Result<MigrateReply, String> {
    let progress = out.reporter();
    let started = Instant::now();
    tracing::info!(downtime_ms, "migration: sending");
    let fail = |e: &dyn std::fmt::Display| format!("migrate: {e}");
    src.vm
        .set_dirty_logging(src.ram.mmap(), true)
        .map_err(|e| fail(&e))?;
    src.ram.enable_dirty_log();
    let waits = go.is_some() || super::migrate_ready::is_socket(out.get_ref());
    let result = (|| {
        // Start clean: what was dirty before logging began is sent by round 1 anyway.
        dirty(src)?;
        let mut w =
            StreamWriter::new(BufWriter::with_capacity(1 << 20, out)).map_err(|e| fail(&e))?;
        let mut reply = MigrateReply {
            tracking: src.vm.dirty_tracking().into(),
            ..MigrateReply::default()
        };
        let t = Instant::now();
        progress.stage(Phase::PreCopy, 1, 0, ram_pages(src.ram.mmap()));
        write_ram(&mut w, src.ram.mmap()).map_err(|e| fail(&e))?;
        let mut rate = w.bytes() as f64 / t.elapsed().as_secs_f64().max(1e-3);
        reply.iterations = 1;
        tracing::info!(bytes = w.bytes(), "migration: round 1 sent");
        let mut last = u64::MAX;
        let mut pages = dirty(src)?;
        loop {
            let n = pages.len() as u64;
            reply.dirty_pages.push(n);
            let fits = (n * 4096) as f64 <= rate * downtime_ms as f64 / 1000.0;
            let stalled = n >= last && reply.iterations >= 5;
            if fits || stalled || reply.iterations >= MAX_ROUNDS {
                break;
            }
            last = n;
            let t = Instant::now();
            let before = w.bytes();
            progress.stage(Phase::PreCopy, reply.iterations + 1, n, n);
            write_pages(&mut w, src.ram.mmap(), &pages).map_err(|e| fail(&e))?;
            let secs = t.elapsed().as_secs_f64().max(1e-3);
            rate = (w.bytes() - before) as f64 / secs;
            reply.iterations += 1;
            tracing::info!(
                round = reply.iterations,
                pages = n,
                bytes = w.bytes(),
                "pre-copy round"
            );
            pages = dirty(src)?;
        }
        // Not before the target reads the stream (see `migrate_ready`): meanwhile, more rounds.
        if waits {
            w.flush().map_err(|e| fail(&e))?;
            let since = Instant::now();
            warm_up();
            rehearse(src, vcpus, devices, memory_mib)?;
            while super::migrate_ready::poll(go.unwrap_or(w.get_ref().get_ref().get_ref()), since)?
                == super::migrate_ready::Ready::NotYet
            {
                let more = dirty(src)?;
                pages.extend(more);
                pages.sort_unstable();
                pages.dedup();
                write_pages(&mut w, src.ram.mmap(), &pages).map_err(|e| fail(&e))?;
                w.flush().map_err(|e| fail(&e))?;
                pages.clear();
            }
            let drained = super::migrate_ready::drain(w.get_ref().get_ref().get_ref());
            tracing::info!(
                waited_ms = since.elapsed().as_millis(),
                drain_us = drained.as_micros(),
                "migration: the target reads the stream"
            );
        }
        if !waits {
            warm_up();
            rehearse(src, vcpus, devices, memory_mib)?;
        }
        // Stop-and-copy. The vCPUs report their state (queued behind the pause) while the last
        // dirty pages go out and the rest of the machine's state is read.
        // The target stops waiting in a blocking read for what comes next (`read_marked`): its
        // wake-up is then no part of the downtime.
        write_pause_mark(&mut w).map_err(|e| fail(&e))?;
        w.flush().map_err(|e| fail(&e))?;
        // No progress report wakes the client until the stream is complete (`Reporter::hold`).
        progress.hold(true);
        let stop = Instant::now();
        pause()?;
        tracing::info!("migration: guest paused for the stop-and-copy");
        let t0 = Instant::now();
        let sent = (|| {
            let mut tail = dirty(src)?;
            let t_dirty = t0.elapsed();
            tail.extend(std::mem::take(&mut pages));
            tail.sort_unstable();
            tail.dedup();
            if let Some(l) = reply.dirty_pages.last_mut() {
                *l = tail.len() as u64;
            }
            let n = tail.len() as u64;
            progress.stage(Phase::StopAndCopy, reply.iterations, n, n);
            write_pages(&mut w, src.ram.mmap(), &tail).map_err(|e| fail(&e))?;
            let snap = super::save::without_vcpus(src, devices, memory_mib, false)?;
            Ok::<_, String>((tail.len(), t_dirty, snap))
        })();
        // Always collected: an answer left pending would be taken for the next event's.
        let acks = vcpus
            .borrow_mut()
            .wait_all(crate::threads::ThreadEvent::SaveState)
            .map_err(|e| format!("migrate: a vCPU did not report its state: {e}"));
        let t_pages = t0.elapsed();
        let (tail, t_dirty, mut snap) = sent?;
        super::save::add_vcpus(&mut snap, src, acks?)?;
        tracing::debug!("migration: machine state collected");
        let state = crate::snapshot::encode_state(&snap).map_err(|e| fail(&e))?;
        let t_encode = t0.elapsed();
        w.section(TAG_MACHINE, &[&state]).map_err(|e| fail(&e))?;
        reply.bytes = w.bytes() + 16;
        w.finish().map_err(|e| fail(&e))?;
        let t_sent = t0.elapsed();
        reply.stop_copy_ms = u64::try_from(stop.elapsed().as_millis()).unwrap_or(u64::MAX);
        reply.total_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        std::thread::sleep(REPLY_DELAY);
        progress.hold(false);
        progress.stage(
            Phase::StopAndCopy,
            reply.iterations,
            tail as u64,
            tail as u64,
        );
        tracing::debug!(
            dirty_us = t_dirty.as_micros(),
            collected_us = t_pages.as_micros(),
            encode_us = t_encode.as_micros(),
            sent_us = t_sent.as_micros(),
            state_bytes = state.len(),
            "migration: stop-and-copy timing"
        );
        tracing::info!(
            pages = tail,
            bytes = reply.bytes,
            "migration: stop-and-copy sent"
        );
        Ok(reply)
    })();
    if result.is_err() {
        stop_tracking(src);
    }
    result
}

/// Turns dirty logging off and empties the dirty rings (a vCPU whose ring stayed full would never
/// run again). After a complete stream [`send`] leaves this to its caller, which must call it
/// before the guest can run again: done right after the stream, this KVM work (a memory slot
/// update per slot, a harvest of every ring) ran on the host's CPUs while the target applied the
/// state, inside the guest-visible downtime. A guest destroyed after its migration never needs it.
pub fn stop_tracking(src: &SaveSources<'_>) {
    let t = Instant::now();
    if let Err(e) = src.vm.set_dirty_logging(src.ram.mmap(), false) {
        tracing::warn!(error = %e, "cannot turn dirty logging off");
    }
    if let Err(e) = dirty(src) {
        tracing::warn!(error = %e, "cannot reset the dirty rings");
    }
    tracing::debug!(us = t.elapsed().as_micros(), "migration: dirty logging off");
}
