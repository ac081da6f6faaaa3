//! `probe=syscall iters=N`: time N CPL3 -> ring 0 -> CPL3 round trips (the `ud2` syscall).
//!
//! Output: `PROBE syscall iters=N cycles=C` (C = rdtsc delta over all N). Under PVM each round
//! trip is an exception delivery plus an emulated `iretq`, so this measures the VMM-independent
//! cost every ring-0 service pays.

use super::Scenario;
use crate::cmdline::Args;
use crate::io::rdtsc;
use crate::Machine;

/// The scenario entry.
pub const SCENARIO: Scenario = Scenario {
    name: "syscall",
    run,
};

fn run(_machine: &Machine, args: &Args<'_>) {
    let iters = match args.get_u64("iters", 10_000) {
        Ok(n) => n,
        Err(bad) => {
            crate::report!("error bad-argument key=iters value={bad}");
            return;
        }
    };
    let start = rdtsc();
    for _ in 0..iters {
        crate::syscall::nop();
    }
    let cycles = rdtsc().wrapping_sub(start);
    crate::report!("syscall iters={iters} cycles={cycles}");
}
