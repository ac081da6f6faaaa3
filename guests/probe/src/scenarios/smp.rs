//! `probe=smp`: start every AP with INIT-SIPI-SIPI; each vCPU prints its line; then power off.
//!
//! Output: `PROBE cpu <apic id> up` from every vCPU (the BSP first), then
//! `PROBE smp vcpus=<MADT count> up=<CPUs that reported>` (and `PROBE error smp ...` on failure).

use super::Scenario;
use crate::apic::LocalApic;
use crate::cmdline::Args;
use crate::smp::ApJob;
use crate::Machine;

/// The scenario entry.
pub const SCENARIO: Scenario = Scenario { name: "smp", run };

fn announce(apic_id: u32) {
    crate::report!("cpu {apic_id} up");
}

fn run(machine: &Machine, _args: &Args<'_>) {
    let Some(madt) = machine.acpi.as_ref().and_then(|a| a.madt) else {
        crate::report!("error smp reason=no-madt");
        return;
    };
    announce(LocalApic::new(madt.lapic_addr).id());
    let job = ApJob {
        announce,
        work: |_| {},
    };
    if let Some(up) = crate::smp::bring_up(machine, "smp", job) {
        crate::report!("smp vcpus={} up={up}", madt.enabled_cpus);
    }
}
