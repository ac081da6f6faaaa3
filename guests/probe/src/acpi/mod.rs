//! ACPI as the probe needs it: vCPU count (MADT), power management registers (FADT), the S5
//! sleep type (DSDT/SSDT `\_S5_`), interrupt routing for the SCI (MADT IOAPIC + overrides).
//!
//! Parsed once at boot into plain values ([`Acpi`]); scenarios never touch the tables again.

pub mod aml;
pub mod tables;

use crate::layout::MAX_CPUS;
use tables::{le16, le32, le64, Root, HEADER_LEN};

/// FADT flag: the power button is a control-method device (0 = fixed hardware button).
pub const FADT_PWR_BUTTON: u32 = 1 << 4;
/// FADT flag: RESET_REG is supported.
pub const FADT_RESET_REG_SUP: u32 = 1 << 10;
/// FADT flag: hardware-reduced ACPI (no PM1 blocks; sleep control register instead).
pub const FADT_HW_REDUCED: u32 = 1 << 20;

/// A Generic Address Structure (ACPI 6.5 §5.2.3.2).
#[derive(Clone, Copy, Default, Debug)]
pub struct Gas {
    /// 0 = system memory, 1 = system I/O.
    pub space: u8,
    /// Register width in bits.
    pub bit_width: u8,
    /// Physical address or port.
    pub address: u64,
}

impl Gas {
    fn parse(bytes: &[u8], off: usize) -> Option<Self> {
        let gas = Self {
            space: *bytes.get(off)?,
            bit_width: *bytes.get(off + 1)?,
            address: le64(bytes, off + 4),
        };
        (gas.address != 0).then_some(gas)
    }
}

/// The FADT fields the probe uses (legacy 32-bit blocks preferred, X_ fields as fallback).
#[derive(Clone, Copy, Default)]
pub struct Fadt {
    /// ISA IRQ of the SCI.
    pub sci_int: u16,
    /// SMI command port (0: always in ACPI mode).
    pub smi_cmd: u32,
    /// Value to write to SMI_CMD to enter ACPI mode.
    pub acpi_enable: u8,
    /// PM1a event block port (PM1_STS, then PM1_EN at + len/2).
    pub pm1a_evt: u32,
    /// PM1 event block length in bytes.
    pub pm1_evt_len: u8,
    /// PM1a control block port.
    pub pm1a_cnt: u32,
    /// PM1b control block port (0 if none).
    pub pm1b_cnt: u32,
    /// ACPI PM timer port (0 if none).
    pub pm_tmr: u32,
    /// FADT flags.
    pub flags: u32,
    /// RESET_REG (if supported) and the value to write.
    pub reset: Option<(Gas, u8)>,
    /// Hardware-reduced sleep control register.
    pub sleep_control: Option<Gas>,
    /// Physical address of the DSDT.
    pub dsdt: u64,
}

impl Fadt {
    fn parse(t: &'static [u8]) -> Self {
        let io_gas = |off: usize| {
            Gas::parse(t, off)
                .filter(|g| g.space == 1)
                .map_or(0, |g| g.address as u32)
        };
        let legacy_or_x = |legacy: usize, x: usize| match le32(t, legacy) {
            0 => io_gas(x),
            port => port,
        };
        let flags = le32(t, 112);
        let x_dsdt = le64(t, 140);
        Self {
            sci_int: le16(t, 46),
            smi_cmd: le32(t, 48),
            acpi_enable: t.get(52).copied().unwrap_or(0),
            pm1a_evt: legacy_or_x(56, 148),
            pm1_evt_len: t.get(88).copied().unwrap_or(0),
            pm1a_cnt: legacy_or_x(64, 172),
            pm1b_cnt: legacy_or_x(68, 184),
            pm_tmr: legacy_or_x(76, 208),
            flags,
            reset: (flags & FADT_RESET_REG_SUP != 0)
                .then(|| Gas::parse(t, 116).map(|g| (g, t.get(128).copied().unwrap_or(0))))
                .flatten(),
            sleep_control: Gas::parse(t, 244),
            dsdt: if x_dsdt != 0 {
                x_dsdt
            } else {
                u64::from(le32(t, 40))
            },
        }
    }

    /// Whether this is hardware-reduced ACPI (e.g. QEMU microvm).
    pub fn is_hw_reduced(&self) -> bool {
        self.flags & FADT_HW_REDUCED != 0
    }
}

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
    ioapics: [IoApic; MAX_IOAPICS],
    ioapic_count: usize,
    overrides: [IrqOverride; MAX_OVERRIDES],
    override_count: usize,
}

impl Madt {
    fn parse(t: &'static [u8]) -> Self {
        let mut madt = Self {
            lapic_addr: u64::from(le32(t, HEADER_LEN)),
            apic_ids: [0; MAX_CPUS],
            cpus: 0,
            enabled_cpus: 0,
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
                0 if len >= 8 && le32(e, 4) & 1 != 0 => madt.add_cpu(u32::from(e[3])),
                9 if len >= 16 && le32(e, 8) & 1 != 0 => madt.add_cpu(le32(e, 4)),
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

    fn add_cpu(&mut self, apic_id: u32) {
        if let Some(slot) = self.apic_ids.get_mut(self.cpus) {
            *slot = apic_id;
            self.cpus += 1;
        }
        self.enabled_cpus += 1;
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

/// Everything the probe learned from ACPI.
pub struct Acpi {
    /// Root pointer and root table.
    pub root: Root,
    /// FADT, if present and valid.
    pub fadt: Option<Fadt>,
    /// MADT, if present and valid.
    pub madt: Option<Madt>,
    /// `\_S5_` SLP_TYPa/SLP_TYPb from the DSDT or an SSDT.
    pub s5: Option<(u8, u8)>,
    /// The DSDT (validated), for AML pattern searches.
    pub dsdt: Option<&'static [u8]>,
}

impl Acpi {
    /// Finds and parses the tables (`rsdp_hint` = start_info's rsdp_paddr, 0 if none).
    pub fn discover(rsdp_hint: u64) -> Option<Self> {
        let root = tables::find_root(rsdp_hint)?;
        let fadt = root.find(b"FACP").map(Fadt::parse);
        let madt = root.find(b"APIC").map(Madt::parse);
        let dsdt = fadt
            .and_then(|f| tables::table_at(f.dsdt))
            .filter(|t| &t[..4] == b"DSDT");
        let s5 = dsdt
            .into_iter()
            .chain(root.tables().filter(|t| &t[..4] == b"SSDT"))
            .find_map(|t| aml::find_s5(&t[HEADER_LEN..]));
        Some(Self {
            root,
            fadt,
            madt,
            s5,
            dsdt,
        })
    }

    /// Number of enabled processors in the MADT (0 without one).
    pub fn vcpus(&self) -> usize {
        self.madt.map_or(0, |m| m.enabled_cpus)
    }
}
