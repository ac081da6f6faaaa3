//! `probe=reboot`: announce, then reset through the i8042 (0xfe to port 0x64).
//!
//! Output: `PROBE reboot`. Falls back to FADT RESET_REG, port 0xcf9, then a triple fault.

use super::Scenario;
use crate::cmdline::Args;
use crate::Machine;

/// The scenario entry.
pub const SCENARIO: Scenario = Scenario {
    name: "reboot",
    run,
};

fn run(machine: &Machine, _args: &Args<'_>) {
    crate::report!("reboot");
    crate::power::reboot(machine.acpi.as_ref())
}
