//! `probe=poweroff`: announce, then power off through ACPI S5.
//!
//! Output: `PROBE poweroff s5=<SLP_TYP> via=<pm1|sleep-control|none>`.

use super::Scenario;
use crate::cmdline::Args;
use crate::Machine;

/// The scenario entry.
pub const SCENARIO: Scenario = Scenario {
    name: "poweroff",
    run,
};

fn run(machine: &Machine, _args: &Args<'_>) {
    let acpi = machine.acpi.as_ref();
    let via = match acpi.and_then(|a| a.fadt) {
        Some(f) if f.is_hw_reduced() => "sleep-control",
        Some(_) => "pm1",
        None => "none",
    };
    match acpi.and_then(|a| a.s5) {
        Some((typ, _)) => crate::report!("poweroff s5={typ} via={via}"),
        None => crate::report!("poweroff s5=none via={via}"),
    }
}
