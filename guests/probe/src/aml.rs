//! Just enough AML to read `\_S5_` (ACPI 6.5 §7.4.2: the S5 sleep type values).
//!
//! The probe does not interpret AML; it looks for the byte pattern of a `Name(_S5_, Package(){..})`
//! definition (NameOp 0x08, optional root prefix `\`, NameSeg `_S5_`, PackageOp 0x12, PkgLength,
//! NumElements) and decodes the first two integer elements (SLP_TYPa, SLP_TYPb).

const NAME_OP: u8 = 0x08;
const ROOT_CHAR: u8 = b'\\';
const PACKAGE_OP: u8 = 0x12;

/// Decodes one AML integer data object at `bytes[0..]`: (value, encoded length).
fn integer(bytes: &[u8]) -> Option<(u64, usize)> {
    let le = |n: usize| -> Option<u64> {
        let b = bytes.get(1..1 + n)?;
        Some(b.iter().rev().fold(0u64, |v, &x| (v << 8) | u64::from(x)))
    };
    match *bytes.first()? {
        0x00 => Some((0, 1)),        // ZeroOp
        0x01 => Some((1, 1)),        // OneOp
        0xff => Some((u64::MAX, 1)), // OnesOp
        0x0a => Some((le(1)?, 2)),   // BytePrefix
        0x0b => Some((le(2)?, 3)),   // WordPrefix
        0x0c => Some((le(4)?, 5)),   // DWordPrefix
        0x0e => Some((le(8)?, 9)),   // QWordPrefix
        _ => None,
    }
}

/// `(SLP_TYPa, SLP_TYPb)` of the `\_S5_` package in an AML table body, if it has one.
pub fn find_s5(aml: &[u8]) -> Option<(u8, u8)> {
    let mut start = 0;
    while let Some(pos) = aml.get(start..)?.windows(4).position(|w| w == b"_S5_") {
        let at = start + pos;
        start = at + 4;
        let named = match at {
            0 => false,
            1 => aml[0] == NAME_OP,
            _ => aml[at - 1] == NAME_OP || (aml[at - 1] == ROOT_CHAR && aml[at - 2] == NAME_OP),
        };
        if !named || aml.get(at + 4) != Some(&PACKAGE_OP) {
            continue;
        }
        let lead = *aml.get(at + 5)?;
        let pkg_len_bytes = 1 + usize::from(lead >> 6);
        let mut cursor = at + 5 + pkg_len_bytes + 1; // skip PkgLength and NumElements
        let (a, used) = integer(aml.get(cursor..)?)?;
        cursor += used;
        let b = integer(aml.get(cursor..)?).map_or(a, |(b, _)| b);
        return Some(((a & 7) as u8, (b & 7) as u8));
    }
    None
}

/// A `LNRO0005` (virtio-mmio) device declared in AML: register window and first interrupt.
#[derive(Clone, Copy, Default)]
pub struct MmioDevice {
    /// Base of the register window (Memory32Fixed).
    pub base: u64,
    /// First GSI of its Extended Interrupt descriptor (0 if none).
    pub irq: u32,
}

/// Finds the `_CRS` resources of every device whose `_HID` is `hid` (e.g. `LNRO0005`), by byte
/// pattern: the string object, then within the device's bytes a Memory32Fixed (0x86) and an
/// Extended Interrupt (0x89) descriptor (ACPI 6.5 §6.4.3.4, §6.4.3.6). Calls `found` for each.
pub fn find_mmio_devices(aml: &[u8], hid: &[u8; 8], mut found: impl FnMut(MmioDevice)) {
    let mut pattern = [0u8; 10];
    pattern[0] = 0x0d; // StringPrefix
    pattern[1..9].copy_from_slice(hid);
    let starts = aml
        .windows(pattern.len())
        .enumerate()
        .filter(|(_, w)| *w == pattern)
        .map(|(i, _)| i);
    let mut starts = starts.peekable();
    while let Some(start) = starts.next() {
        let end = starts.peek().copied().unwrap_or(aml.len()).min(start + 512);
        let body = &aml[start + pattern.len()..end];
        let Some(crs) = body.windows(4).position(|w| w == b"_CRS") else {
            continue;
        };
        let res = &body[crs..];
        let Some(mem) = res.windows(3).position(|w| w == [0x86, 0x09, 0x00]) else {
            continue;
        };
        let le32 = |b: &[u8], off: usize| {
            b.get(off..off + 4)
                .map_or(0, |x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
        };
        let irq = res[mem..]
            .windows(3)
            .position(|w| w[0] == 0x89 && w[2] == 0x00)
            .map_or(0, |i| le32(&res[mem..], i + 5));
        found(MmioDevice {
            base: u64::from(le32(res, mem + 4)),
            irq,
        });
    }
}

/// A hardware-reduced Generic Event Device (ACPI0013) as QEMU describes it.
#[derive(Clone, Copy, Default)]
pub struct Ged {
    /// Address of its event-selector register (the device's SystemMemory OperationRegion).
    pub esel: u64,
    /// Its interrupt (GSI).
    pub irq: u32,
    /// Edge-triggered (else level).
    pub edge: bool,
    /// Active-low (else active-high).
    pub active_low: bool,
}

/// Finds the first ACPI0013 device: its Extended Interrupt descriptor (0x89: byte 3 bit 1 =
/// edge, bit 2 = active low; first GSI at byte 5) and its SystemMemory OperationRegion
/// (ExtOpPrefix 0x5B, OpRegionOp 0x80, NameSeg, RegionSpace 0, RegionOffset integer).
pub fn find_ged(aml: &[u8]) -> Option<Ged> {
    let mut pattern = [0u8; 10];
    pattern[0] = 0x0d;
    pattern[1..9].copy_from_slice(b"ACPI0013");
    let start = aml.windows(pattern.len()).position(|w| w == pattern)?;
    let body = &aml[start + pattern.len()..aml.len().min(start + 512)];
    let int = body.windows(3).position(|w| w[0] == 0x89 && w[2] == 0x00)?;
    let desc = body.get(int..int + 9)?;
    let flags = desc[3];
    let irq = u32::from_le_bytes([desc[5], desc[6], desc[7], desc[8]]);
    let region = body.windows(2).position(|w| w == [0x5b, 0x80])?;
    let space = *body.get(region + 6)?;
    if space != 0 {
        return None;
    }
    let (esel, _) = integer(body.get(region + 7..)?)?;
    Some(Ged {
        esel,
        irq,
        edge: flags & 2 != 0,
        active_low: flags & 4 != 0,
    })
}

/// The address of the SystemMemory OperationRegion called `name` (ExtOpPrefix 0x5B, OpRegionOp
/// 0x80, NameSeg, RegionSpace 0, RegionOffset integer), e.g. the CPU hotplug register block `PRST`
/// of domus-vmm's DSDT.
pub fn find_memory_region(aml: &[u8], name: &[u8; 4]) -> Option<u64> {
    let mut pattern = [0u8; 7];
    pattern[..2].copy_from_slice(&[0x5b, 0x80]);
    pattern[2..6].copy_from_slice(name);
    // pattern[6] = 0: SystemMemory.
    let at = aml.windows(pattern.len()).position(|w| w == pattern)?;
    integer(aml.get(at + pattern.len()..)?).map(|(v, _)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytes::HEADER_LEN;

    const MICROVM: &[u8] = include_bytes!("../tests/data/acpi/qemu-microvm/DSDT.bin");
    const PC: &[u8] = include_bytes!("../tests/data/acpi/qemu-pc/DSDT.bin");
    const DOMUS: &[u8] = include_bytes!("../tests/data/acpi/domus-vmm/DSDT.bin");
    /// domus-vmm's DSDT with CPU hotplug for 3 possible CPUs (`acpi::dsdt_table(1, 3)`).
    const DOMUS_HOTPLUG: &[u8] = include_bytes!("../tests/data/acpi/domus-vmm-hotplug/DSDT.bin");

    fn body(t: &[u8]) -> &[u8] {
        &t[HEADER_LEN..]
    }

    #[test]
    fn s5_sleep_types_of_the_fixtures() {
        assert_eq!(find_s5(body(DOMUS)), Some((5, 5)));
        assert_eq!(find_s5(body(MICROVM)), Some((5, 0)));
        assert_eq!(find_s5(body(PC)), Some((0, 0)));
    }

    #[test]
    fn s5_encodings() {
        // Name(\_S5_, Package(2){ 0x07 (BytePrefix), Zero }) with the root prefix.
        assert_eq!(
            find_s5(&[0x08, b'\\', b'_', b'S', b'5', b'_', 0x12, 0x05, 0x02, 0x0a, 0x07, 0x00]),
            Some((7, 0))
        );
        // One element only: SLP_TYPb repeats SLP_TYPa; OneOp.
        assert_eq!(
            find_s5(&[0x08, b'_', b'S', b'5', b'_', 0x12, 0x03, 0x01, 0x01]),
            Some((1, 1))
        );
        // A reference to _S5_ that is not a Name() definition is skipped.
        assert_eq!(
            find_s5(&[0x70, b'_', b'S', b'5', b'_', 0x12, 0x03, 0x01, 0x01]),
            None
        );
        // Not a package, unknown element encoding, truncated: absent.
        assert_eq!(find_s5(&[0x08, b'_', b'S', b'5', b'_', 0x0a, 0x05]), None);
        assert_eq!(
            find_s5(&[0x08, b'_', b'S', b'5', b'_', 0x12, 0x03, 0x01, 0x5b]),
            None
        );
        assert_eq!(
            find_s5(&[0x08, b'_', b'S', b'5', b'_', 0x12, 0x03, 0x01, 0x0a]),
            None
        );
        assert_eq!(find_s5(b"_S5_"), None);
        assert_eq!(find_s5(&[]), None);
    }

    #[test]
    fn virtio_mmio_devices_of_qemu_microvm() {
        let mut found = Vec::new();
        find_mmio_devices(body(MICROVM), b"LNRO0005", |d| found.push((d.base, d.irq)));
        assert_eq!(found.len(), 1, "{found:x?}");
        assert_eq!(found[0].0 & !0xfff, 0xfeb0_2000, "{found:x?}");
        assert!(found[0].1 != 0, "{found:x?}");
        let mut none = 0;
        find_mmio_devices(body(PC), b"LNRO0005", |_| none += 1);
        assert_eq!(none, 0);
    }

    #[test]
    fn generic_event_device_of_qemu_microvm() {
        let ged = find_ged(body(MICROVM)).expect("GED");
        assert_eq!(ged.esel, 0xfea0_0000);
        assert!(ged.edge && !ged.active_low);
        assert!(ged.irq != 0);
        assert!(find_ged(body(PC)).is_none());
        assert!(find_ged(body(DOMUS)).is_none());
    }

    #[test]
    fn cpu_hotplug_registers_and_ged_of_domus_vmm() {
        let b = body(DOMUS_HOTPLUG);
        assert_eq!(find_memory_region(b, b"PRST"), Some(0xfeb0_1000));
        assert_eq!(find_memory_region(b, b"NONE"), None);
        let ged = find_ged(b).unwrap();
        assert_eq!(
            (ged.esel, ged.irq, ged.edge, ged.active_low),
            (0xfeb0_0000, 5, true, false)
        );
        assert_eq!(find_s5(b), Some((5, 5)));
        for t in [MICROVM, PC, DOMUS] {
            assert_eq!(find_memory_region(body(t), b"PRST"), None);
        }
    }

    #[test]
    fn every_truncation_and_corruption_is_handled() {
        for t in [MICROVM, PC, DOMUS, DOMUS_HOTPLUG] {
            let b = body(t);
            for len in 0..=b.len() {
                let cut = &b[..len];
                let _ = find_s5(cut);
                let _ = find_memory_region(cut, b"PRST");
                let _ = find_ged(cut);
                find_mmio_devices(cut, b"LNRO0005", |_| {});
            }
            let mut flipped = b.to_vec();
            for i in 0..flipped.len() {
                flipped[i] ^= 0xff;
                let _ = find_s5(&flipped);
                let _ = find_memory_region(&flipped, b"PRST");
                let _ = find_ged(&flipped);
                find_mmio_devices(&flipped, b"LNRO0005", |_| {});
                flipped[i] ^= 0xff;
            }
        }
    }
}
