//! Guest MAC addresses: parsing, Xen's OUI `00:16:3e` for random ones, the multicast check.

/// Xen's OUI, used for MACs the toolstack chooses.
pub const XEN_OUI: [u8; 3] = [0x00, 0x16, 0x3e];

/// `aa:bb:cc:dd:ee:ff`.
pub fn format(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff` (hex digits, either case).
pub fn parse(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// The group bit: such an address can't be a NIC's.
pub fn is_multicast(mac: [u8; 6]) -> bool {
    mac[0] & 1 == 1
}

/// A random address in Xen's OUI (as xl does: `00:16:3e` and three random bytes), from the
/// kernel's random source.
pub fn random_xen_mac() -> std::io::Result<[u8; 6]> {
    let mut tail = [0u8; 3];
    // getrandom(2) fills the buffer fully for requests this small.
    // SAFETY: the pointer and length describe `tail`, which lives across the call.
    let n = unsafe { libc::getrandom(tail.as_mut_ptr().cast(), tail.len(), 0) };
    if n != 3 {
        return Err(std::io::Error::last_os_error());
    }
    Ok([
        XEN_OUI[0], XEN_OUI[1], XEN_OUI[2], tail[0], tail[1], tail[2],
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_format_round_trip_and_rejects() {
        let m = parse("AA:00:00:d1:00:09").expect("parses");
        assert_eq!(format(m), "aa:00:00:d1:00:09");
        for bad in [
            "",
            "aa:00:00:d1:00",
            "aa:00:00:d1:00:09:01",
            "aa:0:00:d1:00:09",
            "zz:00:00:00:00:00",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert!(is_multicast(parse("01:00:5e:00:00:01").expect("parses")));
        assert!(!is_multicast(m));
        let r = random_xen_mac().expect("random");
        assert_eq!(r[..3], XEN_OUI);
        assert!(!is_multicast(r));
    }
}
