//! The Intel MultiProcessor Specification 1.4 table (chapter 4) at 0xf0000, for guests that look for it
//! instead of (or before) the ACPI MADT: one processor entry per vCPU, an ISA bus, the IOAPIC, ISA IRQs
//! 0-15 on IOAPIC pins 0-15 (IRQ 9, the SCI, level/active high), LINT0 ExtINT and LINT1 NMI.

use vm_memory::{Bytes, GuestAddress};

use super::acpi::checksum;
use crate::vstate::memory::{GuestMem, IOAPIC_ADDR, LAPIC_ADDR};

/// Where the floating pointer structure goes (the spec's "BIOS ROM area" 0xf0000-0xfffff).
pub const MPTABLE_ADDR: u64 = 0xf_0000;

const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;

/// Builds the floating pointer + configuration table for `vcpus` processors, as placed at
/// [`MPTABLE_ADDR`].
pub fn build(vcpus: u8) -> Vec<u8> {
    let ioapic_id = vcpus;
    let mut entries = Vec::new();
    let mut count: u16 = 0;
    for id in 0..vcpus {
        let mut e = [0u8; 20];
        e[1] = id;
        e[2] = APIC_VERSION;
        e[3] = if id == 0 { 0x3 } else { 0x1 }; // EN, BP for the first
        e[4..8].copy_from_slice(&0x600u32.to_le_bytes()); // family 6 signature
        e[8..12].copy_from_slice(&0x201u32.to_le_bytes()); // FPU | APIC
        entries.extend_from_slice(&e);
        count += 1;
    }
    entries.extend_from_slice(&[1, 0, b'I', b'S', b'A', b' ', b' ', b' ']);
    count += 1;
    let mut ioapic = [2u8, ioapic_id, IOAPIC_VERSION, 1, 0, 0, 0, 0];
    ioapic[4..8].copy_from_slice(&u32::try_from(IOAPIC_ADDR).unwrap_or(0).to_le_bytes());
    entries.extend_from_slice(&ioapic);
    count += 1;
    for irq in 0u8..16 {
        // I/O interrupt assignment: INT, flags (polarity/trigger), bus 0, irq, ioapic, pin.
        let flags: u16 = if irq == 9 { 0x000d } else { 0 };
        let f = flags.to_le_bytes();
        entries.extend_from_slice(&[3, 0, f[0], f[1], 0, irq, ioapic_id, irq]);
        count += 1;
    }
    // Local interrupt assignments: ExtINT -> LINT0, NMI -> LINT1 on all local APICs.
    entries.extend_from_slice(&[4, 3, 0, 0, 0, 0, 0xff, 0]);
    entries.extend_from_slice(&[4, 1, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let table_addr = MPTABLE_ADDR + 16;
    let mut hdr = [0u8; 44];
    hdr[..4].copy_from_slice(b"PCMP");
    let len = u16::try_from(44 + entries.len()).unwrap_or(u16::MAX);
    hdr[4..6].copy_from_slice(&len.to_le_bytes());
    hdr[6] = 4;
    hdr[8..16].copy_from_slice(b"DOMUS   ");
    hdr[16..28].copy_from_slice(b"DOMUS-VMM   ");
    hdr[34..36].copy_from_slice(&count.to_le_bytes());
    hdr[36..40].copy_from_slice(&u32::try_from(LAPIC_ADDR).unwrap_or(0).to_le_bytes());
    let mut table = hdr.to_vec();
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut fp = [0u8; 16];
    fp[..4].copy_from_slice(b"_MP_");
    fp[4..8].copy_from_slice(&u32::try_from(table_addr).unwrap_or(0).to_le_bytes());
    fp[8] = 1;
    fp[9] = 4;
    fp[10] = checksum(&fp);
    let mut out = fp.to_vec();
    out.extend_from_slice(&table);
    out
}

/// Writes the MP table to guest memory.
///
/// # Errors
/// Guest memory too small.
pub fn write(mem: &GuestMem, vcpus: u8) -> Result<(), vm_memory::GuestMemoryError> {
    mem.write_slice(&build(vcpus), GuestAddress(MPTABLE_ADDR))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_and_counts() {
        let t = build(2);
        assert_eq!(&t[..4], b"_MP_");
        assert_eq!(t[..16].iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        let table = &t[16..];
        assert_eq!(&table[..4], b"PCMP");
        assert_eq!(table.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        assert_eq!(
            usize::from(u16::from_le_bytes([table[4], table[5]])),
            table.len()
        );
        assert_eq!(
            u16::from_le_bytes([table[34], table[35]]),
            2 + 1 + 1 + 16 + 2
        );
        assert_eq!(table[44], 0);
        assert_eq!(table[44 + 3], 3, "BSP flagged");
        assert_eq!(table[64 + 3], 1, "AP enabled, not BSP");
    }
}
