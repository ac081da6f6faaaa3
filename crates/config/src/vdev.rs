//! Virtual device names (vdevs) and their device numbers, per Xen's xen-vbd-interface(7).
//!
//! Accepted names: `xvd<letters>[<partition>]`, `sd<letters>[<partition>]`, `hd<letters>[<partition>]`,
//! `d<disk>[p<partition>]`, or a bare number (decimal, `0x` hex or `0` octal) that is the device number
//! itself (the HOWTO's `0x1`, `0x301`). Letters count in bijective base 26 (`a` = 0, `z` = 25, `aa` = 26,
//! `tq` = 536). Partition numbers are decimal without leading zeros; none means the whole disk (0).
//!
//! Encodings (the integer written to xenstore's `virtual-device`):
//! ```text
//! 202 << 8 | disk << 4 | partition     xvd / dN, disk < 16 and partition < 16
//! 1 << 28 | disk << 8 | partition      xvd / dN, disk < 2^20 and partition < 256
//! 8 << 8 | disk << 4 | partition       sd, disk < 16 and partition < 16
//! 3 << 8 | disk << 6 | partition       hd, disks 0..1, partition < 64
//! 22 << 8 | (disk - 2) << 6 | partition  hd, disks 2..3, partition < 64
//! ```

/// Why a vdev is not accepted.
pub type VdevReason = &'static str;

/// The device number of `vdev`.
///
/// # Errors
/// A short reason (for [`crate::disk::DiskSpecError::BadVdev`]) when `vdev` is not a valid name.
pub fn devnum(vdev: &str) -> Result<u32, VdevReason> {
    if vdev.starts_with(|c: char| c.is_ascii_digit()) {
        let n = crate::lexer::parse_number(vdev)
            .ok_or("a bare device number must be decimal, 0x-hex or 0-octal")?;
        return u32::try_from(n).map_err(|_| "device number does not fit in 32 bits");
    }
    if let Some(rest) = vdev.strip_prefix("xvd") {
        let (disk, part) = letters_and_partition(rest)?;
        return xvd(disk, part);
    }
    if let Some(rest) = vdev.strip_prefix("sd") {
        let (disk, part) = letters_and_partition(rest)?;
        if disk >= 16 || part >= 16 {
            return Err("sd disks and partitions must be below 16 (sda..sdp, partitions 1..15)");
        }
        return Ok(8 << 8 | disk << 4 | part);
    }
    if let Some(rest) = vdev.strip_prefix("hd") {
        let (disk, part) = letters_and_partition(rest)?;
        if part >= 64 {
            return Err("hd partitions must be below 64");
        }
        return match disk {
            0 | 1 => Ok(3 << 8 | disk << 6 | part),
            2 | 3 => Ok(22 << 8 | (disk - 2) << 6 | part),
            _ => Err("hd disks must be hda..hdd"),
        };
    }
    if let Some(rest) = vdev.strip_prefix('d') {
        let (disk_text, part_text) = match rest.split_once('p') {
            Some((d, p)) => (d, Some(p)),
            None => (rest, None),
        };
        let disk = decimal(disk_text).ok_or("dN[pM] needs decimal disk and partition numbers")?;
        let part = match part_text {
            Some(p) => decimal(p).ok_or("dN[pM] needs decimal disk and partition numbers")?,
            None => 0,
        };
        return xvd(disk, part);
    }
    Err("expected xvdX, sdX, hdX (with an optional partition number), dN[pM] or a device number")
}

fn xvd(disk: u32, part: u32) -> Result<u32, VdevReason> {
    if disk < 16 && part < 16 {
        Ok(202 << 8 | disk << 4 | part)
    } else if disk < (1 << 20) && part < 256 {
        Ok(1 << 28 | disk << 8 | part)
    } else {
        Err("xvd disks must be below 2^20 and partitions below 256")
    }
}

/// A decimal number without leading zeros (except `0` itself), below 2^20.
fn decimal(text: &str) -> Option<u32> {
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if text.len() > 1 && text.starts_with('0') {
        return None;
    }
    text.parse::<u32>().ok().filter(|&n| n < (1 << 20))
}

fn letters_and_partition(rest: &str) -> Result<(u32, u32), VdevReason> {
    let split = rest
        .find(|c: char| !c.is_ascii_lowercase())
        .unwrap_or(rest.len());
    let (letters, digits) = rest.split_at(split);
    if letters.is_empty() {
        return Err("expected disk letters (a, b, ..., z, aa, ...) after the prefix");
    }
    let mut disk: u32 = 0;
    for c in letters.bytes() {
        let digit = u32::from(c - b'a') + 1;
        disk = disk
            .checked_mul(26)
            .and_then(|d| d.checked_add(digit))
            .filter(|&d| d <= 1 << 20)
            .ok_or("too many disk letters: disks must be below 2^20")?;
    }
    disk -= 1;
    let part = if digits.is_empty() {
        0
    } else if digits == "0" {
        return Err("partition 0 is the whole disk: leave the partition number out");
    } else {
        decimal(digits).ok_or(
            "expected a partition number (decimal, no leading zeros) after the disk letters",
        )?
    };
    Ok((disk, part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vdev_numbers() {
        let cases: &[(&str, u32)] = &[
            ("xvda", 51712),
            ("xvdb", 51728),
            ("xvda1", 51713),
            ("xvdb2", 202 << 8 | 1 << 4 | 2),
            ("xvdp15", 202 << 8 | 15 << 4 | 15),
            ("xvdq", 1 << 28 | 16 << 8),
            ("xvda16", 1 << 28 | 16),
            ("xvdz", 1 << 28 | 25 << 8),
            ("xvdaa", 1 << 28 | 26 << 8),
            ("xvdtq37", 1 << 28 | 536 << 8 | 37),
            ("d0", 51712),
            ("d0p0", 51712),
            ("d1p2", 202 << 8 | 1 << 4 | 2),
            ("d536p37", 1 << 28 | 536 << 8 | 37),
            ("sda", 2048),
            ("sdb3", 8 << 8 | 1 << 4 | 3),
            ("hda", 0x300),
            ("hda1", 0x301),
            ("hdb", 3 << 8 | 1 << 6),
            ("hdc", 22 << 8),
            ("hdc2", 22 << 8 | 2),
            ("hdd63", 22 << 8 | 1 << 6 | 63),
            ("0x0", 0),
            ("0x1", 1),
            ("0x01", 1),
            ("0x301", 0x301),
            ("769", 769),
            ("0777", 0o777),
            ("51712", 51712),
        ];
        for (vdev, want) in cases {
            assert_eq!(devnum(vdev), Ok(*want), "{vdev}");
        }
    }

    #[test]
    fn bad_vdevs() {
        let cases: &[(&str, &str)] = &[
            ("xvd", "expected disk letters"),
            ("xvd1", "expected disk letters"),
            ("xvda0", "partition 0 is the whole disk"),
            ("xvda01", "expected a partition number"),
            ("xvda1x", "expected a partition number"),
            (
                "xvda256",
                "xvd disks must be below 2^20 and partitions below 256",
            ),
            ("sdq", "sd disks and partitions must be below 16"),
            ("sda16", "sd disks and partitions must be below 16"),
            ("hde", "hd disks must be hda..hdd"),
            ("hda64", "hd partitions must be below 64"),
            ("d", "dN[pM] needs decimal"),
            ("d01", "dN[pM] needs decimal"),
            ("dxp1", "dN[pM] needs decimal"),
            ("d1p", "dN[pM] needs decimal"),
            ("wd0", "expected xvdX, sdX, hdX"),
            ("xvdA", "expected disk letters"),
            ("0x", "a bare device number must be"),
            ("09", "a bare device number must be"),
            ("0x100000000", "device number does not fit in 32 bits"),
            ("xvdzzzzzzz", "too many disk letters"),
            ("", "expected xvdX"),
        ];
        for (vdev, want) in cases {
            let err = devnum(vdev).unwrap_err();
            assert!(err.starts_with(want), "{vdev}: {err}");
        }
    }
}
