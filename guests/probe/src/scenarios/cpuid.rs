//! `probe=cpuid`: CPUID as the VMM presents it (read in ring 0; CPL3 sees the host's under PVM).
//!
//! Output: `PROBE cpuid vendor=<leaf 0 vendor> max_leaf=<hex> apic_id=<leaf 1 EBX[31:24]>
//! lapic_id=<local APIC ID register> hypervisor=<leaf 0x40000000 signature or ->`.

use super::Scenario;
use crate::apic::LocalApic;
use crate::cmdline::Args;
use crate::syscall::cpuid;
use crate::Machine;

/// The scenario entry.
pub const SCENARIO: Scenario = Scenario { name: "cpuid", run };

/// Twelve signature bytes from three registers: trailing NULs dropped, other non-printable
/// bytes shown as `?`. Returns the buffer and the length used.
fn signature(regs: [u32; 3]) -> ([u8; 12], usize) {
    let mut out = [0u8; 12];
    for (chunk, reg) in out.chunks_exact_mut(4).zip(regs) {
        chunk.copy_from_slice(&reg.to_le_bytes());
    }
    let len = out.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    (
        out.map(|b| if b.is_ascii_graphic() { b } else { b'?' }),
        len,
    )
}

fn as_str(bytes: &[u8]) -> &str {
    core::str::from_utf8(bytes).unwrap_or("?")
}

fn run(machine: &Machine, _args: &Args<'_>) {
    let [max_leaf, ebx, ecx, edx] = cpuid(0, 0);
    let (vendor, vendor_len) = signature([ebx, edx, ecx]);
    let apic_id = cpuid(1, 0)[1] >> 24;
    let [_, hb, hc, hd] = cpuid(0x4000_0000, 0);
    let (hyper, hyper_len) = signature([hb, hc, hd]);
    let lapic_base = machine
        .acpi
        .as_ref()
        .and_then(|a| a.madt)
        .map_or(0xfee0_0000, |m| m.lapic_addr);
    let lapic_id = LocalApic::new(lapic_base).id();
    let hyper = if hyper_len == 0 {
        "-"
    } else {
        as_str(&hyper[..hyper_len])
    };
    crate::report!(
        "cpuid vendor={} max_leaf={max_leaf:#x} apic_id={apic_id} lapic_id={lapic_id} hypervisor={hyper}",
        as_str(&vendor[..vendor_len])
    );
}
