//! ACPI tables (the machine model of the crate docs): RSDP v2 -> XSDT -> FADT (+FACS, DSDT) and MADT, in the reserved BIOS area.
//!
//! Not hardware-reduced: the FADT describes PIIX4-like fixed-hardware PM1a registers in I/O space
//! (ACPI 6.4 §4.8), a fixed power button, the PM timer and the reset register; the DSDT declares `\_S5_`.
//! Layouts follow ACPI 6.4 §5.2 (table offsets are written out explicitly below).

use acpi_tables::aml;
use acpi_tables::sdt::Sdt;
use acpi_tables::Aml;
use vm_memory::{Bytes, GuestAddress};

use crate::devices::acpi_pm::{
    PM1A_CNT_PORT, PM1A_EVT_PORT, PM_TMR_PORT, RESET_PORT, RESET_VALUE, SCI_IRQ,
};
use crate::vstate::memory::{GuestMem, IOAPIC_ADDR, LAPIC_ADDR};

/// Where the RSDP goes (inside the 0xe0000-0xfffff window Linux scans too).
pub const RSDP_ADDR: u64 = 0xe_0000;
/// End (exclusive) of the area the tables may use.
const ACPI_END: u64 = 0xf_0000;

const OEM_ID: [u8; 6] = *b"DOMUS ";
const OEM_TABLE: [u8; 8] = *b"DOMUSVMM";

/// Building or writing the tables failed.
#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    /// Writing to guest memory failed.
    #[error("cannot write ACPI table {table} at gpa {gpa:#x}")]
    Write {
        /// Table signature.
        table: &'static str,
        /// Where.
        gpa: u64,
        /// Cause.
        #[source]
        source: vm_memory::GuestMemoryError,
    },
    /// Out of room in the table area.
    #[error("ACPI tables do not fit below {ACPI_END:#x}")]
    NoRoom,
}

/// A GAS (generic address structure, ACPI 6.4 §5.2.3.2) for an I/O port.
fn gas_io(port: u16, bit_width: u8, access_size: u8) -> [u8; 12] {
    let mut g = [0u8; 12];
    g[0] = 1; // system I/O space
    g[1] = bit_width;
    g[3] = access_size;
    g[4..12].copy_from_slice(&u64::from(port).to_le_bytes());
    g
}

/// The DSDT: `\_S5_` (SLP_TYP 5 for PM1a_CNT), the COM1 UART and the virtio-mmio devices the device
/// manager describes (`LNRO0005`, 4 KiB of registers and an edge GSI each, contract 3), and the CPU
/// hotplug objects for `possible` CPUs (`acpi_cpus`).
fn dsdt(devices: &dyn Aml, possible: u8) -> Sdt {
    let mut t = Sdt::new(*b"DSDT", 36, 2, OEM_ID, OEM_TABLE, 1);
    let s5 = aml::Name::new(
        "_S5_".into(),
        &aml::Package::new(vec![&5u8, &5u8, &aml::ZERO, &aml::ZERO]),
    );
    s5.to_aml_bytes(&mut t);
    let io = aml::IO::new(0x3f8, 0x3f8, 0, 8);
    let irq = aml::Interrupt::new(true, true, false, false, 4);
    let com1_crs = aml::ResourceTemplate::new(vec![&io, &irq]);
    let hid = aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0501"));
    let uid = aml::Name::new("_UID".into(), &aml::ZERO);
    let crs = aml::Name::new("_CRS".into(), &com1_crs);
    let com1 = aml::Device::new("COM1".into(), vec![&hid, &uid, &crs]);
    let children: Vec<&dyn Aml> = vec![&com1, devices];
    aml::Scope::new("\\_SB_".into(), children).to_aml_bytes(&mut t);
    super::acpi_cpus::CpuHotplugAml { possible }.to_aml_bytes(&mut t);
    t
}

/// The DSDT as the guest gets it (checksummed), for `possible` CPUs and `virtio` devices: for tests
/// that compile it with acpica's tools.
pub fn dsdt_table(virtio: usize, possible: u8) -> Vec<u8> {
    let devices = crate::devices::virtio::manager::dsdt_devices(virtio);
    let mut t = dsdt(&devices, possible);
    t.update_checksum();
    t.as_slice().to_vec()
}

/// The FADT (revision 6, 276 bytes) pointing at `facs` and `dsdt`.
fn fadt(facs: u64, dsdt: u64) -> Sdt {
    let mut t = Sdt::new(*b"FACP", 276, 6, OEM_ID, OEM_TABLE, 1);
    let dsdt32 = u32::try_from(dsdt).unwrap_or(0);
    // FIRMWARE_CTRL stays 0: X_FIRMWARE_CTRL is set (ACPI 6.4 §5.2.9 allows only one of them).
    t.write_u32(40, dsdt32);
    t.write_u16(46, u16::from(SCI_IRQ));
    t.write_u32(48, 0); // SMI_CMD = 0: always in ACPI mode
    t.write_u32(56, u32::from(PM1A_EVT_PORT));
    t.write_u32(64, u32::from(PM1A_CNT_PORT));
    t.write_u32(76, u32::from(PM_TMR_PORT));
    t.write_u8(88, 4); // PM1_EVT_LEN
    t.write_u8(89, 2); // PM1_CNT_LEN
    t.write_u8(91, 4); // PM_TMR_LEN
    t.write_u16(96, 101); // P_LVL2_LAT > 100: C2 unsupported
    t.write_u16(98, 1001); // P_LVL3_LAT > 1000: C3 unsupported
    t.write_u8(108, 0x32); // CENTURY: CMOS register
    t.write_u16(109, 0x3); // IAPC_BOOT_ARCH: LEGACY_DEVICES | 8042
                           // Flags: WBINVD | PROC_C1 | SLP_BUTTON (no sleep button) | TMR_VAL_EXT (32-bit timer) | RESET_REG_SUP.
                           // PWR_BUTTON clear = fixed-hardware power button present.
    let flags: u32 = 1 | (1 << 2) | (1 << 5) | (1 << 8) | (1 << 10);
    t.write_u32(112, flags);
    t.write_bytes(116, &gas_io(RESET_PORT, 8, 1));
    t.write_u8(128, RESET_VALUE);
    t.write_u8(131, 0); // FADT minor version
    t.write_u64(132, facs);
    t.write_u64(140, dsdt);
    t.write_bytes(148, &gas_io(PM1A_EVT_PORT, 32, 2));
    t.write_bytes(172, &gas_io(PM1A_CNT_PORT, 16, 2));
    t.write_bytes(208, &gas_io(PM_TMR_PORT, 32, 3));
    t.write_bytes(268, b"DOMUSKVM");
    t.update_checksum();
    t
}

/// The FACS (64 bytes, ACPI 6.4 §5.2.10); it has no checksum.
fn facs() -> [u8; 64] {
    let mut f = [0u8; 64];
    f[..4].copy_from_slice(b"FACS");
    f[4..8].copy_from_slice(&64u32.to_le_bytes());
    f[32] = 2; // version
    f
}

/// The MADT: one Processor Local APIC entry per possible vCPU (the first `vcpus` Enabled, the others
/// Online Capable: ACPI 6.3+ §5.2.12.2, so an OS counts them as hot-pluggable), the IOAPIC (id
/// `possible`, after every APIC id), the SCI override and LINT1 NMI.
fn madt(vcpus: u8, possible: u8) -> Sdt {
    let mut t = Sdt::new(*b"APIC", 44, 5, OEM_ID, OEM_TABLE, 1);
    t.write_u32(36, u32::try_from(LAPIC_ADDR).unwrap_or(0));
    t.write_u32(40, 1); // PCAT_COMPAT: dual 8259s present
    for id in 0..possible.max(vcpus) {
        // Processor Local APIC: type 0, length 8, UID, APIC id, flags (bit 0 Enabled, bit 1 Online Capable).
        let flags = if id < vcpus { 1 } else { 2 };
        t.append_slice(&[0, 8, id, id, flags, 0, 0, 0]);
    }
    let mut ioapic = [1u8, 12, possible.max(vcpus), 0, 0, 0, 0, 0, 0, 0, 0, 0];
    ioapic[4..8].copy_from_slice(&u32::try_from(IOAPIC_ADDR).unwrap_or(0).to_le_bytes());
    t.append_slice(&ioapic);
    // Interrupt source override: ISA IRQ 9 -> GSI 9, active high (01), level (11 << 2).
    let mut iso = [2u8, 10, 0, SCI_IRQ, 0, 0, 0, 0, 0, 0];
    iso[4..8].copy_from_slice(&u32::from(SCI_IRQ).to_le_bytes());
    iso[8..10].copy_from_slice(&0x000du16.to_le_bytes());
    t.append_slice(&iso);
    // Local APIC NMI: all processors (0xff), flags 0 (conforms), LINT1.
    t.append_slice(&[4, 6, 0xff, 0, 0, 1]);
    t.update_checksum();
    t
}

/// The RSDP (ACPI 2.0+, 36 bytes) pointing at the XSDT.
fn rsdp(xsdt: u64) -> [u8; 36] {
    let mut r = [0u8; 36];
    r[..8].copy_from_slice(b"RSD PTR ");
    r[9..15].copy_from_slice(&OEM_ID);
    r[15] = 2;
    r[20..24].copy_from_slice(&36u32.to_le_bytes());
    r[24..32].copy_from_slice(&xsdt.to_le_bytes());
    r[8] = checksum(&r[..20]);
    r[32] = checksum(&r);
    r
}

/// The byte that makes `bytes` sum to zero.
pub fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// Writes all tables to guest memory for `vcpus` CPUs online at boot of `possible`; returns the RSDP
/// address.
///
/// # Errors
/// [`AcpiError`] if guest memory is too small or a write fails.
pub fn write_tables(
    mem: &GuestMem,
    vcpus: u8,
    possible: u8,
    devices: &dyn Aml,
) -> Result<u64, AcpiError> {
    let mut next = RSDP_ADDR + 64;
    let mut place = |len: usize, align: u64| -> Result<u64, AcpiError> {
        let at = next.checked_add(align - 1).ok_or(AcpiError::NoRoom)? & !(align - 1);
        let end = at
            .checked_add(u64::try_from(len).map_err(|_| AcpiError::NoRoom)?)
            .ok_or(AcpiError::NoRoom)?;
        if end > ACPI_END {
            return Err(AcpiError::NoRoom);
        }
        next = end;
        Ok(at)
    };
    let write = |table: &'static str, gpa: u64, bytes: &[u8]| {
        mem.write_slice(bytes, GuestAddress(gpa))
            .map_err(|source| AcpiError::Write { table, gpa, source })
    };

    let facs_bytes = facs();
    let facs_at = place(facs_bytes.len(), 64)?;
    write("FACS", facs_at, &facs_bytes)?;
    let dsdt = dsdt(devices, possible);
    let dsdt_at = place(dsdt.len(), 16)?;
    write("DSDT", dsdt_at, dsdt.as_slice())?;
    let fadt = fadt(facs_at, dsdt_at);
    let fadt_at = place(fadt.len(), 16)?;
    write("FACP", fadt_at, fadt.as_slice())?;
    let madt = madt(vcpus, possible);
    let madt_at = place(madt.len(), 16)?;
    write("APIC", madt_at, madt.as_slice())?;
    let mut xsdt = Sdt::new(*b"XSDT", 36, 1, OEM_ID, OEM_TABLE, 1);
    xsdt.append(fadt_at);
    xsdt.append(madt_at);
    xsdt.update_checksum();
    let xsdt_at = place(xsdt.len(), 16)?;
    write("XSDT", xsdt_at, xsdt.as_slice())?;
    write("RSDP", RSDP_ADDR, &rsdp(xsdt_at))?;
    Ok(RSDP_ADDR)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    #[test]
    fn tables_checksum_and_point_at_each_other() {
        let mem = crate::vstate::memory::create_guest_memory(16 << 20).unwrap();
        let none = crate::devices::virtio::manager::dsdt_devices(0);
        let rsdp_at = write_tables(&mem, 2, 2, &none).unwrap();
        let mut r = [0u8; 36];
        mem.read_slice(&mut r, GuestAddress(rsdp_at)).unwrap();
        assert_eq!(&r[..8], b"RSD PTR ");
        assert_eq!(sum(&r[..20]), 0);
        assert_eq!(sum(&r), 0);
        let xsdt_at = u64::from_le_bytes(r[24..32].try_into().unwrap());
        let mut hdr = [0u8; 52];
        mem.read_slice(&mut hdr, GuestAddress(xsdt_at)).unwrap();
        assert_eq!(&hdr[..4], b"XSDT");
        assert_eq!(u32::from_le_bytes(hdr[4..8].try_into().unwrap()), 52);
        assert_eq!(sum(&hdr), 0);
        let fadt_at = u64::from_le_bytes(hdr[36..44].try_into().unwrap());
        let mut f = [0u8; 276];
        mem.read_slice(&mut f, GuestAddress(fadt_at)).unwrap();
        assert_eq!(&f[..4], b"FACP");
        assert_eq!(sum(&f), 0);
        assert_eq!(u16::from_le_bytes([f[46], f[47]]), 9);
        assert_eq!(u32::from_le_bytes(f[56..60].try_into().unwrap()), 0x600);
        assert_eq!(u32::from_le_bytes(f[64..68].try_into().unwrap()), 0x604);
        assert_eq!(u32::from_le_bytes(f[76..80].try_into().unwrap()), 0x608);
        assert_eq!(f[128], 6);
        assert_eq!(
            u32::from_le_bytes(f[112..116].try_into().unwrap()) & (1 << 4),
            0
        );
        let madt_at = u64::from_le_bytes(hdr[44..52].try_into().unwrap());
        let mut m = [0u8; 44 + 16 + 12 + 10 + 6];
        mem.read_slice(&mut m, GuestAddress(madt_at)).unwrap();
        assert_eq!(&m[..4], b"APIC");
        assert_eq!(sum(&m), 0);
        assert_eq!(&m[44..52], &[0, 8, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&m[52..60], &[0, 8, 1, 1, 1, 0, 0, 0]);
        assert_eq!(m[60], 1);
        assert_eq!(m[62], 2, "IOAPIC id = vcpus");
    }

    #[test]
    fn dsdt_has_s5() {
        let d = dsdt(&crate::devices::virtio::manager::dsdt_devices(2), 2);
        let bytes = d.as_slice();
        assert!(bytes.windows(4).any(|w| w == b"_S5_"));
        assert_eq!(bytes.windows(8).filter(|w| *w == b"LNRO0005").count(), 2);
        assert_eq!(sum(bytes), 0);
    }

    #[test]
    fn possible_cpus_are_online_capable_in_the_madt() {
        let m = madt(1, 3);
        let b = m.as_slice();
        assert_eq!(&b[44..52], &[0, 8, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&b[52..60], &[0, 8, 1, 1, 2, 0, 0, 0]);
        assert_eq!(&b[60..68], &[0, 8, 2, 2, 2, 0, 0, 0]);
        assert_eq!(b[68], 1, "the IOAPIC follows");
        assert_eq!(b[70], 3, "IOAPIC id after every possible APIC id");
        assert_eq!(sum(b), 0);
    }
}
