//! Little-endian field access and checksums for firmware tables.
//!
//! Readers return 0 for fields that lie beyond the end of the data instead of panicking: a
//! truncated table then parses as "field absent", which every caller treats as "not supported".

/// Length of the common ACPI table header (ACPI 6.5 §5.2.6).
pub const HEADER_LEN: usize = 36;

/// Whether the bytes sum to 0 modulo 256 (the ACPI table and RSDP checksum rule).
pub fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |sum, &b| sum.wrapping_add(b)) == 0
}

/// The little-endian u16 at `off`, or 0 if it does not fit.
pub fn le16(bytes: &[u8], off: usize) -> u16 {
    match off.checked_add(2).and_then(|end| bytes.get(off..end)) {
        Some(b) => u16::from_le_bytes([b[0], b[1]]),
        None => 0,
    }
}

/// The little-endian u32 at `off`, or 0 if it does not fit.
pub fn le32(bytes: &[u8], off: usize) -> u32 {
    match off.checked_add(4).and_then(|end| bytes.get(off..end)) {
        Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

/// The little-endian u64 at `off`, or 0 if it does not fit.
pub fn le64(bytes: &[u8], off: usize) -> u64 {
    match off.checked_add(8).and_then(|end| bytes.get(off..end)) {
        Some(b) => u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_beyond_the_end_read_as_zero() {
        let b = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(le16(&b, 0), 0x0201);
        assert_eq!(le32(&b, 4), 0x0807_0605);
        assert_eq!(le64(&b, 0), 0x0807_0605_0403_0201);
        assert_eq!(le32(&b, 5), 0);
        assert_eq!(le64(&b, 1), 0);
        assert_eq!(le16(&b, usize::MAX), 0);
    }

    #[test]
    fn checksum() {
        assert!(checksum_ok(&[0x10, 0xf0]));
        assert!(!checksum_ok(&[0x10, 0xf1]));
        assert!(checksum_ok(&[]));
    }
}
