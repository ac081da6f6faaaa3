//! `probe=mem-soak mib=N` (default 64): fills N MiB of RAM (from 16 MiB up) with a pattern that
//! depends on the word's index and an epoch, then about once a second verifies every word against the
//! previous epoch's pattern while rewriting it with the next one, and prints
//! `PROBE mem-soak epoch=E ok` (E increasing), or `PROBE mem-soak corrupt epoch=E addr=<a>
//! want=<w> got=<g> bad=<n>` naming the first wrong word and how many were wrong.
//!
//! Everything the loop needs (epoch, next deadline, TSC rate) lives in statics, i.e. in guest memory,
//! and a pass in progress keeps its position in registers and on the stack: a saved, restored or
//! migrated guest carries on with the next epoch, and any page the VMM failed to carry shows up as a
//! corrupt line. N MiB are written per second, which is the dirty rate a live migration must beat.
//!
//! Runs on the shared event loop (timer tick as a wake-up, ACPI power button to stop, ACPI CPU
//! hotplug and the balloon driver serviced as in `idle`, the balloon never taking the soaked region):
//! `PROBE mem-soak ready mib=N` first, `PROBE mem-soak power-button` last.

use super::Scenario;
use crate::cmdline::Args;
use crate::event_loop::{EventLoop, Events, Flow};
use crate::io::rdtsc;
use crate::Machine;
use core::sync::atomic::{AtomicU64, Ordering};

/// The scenario entry.
pub const SCENARIO: Scenario = Scenario {
    name: "mem-soak",
    run,
};

/// First byte of the soaked region (the block scenarios' data area; nothing else of the probe uses it).
const BASE: u64 = 0x100_0000;
const MIB: u64 = 1 << 20;

/// Current epoch: the pattern the region holds.
static EPOCH: AtomicU64 = AtomicU64::new(0);
/// Number of 64-bit words soaked.
static WORDS: AtomicU64 = AtomicU64::new(0);
/// TSC ticks per second (measured once at start).
static TSC_HZ: AtomicU64 = AtomicU64::new(0);
/// TSC value at which the next pass starts.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// The pattern of word `i` in epoch `e` (never the same for neighbouring words or epochs).
fn pattern(i: u64, e: u64) -> u64 {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ e.wrapping_mul(0xd1b5_4a32_d192_ed03);
    x ^= x >> 31;
    x.wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ e
}

fn region() -> &'static mut [u64] {
    let words = WORDS.load(Ordering::SeqCst) as usize;
    // SAFETY: `[BASE, BASE + 8 * words)` is RAM (checked against the memory map in `run`), identity
    // mapped, and used by this scenario alone while it runs.
    unsafe { core::slice::from_raw_parts_mut(BASE as usize as *mut u64, words) }
}

/// Verifies epoch `e - 1` and writes epoch `e`, word by word.
fn pass(e: u64) {
    let mut bad = 0u64;
    let mut first = None;
    for (i, w) in region().iter_mut().enumerate() {
        let want = pattern(i as u64, e - 1);
        let got = *w;
        if got != want {
            bad += 1;
            first.get_or_insert((i, want, got));
        }
        *w = pattern(i as u64, e);
    }
    EPOCH.store(e, Ordering::SeqCst);
    match first {
        None => crate::report!("mem-soak epoch={e} ok"),
        Some((i, want, got)) => crate::report!(
            "mem-soak corrupt epoch={e} addr={:#x} want={want:#x} got={got:#x} bad={bad}",
            BASE + 8 * i as u64
        ),
    }
}

fn tick(ev: &mut Events) -> Flow {
    if ev.power_button {
        return Flow::Stop;
    }
    let now = rdtsc();
    if now.wrapping_sub(NEXT.load(Ordering::SeqCst)) < (1 << 63) {
        NEXT.store(
            now.wrapping_add(TSC_HZ.load(Ordering::SeqCst)),
            Ordering::SeqCst,
        );
        pass(EPOCH.load(Ordering::SeqCst) + 1);
    }
    Flow::Continue
}

fn run(machine: &Machine, args: &Args<'_>) {
    let mib = match args.get_u64("mib", 64) {
        Ok(n) if n > 0 => n,
        Ok(_) => return crate::report!("error mem-soak reason=bad-mib value=0"),
        Err(v) => return crate::report!("error mem-soak reason=bad-mib value={v}"),
    };
    let ram = machine.boot.as_ref().map_or(0, |b| b.memmap.ram_mib());
    // The region must end below 3 GiB (the identity-mapped low RAM) and inside RAM.
    if BASE / MIB + mib > ram.min(3072) {
        return crate::report!("error mem-soak reason=too-large mib={mib} ram_mib={ram}");
    }
    WORDS.store(mib * MIB / 8, Ordering::SeqCst);
    for (i, w) in region().iter_mut().enumerate() {
        *w = pattern(i as u64, 0);
    }
    TSC_HZ.store(super::blk::tsc_hz(machine).max(1), Ordering::SeqCst);
    NEXT.store(rdtsc(), Ordering::SeqCst);
    let mut lp = EventLoop::new();
    if let Err(reason) = lp.watch_power_button(machine) {
        return crate::report!("error mem-soak reason={reason}");
    }
    lp.watch_timer(machine);
    // vcpu-set and mem-set work on a soaking guest too (their state must survive save/migrate):
    // the balloon's pool leaves the soaked region out.
    lp.watch_cpu_hotplug(machine);
    crate::virtio::balloon::extend_hole(BASE + mib * MIB);
    if let Err(reason) = lp.hook("mem-soak", tick) {
        return crate::report!("error mem-soak reason={reason}");
    }
    lp.attach_drivers(machine, args);
    crate::report!("mem-soak ready mib={mib}");
    lp.run();
    crate::report!("mem-soak power-button");
}
