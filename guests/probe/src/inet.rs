//! Pure helpers of the probe's network scenarios: the `ip=`/`target=` arguments, the Internet
//! checksum (RFC 1071) and what a virtio-net driver does with checksum offload (virtio 1.2
//! §5.1.6.2: the driver leaves the pseudo-header sum in the checksum field and lets the device
//! finish; §5.1.6.4: a received frame marked NEEDS_CSUM has only that partial sum).

/// An IPv4 address with prefix length, `A.B.C.D/NN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// Address.
    pub addr: [u8; 4],
    /// Prefix length (0..=32).
    pub prefix: u8,
}

/// Parses `A.B.C.D`.
pub fn parse_ipv4(s: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = s.split('.');
    for b in &mut out {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        *b = p.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Parses `A.B.C.D/NN` (NN 0..=32).
pub fn parse_cidr(s: &str) -> Option<Cidr> {
    let (a, p) = s.split_once('/')?;
    let prefix: u8 = p.parse().ok().filter(|&n: &u8| n <= 32)?;
    if p.is_empty() || p.len() > 2 {
        return None;
    }
    Some(Cidr {
        addr: parse_ipv4(a)?,
        prefix,
    })
}

/// Parses `A.B.C.D:PORT`.
pub fn parse_endpoint(s: &str) -> Option<([u8; 4], u16)> {
    let (a, p) = s.split_once(':')?;
    Some((parse_ipv4(a)?, p.parse().ok()?))
}

/// The ones'-complement sum of `data` added to `sum` (not folded).
pub fn sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
    }
    acc
}

/// Folds a sum to 16 bits.
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Where the L4 checksum of an IPv4 frame is: (transport start, checksum offset in it,
/// pseudo-header sum folded), for UDP and TCP; `None` for anything else.
pub fn ipv4_l4(frame: &[u8]) -> Option<(usize, usize, u16)> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = frame.get(14..)?;
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    if ihl < 20 || total < ihl || total > ip.len() {
        return None;
    }
    let proto = *ip.get(9)?;
    let off = match proto {
        17 => 6,
        6 => 16,
        _ => return None,
    };
    let l4_len = u16::try_from(total - ihl).ok()?;
    let mut s = sum(0, ip.get(12..20)?);
    s = s
        .wrapping_add(u32::from(proto))
        .wrapping_add(u32::from(l4_len));
    Some((14 + ihl, off, fold(s)))
}

/// Prepares an outgoing IPv4 UDP/TCP frame for checksum offload: writes the pseudo-header sum in
/// the checksum field and returns (csum_start, csum_offset) for the virtio-net header.
pub fn offload_tx(frame: &mut [u8]) -> Option<(u16, u16)> {
    let (start, off, pseudo) = ipv4_l4(frame)?;
    let at = start.checked_add(off)?;
    frame
        .get_mut(at..at + 2)?
        .copy_from_slice(&pseudo.to_be_bytes());
    Some((u16::try_from(start).ok()?, u16::try_from(off).ok()?))
}

/// Completes a partial checksum (a received frame marked NEEDS_CSUM): the sum from `start` to the
/// end, stored at `start + offset`. False if the offsets are outside the frame.
pub fn complete_partial(frame: &mut [u8], start: usize, offset: usize) -> bool {
    let Some(at) = start.checked_add(offset) else {
        return false;
    };
    if at.checked_add(2).is_none_or(|e| e > frame.len()) || start > frame.len() {
        return false;
    }
    let s = fold(sum(0, &frame[start..]));
    let mut c = !s;
    // UDP transmits an all-zero result as 0xffff (RFC 768).
    if c == 0 {
        c = 0xffff;
    }
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

/// Whether the UDP/TCP checksum of an IPv4 frame is right (true for other frames, and for UDP
/// sent without a checksum).
pub fn l4_checksum_ok(frame: &[u8]) -> bool {
    let Some((start, off, pseudo)) = ipv4_l4(frame) else {
        return true;
    };
    let ip = &frame[14..];
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let end = 14 + total;
    if off == 6 && frame.get(start + 6..start + 8) == Some(&[0, 0]) {
        return true;
    }
    frame
        .get(start..end)
        .is_some_and(|l4| fold(sum(u32::from(pseudo), l4)) == 0xffff)
}

/// Writes `mac` as `xx:xx:xx:xx:xx:xx` into `out` (17 bytes).
pub fn format_mac(mac: [u8; 6], out: &mut [u8; 17]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in mac.iter().enumerate() {
        out[3 * i] = HEX[usize::from(b >> 4)];
        out[3 * i + 1] = HEX[usize::from(b & 15)];
        if i < 5 {
            out[3 * i + 2] = b':';
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + IPv4 + UDP 10.0.0.1:1000 -> 10.0.0.2:7 with payload "hello".
    fn udp_frame() -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12] = 8;
        let payload = b"hello";
        let total = 20 + 8 + payload.len();
        let mut ip = vec![
            0x45,
            0,
            0,
            total as u8,
            0,
            0,
            0,
            0,
            64,
            17,
            0,
            0,
            10,
            0,
            0,
            1,
            10,
            0,
            0,
            2,
        ];
        let c = !fold(sum(0, &ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend(ip);
        f.extend([0x03, 0xe8, 0, 7, 0, (8 + payload.len()) as u8, 0, 0]);
        f.extend(payload);
        f
    }

    #[test]
    fn arguments_parse_and_reject() {
        assert_eq!(
            parse_cidr("10.0.0.2/24"),
            Some(Cidr {
                addr: [10, 0, 0, 2],
                prefix: 24
            })
        );
        for bad in [
            "10.0.0.2",
            "10.0.0/24",
            "10.0.0.256/24",
            "10.0.0.2/33",
            "1.2.3.4/",
            "a.b.c.d/8",
            "1.2.3.4.5/8",
        ] {
            assert_eq!(parse_cidr(bad), None, "{bad}");
        }
        assert_eq!(parse_endpoint("10.0.0.1:5001"), Some(([10, 0, 0, 1], 5001)));
        assert_eq!(parse_endpoint("10.0.0.1:70000"), None);
        let mut s = [0u8; 17];
        format_mac([0x00, 0x16, 0x3e, 0xab, 0x01, 0xff], &mut s);
        assert_eq!(&s, b"00:16:3e:ab:01:ff");
    }

    #[test]
    fn offloaded_checksum_completes_to_the_real_one() {
        let mut f = udp_frame();
        let (start, off) = offload_tx(&mut f).unwrap();
        assert_eq!((start, off), (34, 6));
        assert!(
            !l4_checksum_ok(&f),
            "a partial sum alone is not a valid checksum"
        );
        assert!(complete_partial(&mut f, 34, 6));
        assert!(l4_checksum_ok(&f));
        // Corrupt one payload byte: detected.
        let n = f.len();
        f[n - 1] ^= 1;
        assert!(!l4_checksum_ok(&f));
        assert!(!complete_partial(&mut f, 34, 100));
        assert!(!complete_partial(&mut f, usize::MAX, 6));
    }

    #[test]
    fn non_ip_and_truncated_frames_are_left_alone() {
        let mut arp = vec![0u8; 42];
        arp[12] = 8;
        arp[13] = 6;
        assert_eq!(offload_tx(&mut arp), None);
        assert!(l4_checksum_ok(&arp));
        let f = udp_frame();
        assert_eq!(ipv4_l4(&f[..30]), None);
        assert_eq!(ipv4_l4(&[]), None);
    }
}
