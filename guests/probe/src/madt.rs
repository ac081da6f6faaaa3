//! The MADT (ACPI 6.5 §5.2.12): enabled and possible processors, IOAPICs, interrupt source
//! overrides. A processor entry with Enabled clear but Online Capable set (ACPI 6.3+) is a CPU that
//! can be hot-plugged later: counted as possible, not started at boot.
//!
//! Input is untrusted firmware data: entries are walked with bounds checks, a zero-length or
//! overlong entry ends the walk, and everything is stored in fixed-size arrays.

use crate::bytes::{le16, le32, le64, HEADER_LEN};

/// Most processors (APIC ids) kept; the probe has per-CPU resources for this many.
pub const MAX_CPUS: usize = 64;

/// An IOAPIC from the MADT.
#[derive(Clone, Copy, Default)]
pub struct IoApic {
    /// Register base address.
    pub addr: u64,
    /// First GSI it serves.
    pub gsi_base: u32,
}

/// An interrupt source override (ISA IRQ -> GSI with MPS INTI flags).
#[derive(Clone, Copy, Default)]
pub struct IrqOverride {
    /// ISA IRQ.
    pub source: u8,
    /// Global system interrupt.
    pub gsi: u32,
    /// MPS INTI flags: bits 0-1 polarity (1 high, 3 low), bits 2-3 trigger (1 edge, 3 level).
    pub flags: u16,
}

const MAX_IOAPICS: usize = 8;
const MAX_OVERRIDES: usize = 16;

/// What the MADT says.
#[derive(Clone, Copy)]
pub struct Madt {
    /// Local APIC base address.
    pub lapic_addr: u64,
    apic_ids: [u32; MAX_CPUS],
    cpus: usize,
    /// Enabled processors found, including any beyond `MAX_CPUS`.
    pub enabled_cpus: usize,
    possible_ids: [u32; MAX_CPUS],
    possible: usize,
    ioapics: [IoApic; MAX_IOAPICS],
    ioapic_count: usize,
    overrides: [IrqOverride; MAX_OVERRIDES],
    override_count: usize,
}

impl Madt {
    /// Parses a MADT (the whole table, header included).
    pub fn parse(t: &[u8]) -> Self {
        let mut madt = Self {
            lapic_addr: u64::from(le32(t, HEADER_LEN)),
            apic_ids: [0; MAX_CPUS],
            cpus: 0,
            enabled_cpus: 0,
            possible_ids: [0; MAX_CPUS],
            possible: 0,
            ioapics: [IoApic::default(); MAX_IOAPICS],
            ioapic_count: 0,
            overrides: [IrqOverride::default(); MAX_OVERRIDES],
            override_count: 0,
        };
        let mut off = HEADER_LEN + 8;
        while off + 2 <= t.len() {
            let (kind, len) = (t[off], usize::from(t[off + 1]));
            if len < 2 || off + len > t.len() {
                break;
            }
            let e = &t[off..off + len];
            match kind {
                0 if len >= 8 => madt.add_cpu(u32::from(e[3]), le32(e, 4)),
                9 if len >= 16 => madt.add_cpu(le32(e, 4), le32(e, 8)),
                1 if len >= 12 && madt.ioapic_count < MAX_IOAPICS => {
                    madt.ioapics[madt.ioapic_count] = IoApic {
                        addr: u64::from(le32(e, 4)),
                        gsi_base: le32(e, 8),
                    };
                    madt.ioapic_count += 1;
                }
                2 if len >= 10 && madt.override_count < MAX_OVERRIDES => {
                    madt.overrides[madt.override_count] = IrqOverride {
                        source: e[3],
                        gsi: le32(e, 4),
                        flags: le16(e, 8),
                    };
                    madt.override_count += 1;
                }
                5 if len >= 12 => madt.lapic_addr = le64(e, 4),
                _ => {}
            }
            off += len;
        }
        madt
    }

    /// A processor entry with its flags (bit 0 Enabled, bit 1 Online Capable).
    fn add_cpu(&mut self, apic_id: u32, flags: u32) {
        if flags & 3 == 0 {
            return;
        }
        if let Some(slot) = self.possible_ids.get_mut(self.possible) {
            *slot = apic_id;
            self.possible += 1;
        }
        if flags & 1 == 0 {
            return;
        }
        if let Some(slot) = self.apic_ids.get_mut(self.cpus) {
            *slot = apic_id;
            self.cpus += 1;
        }
        self.enabled_cpus += 1;
    }

    /// APIC ids of every possible processor (enabled or online capable, at most `MAX_CPUS`), in
    /// MADT order.
    pub fn possible_ids(&self) -> &[u32] {
        &self.possible_ids[..self.possible]
    }

    /// APIC ids of the enabled processors (at most `MAX_CPUS`), in MADT order.
    pub fn apic_ids(&self) -> &[u32] {
        &self.apic_ids[..self.cpus]
    }

    /// The IOAPICs.
    pub fn ioapics(&self) -> &[IoApic] {
        &self.ioapics[..self.ioapic_count]
    }

    /// The GSI and INTI flags of ISA `irq` (identity with "conforms" flags without an override).
    pub fn isa_irq(&self, irq: u8) -> (u32, u16) {
        self.overrides[..self.override_count]
            .iter()
            .find(|o| o.source == irq)
            .map_or((u32::from(irq), 0), |o| (o.gsi, o.flags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MICROVM: &[u8] = include_bytes!("../tests/data/acpi/qemu-microvm/APIC.bin");
    const PC: &[u8] = include_bytes!("../tests/data/acpi/qemu-pc/APIC.bin");
    const DOMUS: &[u8] = include_bytes!("../tests/data/acpi/domus-vmm/APIC.bin");

    #[test]
    fn fixtures_have_two_cpus_and_an_ioapic() {
        for (name, t) in [("microvm", MICROVM), ("pc", PC), ("domus", DOMUS)] {
            let m = Madt::parse(t);
            assert_eq!(m.enabled_cpus, 2, "{name}");
            assert_eq!(m.apic_ids(), &[0, 1], "{name}");
            assert_eq!(m.lapic_addr, 0xfee0_0000, "{name}");
            assert!(
                m.ioapics()
                    .iter()
                    .any(|io| io.addr == 0xfec0_0000 && io.gsi_base == 0),
                "{name}"
            );
        }
    }

    #[test]
    fn sci_routing_from_overrides() {
        // Level, active high (MPS INTI flags 0xd) on both PC-style machines.
        assert_eq!(Madt::parse(PC).isa_irq(9), (9, 0xd));
        assert_eq!(Madt::parse(DOMUS).isa_irq(9), (9, 0xd));
        // QEMU pc routes the PIT (IRQ 0) to GSI 2; an IRQ without override maps 1:1, flags 0.
        assert_eq!(Madt::parse(PC).isa_irq(0).0, 2);
        assert_eq!(Madt::parse(DOMUS).isa_irq(7), (7, 0));
    }

    fn madt_with(entries: &[&[u8]]) -> Vec<u8> {
        let mut t = vec![0u8; HEADER_LEN + 8];
        t[..4].copy_from_slice(b"APIC");
        t[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&0xfee0_0000u32.to_le_bytes());
        for e in entries {
            t.extend_from_slice(e);
        }
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        t
    }

    #[test]
    fn disabled_processors_are_not_counted_and_x2apic_is() {
        let t = madt_with(&[
            &[0, 8, 0, 0, 1, 0, 0, 0],                                // enabled, id 0
            &[0, 8, 1, 1, 0, 0, 0, 0],                                // disabled, id 1
            &[9, 16, 0, 0, 0x00, 0x01, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0], // x2APIC id 256
        ]);
        let m = Madt::parse(&t);
        assert_eq!(m.apic_ids(), &[0, 256]);
        assert_eq!(m.enabled_cpus, 2);
    }

    #[test]
    fn online_capable_processors_are_possible_not_enabled() {
        let t = madt_with(&[
            &[0, 8, 0, 0, 1, 0, 0, 0],                                // enabled, id 0
            &[0, 8, 1, 1, 2, 0, 0, 0],                                // online capable, id 1
            &[0, 8, 2, 2, 0, 0, 0, 0],                                // neither: unusable
            &[9, 16, 0, 0, 0x00, 0x01, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0], // x2APIC 256, online capable
        ]);
        let m = Madt::parse(&t);
        assert_eq!(m.apic_ids(), &[0]);
        assert_eq!(m.enabled_cpus, 1);
        assert_eq!(m.possible_ids(), &[0, 1, 256]);
    }

    #[test]
    fn more_cpus_than_slots_are_counted_but_not_stored() {
        let entries: Vec<[u8; 8]> = (0..70u8).map(|id| [0, 8, id, id, 1, 0, 0, 0]).collect();
        let refs: Vec<&[u8]> = entries.iter().map(|e| &e[..]).collect();
        let m = Madt::parse(&madt_with(&refs));
        assert_eq!(m.enabled_cpus, 70);
        assert_eq!(m.apic_ids().len(), MAX_CPUS);
    }

    #[test]
    fn malformed_entries_end_the_walk() {
        // A zero-length entry would loop forever if trusted; an overlong one runs off the end.
        for bad in [
            &[0u8, 0, 0, 0][..],
            &[0u8, 200, 0, 0, 1, 0, 0, 0][..],
            &[1u8][..],
        ] {
            let t = madt_with(&[&[0, 8, 0, 3, 1, 0, 0, 0], bad, &[0, 8, 1, 4, 1, 0, 0, 0]]);
            let m = Madt::parse(&t);
            assert_eq!(m.apic_ids(), &[3], "entry {bad:?}");
        }
        // Short entries of known types are skipped, not read past their length.
        let t = madt_with(&[
            &[1, 4, 0, 0],
            &[2, 6, 0, 9, 9, 0],
            &[0, 8, 0, 5, 1, 0, 0, 0],
        ]);
        let m = Madt::parse(&t);
        assert!(m.ioapics().is_empty());
        assert_eq!(m.isa_irq(9), (9, 0));
        assert_eq!(m.apic_ids(), &[5]);
    }
}
