//! `probe=hello`: report the vCPUs (MADT) and RAM (e820) the guest discovered, then power off.
//!
//! Output: `PROBE hello vcpus=<N> mem_mib=<M>` (M = e820 RAM rounded to the nearest MiB).

use super::Scenario;
use crate::cmdline::Args;
use crate::Machine;

/// The scenario entry.
pub const SCENARIO: Scenario = Scenario { name: "hello", run };

fn run(machine: &Machine, _args: &Args<'_>) {
    let vcpus = machine.acpi.as_ref().map_or(0, |a| a.vcpus());
    let mem_mib = machine.boot.as_ref().map_or(0, |b| b.memmap.ram_mib());
    crate::report!("hello vcpus={vcpus} mem_mib={mem_mib}");
}
