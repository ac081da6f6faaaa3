//! `probe=triple-fault`: announce, then load an empty IDT in ring 0 and fault (CPU shutdown).
//!
//! Output: `PROBE triple-fault`. The VMM (and QEMU) treat the shutdown as a reset.

use super::Scenario;
use crate::cmdline::Args;
use crate::Machine;

/// The scenario entry.
pub const SCENARIO: Scenario = Scenario {
    name: "triple-fault",
    run,
};

fn run(_machine: &Machine, _args: &Args<'_>) {
    crate::report!("triple-fault");
    crate::syscall::triple_fault()
}
