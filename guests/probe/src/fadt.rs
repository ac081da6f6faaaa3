//! The FADT fields the probe uses (ACPI 6.5 §5.2.9), parsed from the table's bytes.
//!
//! Input is untrusted firmware data: fields beyond the table's end read as 0, never panic.

use crate::bytes::{le16, le32, le64};

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
    /// Parses a FADT (the whole table, header included).
    pub fn parse(t: &[u8]) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;

    const MICROVM: &[u8] = include_bytes!("../tests/data/acpi/qemu-microvm/FACP.bin");
    const PC: &[u8] = include_bytes!("../tests/data/acpi/qemu-pc/FACP.bin");
    const DOMUS: &[u8] = include_bytes!("../tests/data/acpi/domus-vmm/FACP.bin");

    #[test]
    fn qemu_pc_fixed_hardware() {
        let f = Fadt::parse(PC);
        assert!(!f.is_hw_reduced());
        assert_eq!(f.flags & FADT_PWR_BUTTON, 0, "fixed power button");
        assert_eq!(
            (f.sci_int, f.pm1a_evt, f.pm1_evt_len, f.pm1a_cnt, f.pm_tmr),
            (9, 0x600, 4, 0x604, 0x608)
        );
        assert_eq!(f.pm1b_cnt, 0);
        assert!(f.reset.is_none(), "ACPI 1.0 FADT has no RESET_REG");
        assert!(f.sleep_control.is_none());
        assert_eq!(f.dsdt, 0x3fe_0040);
    }

    #[test]
    fn domus_vmm_matches_the_machine_model() {
        let f = Fadt::parse(DOMUS);
        assert!(!f.is_hw_reduced());
        assert_eq!(f.flags & FADT_PWR_BUTTON, 0);
        assert_eq!(
            (f.sci_int, f.smi_cmd, f.pm1a_evt, f.pm1a_cnt, f.pm_tmr),
            (9, 0, 0x600, 0x604, 0x608)
        );
        let (reset, value) = f.reset.expect("RESET_REG");
        assert_eq!((reset.space, reset.address, value), (1, 0xcf9, 6));
    }

    #[test]
    fn qemu_microvm_hardware_reduced() {
        let f = Fadt::parse(MICROVM);
        assert!(f.is_hw_reduced());
        assert_eq!((f.pm1a_evt, f.pm1a_cnt, f.pm_tmr), (0, 0, 0));
        let ctl = f.sleep_control.expect("SLEEP_CONTROL_REG");
        assert_eq!((ctl.space, ctl.address), (0, 0xfea0_0200));
        assert_eq!(f.dsdt, 0xe_fcc0);
    }

    #[test]
    fn truncated_tables_read_missing_fields_as_absent() {
        let f = Fadt::parse(&DOMUS[..60]);
        assert_eq!(f.pm1a_evt, 0x600);
        assert_eq!((f.pm1a_cnt, f.flags, f.dsdt), (0, 0, 0xe0080));
        assert!(f.reset.is_none() && f.sleep_control.is_none());
        let empty = Fadt::parse(&[]);
        assert_eq!((empty.sci_int, empty.pm1a_cnt, empty.dsdt), (0, 0, 0));
    }

    #[test]
    fn x_fields_are_used_when_legacy_blocks_are_zero() {
        let mut t = DOMUS.to_vec();
        t[64..68].copy_from_slice(&[0; 4]); // PM1a_CNT_BLK
                                            // X_PM1a_CNT_BLK: I/O space, 16 bits, port 0xb004.
        t[172..184].copy_from_slice(&[1, 16, 0, 2, 0x04, 0xb0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Fadt::parse(&t).pm1a_cnt, 0xb004);
        t[172] = 0; // system memory: not a port, ignored
        assert_eq!(Fadt::parse(&t).pm1a_cnt, 0);
    }
}
