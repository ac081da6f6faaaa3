//! `probe=loop iters=N [cpus=all]`: a CPL3 compute loop, timed with the TSC (native at CPL3
//! under PVM).
//!
//! Output: `PROBE loop iters=N cycles=C` (C = rdtsc delta around the loop). The loop is fixed
//! assembly (`imul; add; dec; jnz` on a 64-bit LCG state), so the optimiser cannot remove or
//! change it and a host process can run exactly the same instructions (`tools/host-loop.c`).
//!
//! With `cpus=all` every vCPU runs the loop at the same time (APs started with INIT-SIPI-SIPI,
//! released together): one `PROBE loop iters=N cycles=C cpu=<apic id>` line per vCPU, then
//! `PROBE loop cpus=<started> done=<finished>`. Comparing the per-vCPU cycles with a single-vCPU
//! run shows whether the VMM really runs each vCPU on its own thread.

use super::Scenario;
use crate::cmdline::Args;
use crate::io::rdtsc;
use crate::Machine;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// The scenario entry.
pub const SCENARIO: Scenario = Scenario { name: "loop", run };

/// Default iteration count.
const DEFAULT_ITERS: u64 = 100_000_000;

/// Runs `iters` LCG steps from `seed`; returns the final state.
fn lcg_loop(iters: u64, seed: u64) -> u64 {
    if iters == 0 {
        return seed;
    }
    let mut state = seed;
    // SAFETY: register-only arithmetic; `iters > 0` so the countdown terminates.
    unsafe {
        core::arch::asm!(
            "2:",
            "imul {state}, {mul}",
            "add {state}, {inc}",
            "dec {n}",
            "jnz 2b",
            state = inout(reg) state,
            n = inout(reg) iters => _,
            mul = in(reg) 6_364_136_223_846_793_005u64,
            inc = in(reg) 1_442_695_040_888_963_407u64,
            options(nomem, nostack)
        )
    };
    state
}

/// Released by the BSP once every AP is up (`cpus=all`).
static GO: AtomicBool = AtomicBool::new(false);
/// Iteration count for the APs.
static ITERS: AtomicU64 = AtomicU64::new(0);
/// APs that finished their loop.
static DONE: AtomicUsize = AtomicUsize::new(0);

/// The loop, timed: rdtsc delta.
fn timed(iters: u64) -> u64 {
    let start = rdtsc();
    let state = lcg_loop(iters, start);
    let cycles = rdtsc().wrapping_sub(start);
    core::hint::black_box(state);
    cycles
}

/// What each AP runs under `cpus=all`.
fn ap_work(apic_id: u32) {
    while !GO.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    let iters = ITERS.load(Ordering::SeqCst);
    let cycles = timed(iters);
    crate::report!("loop iters={iters} cycles={cycles} cpu={apic_id}");
    DONE.fetch_add(1, Ordering::SeqCst);
}

fn run_on_all(machine: &Machine, iters: u64) {
    ITERS.store(iters, Ordering::SeqCst);
    let job = crate::smp::ApJob {
        announce: |_| {},
        work: ap_work,
    };
    let Some(cpus) = crate::smp::bring_up(machine, "loop", job) else {
        return;
    };
    let lapic_base = machine
        .acpi
        .as_ref()
        .and_then(|a| a.madt)
        .map_or(0xfee0_0000, |m| m.lapic_addr);
    let own = crate::apic::LocalApic::new(lapic_base).id();
    GO.store(true, Ordering::Release);
    let cycles = timed(iters);
    crate::report!("loop iters={iters} cycles={cycles} cpu={own}");
    // The APs run the same loop: allow them ten times the BSP's time (plus 1 s of TSC at 4 GHz).
    let deadline = cycles.saturating_mul(10).saturating_add(4_000_000_000);
    let start = rdtsc();
    while DONE.load(Ordering::SeqCst) + 1 < cpus && rdtsc().wrapping_sub(start) < deadline {
        core::hint::spin_loop();
    }
    crate::report!("loop cpus={cpus} done={}", DONE.load(Ordering::SeqCst) + 1);
}

fn run(machine: &Machine, args: &Args<'_>) {
    let iters = match args.get_u64("iters", DEFAULT_ITERS) {
        Ok(n) => n,
        Err(bad) => {
            crate::report!("error bad-argument key=iters value={bad}");
            return;
        }
    };
    match args.get("cpus") {
        None | Some("1") => {
            let cycles = timed(iters);
            crate::report!("loop iters={iters} cycles={cycles}");
        }
        Some("all") => run_on_all(machine, iters),
        Some(other) => crate::report!("error bad-argument key=cpus value={other}"),
    }
}
