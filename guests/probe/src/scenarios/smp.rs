//! `probe=smp`: start every AP with INIT-SIPI-SIPI; each vCPU prints its line; then power off.
//!
//! Output: `PROBE cpu <apic id> up` from every vCPU (the BSP first), then
//! `PROBE smp vcpus=<MADT count> up=<CPUs that reported>` (and `PROBE error smp ...` on failure).

use super::Scenario;
use crate::apic::LocalApic;
use crate::cmdline::Args;
use crate::memmap::E820_RAM;
use crate::smp::SmpError;
use crate::Machine;

/// The scenario entry.
pub const SCENARIO: Scenario = Scenario { name: "smp", run };

fn run(machine: &Machine, _args: &Args<'_>) {
    let Some(madt) = machine.acpi.as_ref().and_then(|a| a.madt) else {
        crate::report!("error smp reason=no-madt");
        return;
    };
    let trampoline = crate::layout::TRAMPOLINE_BASE as u64;
    let trampoline_is_ram = machine.boot.as_ref().is_some_and(|b| {
        b.memmap.regions().iter().any(|r| {
            r.kind == E820_RAM && r.addr <= trampoline && trampoline + 0x1000 <= r.addr + r.size
        })
    });
    if !trampoline_is_ram {
        crate::report!("error smp reason=trampoline-page-not-ram");
        return;
    }
    let lapic = LocalApic::new(madt.lapic_addr);
    crate::report!("cpu {} up", lapic.id());
    let wait = |us: u64| crate::clock::delay_us(machine.acpi.as_ref(), us);
    let (aps, error) = crate::smp::start_aps(madt.lapic_addr, madt.apic_ids(), &wait);
    match error {
        Some(SmpError::Timeout(apic_id)) => {
            crate::report!("error smp reason=timeout apic_id={apic_id}")
        }
        Some(SmpError::TooManyCpus) => crate::report!("error smp reason=too-many-cpus"),
        None => {}
    }
    crate::report!("smp vcpus={} up={}", madt.enabled_cpus, aps + 1);
}
