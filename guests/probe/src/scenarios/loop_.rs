//! `probe=loop iters=N`: a CPL3 compute loop, timed with the TSC (native at CPL3 under PVM).
//!
//! Output: `PROBE loop iters=N cycles=C` (C = rdtsc delta around the loop). The loop is fixed
//! assembly (`imul; add; dec; jnz` on a 64-bit LCG state), so the optimiser cannot remove or
//! change it and a host process can run exactly the same instructions for comparison.

use super::Scenario;
use crate::cmdline::Args;
use crate::io::rdtsc;
use crate::Machine;

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

fn run(_machine: &Machine, args: &Args<'_>) {
    let iters = match args.get_u64("iters", DEFAULT_ITERS) {
        Ok(n) => n,
        Err(bad) => {
            crate::report!("error bad-argument key=iters value={bad}");
            return;
        }
    };
    let start = rdtsc();
    let state = lcg_loop(iters, start);
    let cycles = rdtsc().wrapping_sub(start);
    core::hint::black_box(state);
    crate::report!("loop iters={iters} cycles={cycles}");
}
