//! The probe's IPv4 over Ethernet, as small as its scenarios need: ARP (RFC 826), ICMP echo
//! (RFC 792) and UDP (RFC 768). Pure: frames in, a parsed view out; frames built into a caller's
//! buffer. Every length is checked; a frame that does not parse is `Other`.
//!
//! (smoltcp was the first choice, but its `byteorder` dependency gets its `std` feature switched on
//! by another workspace member's dependency, and a workspace build then links std into this
//! `no_std` guest.)

use crate::inet::{fold, sum};

/// Ethernet header length.
pub const ETH: usize = 14;
/// IPv4 header length (no options are sent).
pub const IP: usize = 20;
/// Broadcast address.
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// What a received frame is.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// ARP request: who has `tpa`? tell `spa` at `sha`.
    ArpRequest {
        /// Sender hardware address.
        sha: [u8; 6],
        /// Sender protocol address.
        spa: [u8; 4],
        /// Target protocol address.
        tpa: [u8; 4],
    },
    /// ARP reply: `spa` is at `sha`.
    ArpReply {
        /// Sender hardware address.
        sha: [u8; 6],
        /// Sender protocol address.
        spa: [u8; 4],
    },
    /// ICMP echo request.
    EchoRequest {
        /// Source MAC.
        mac: [u8; 6],
        /// Source address.
        src: [u8; 4],
        /// Destination address.
        dst: [u8; 4],
        /// Identifier.
        id: u16,
        /// Sequence number.
        seq: u16,
        /// Payload.
        data: &'a [u8],
    },
    /// ICMP echo reply.
    EchoReply {
        /// Source address.
        src: [u8; 4],
        /// Identifier.
        id: u16,
        /// Sequence number.
        seq: u16,
    },
    /// A UDP datagram.
    Udp {
        /// Source MAC.
        mac: [u8; 6],
        /// Source address.
        src: [u8; 4],
        /// Destination address.
        dst: [u8; 4],
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Payload.
        data: &'a [u8],
    },
    /// Anything else (or malformed).
    Other,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn arr<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at + N)?.try_into().ok()
}

/// Parses an Ethernet frame. UDP checksums are left to the caller (the driver checks or the device
/// vouched for them); IPv4 header and ICMP checksums are verified here.
pub fn parse(frame: &[u8]) -> Parsed<'_> {
    parse_opt(frame).unwrap_or(Parsed::Other)
}

fn parse_opt(f: &[u8]) -> Option<Parsed<'_>> {
    let mac: [u8; 6] = arr(f, 6)?;
    match be16(f, 12)? {
        0x0806 => arp(f.get(ETH..)?),
        0x0800 => ip(f.get(ETH..)?, mac),
        _ => None,
    }
}

fn arp(a: &[u8]) -> Option<Parsed<'_>> {
    // Ethernet (1) / IPv4 (0x0800), lengths 6 and 4.
    if be16(a, 0)? != 1 || be16(a, 2)? != 0x0800 || a.get(4..6)? != [6, 4] {
        return None;
    }
    let sha = arr(a, 8)?;
    let spa = arr(a, 14)?;
    match be16(a, 6)? {
        1 => Some(Parsed::ArpRequest {
            sha,
            spa,
            tpa: arr(a, 24)?,
        }),
        2 => Some(Parsed::ArpReply { sha, spa }),
        _ => None,
    }
}

fn ip(p: &[u8], mac: [u8; 6]) -> Option<Parsed<'_>> {
    let vihl = *p.first()?;
    let ihl = usize::from(vihl & 15) * 4;
    let total = usize::from(be16(p, 2)?);
    if vihl >> 4 != 4 || ihl < IP || total < ihl || total > p.len() {
        return None;
    }
    // Fragments are not reassembled: drop anything but a whole datagram.
    if be16(p, 6)? & 0x3fff != 0 || fold(sum(0, p.get(..ihl)?)) != 0xffff {
        return None;
    }
    let (src, dst) = (arr(p, 12)?, arr(p, 16)?);
    let body = p.get(ihl..total)?;
    match p.get(9)? {
        1 => {
            if fold(sum(0, body)) != 0xffff {
                return None;
            }
            let (id, seq) = (be16(body, 4)?, be16(body, 6)?);
            match body.first()? {
                8 => Some(Parsed::EchoRequest {
                    mac,
                    src,
                    dst,
                    id,
                    seq,
                    data: body.get(8..)?,
                }),
                0 => Some(Parsed::EchoReply { src, id, seq }),
                _ => None,
            }
        }
        17 => {
            let len = usize::from(be16(body, 4)?);
            if len < 8 || len > body.len() {
                return None;
            }
            Some(Parsed::Udp {
                mac,
                src,
                dst,
                sport: be16(body, 0)?,
                dport: be16(body, 2)?,
                data: body.get(8..len)?,
            })
        }
        _ => None,
    }
}

fn eth(buf: &mut [u8], dst: [u8; 6], src: [u8; 6], ethertype: u16) {
    buf[..6].copy_from_slice(&dst);
    buf[6..12].copy_from_slice(&src);
    buf[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

/// Builds an ARP frame (`op` 1 request, 2 reply) into `buf` (at least 42 bytes); its length.
pub fn build_arp(
    buf: &mut [u8],
    op: u16,
    sha: [u8; 6],
    spa: [u8; 4],
    tha: [u8; 6],
    tpa: [u8; 4],
) -> usize {
    let dst = if op == 1 { BROADCAST } else { tha };
    eth(buf, dst, sha, 0x0806);
    let a = &mut buf[ETH..ETH + 28];
    a[..8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 0]);
    a[6..8].copy_from_slice(&op.to_be_bytes());
    a[8..14].copy_from_slice(&sha);
    a[14..18].copy_from_slice(&spa);
    a[18..24].copy_from_slice(&tha);
    a[24..28].copy_from_slice(&tpa);
    ETH + 28
}

/// Addresses of an outgoing IPv4 packet.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    /// Our MAC.
    pub src_mac: [u8; 6],
    /// Next hop's MAC.
    pub dst_mac: [u8; 6],
    /// Our address.
    pub src: [u8; 4],
    /// Destination address.
    pub dst: [u8; 4],
}

fn ipv4(buf: &mut [u8], r: &Route, proto: u8, body: usize, ident: u16) {
    eth(buf, r.dst_mac, r.src_mac, 0x0800);
    let total = u16::try_from(IP + body).unwrap_or(u16::MAX);
    let h = &mut buf[ETH..ETH + IP];
    h.copy_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[4..6].copy_from_slice(&ident.to_be_bytes());
    h[12..16].copy_from_slice(&r.src);
    h[16..20].copy_from_slice(&r.dst);
    let c = !fold(sum(0, h));
    h[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Builds an ICMP echo request (or reply) into `buf`; its length (0 if `buf` is too small).
pub fn build_echo(
    buf: &mut [u8],
    r: &Route,
    reply: bool,
    id: u16,
    seq: u16,
    data: &[u8],
    ident: u16,
) -> usize {
    let len = ETH + IP + 8 + data.len();
    if buf.len() < len {
        return 0;
    }
    ipv4(buf, r, 1, 8 + data.len(), ident);
    let m = &mut buf[ETH + IP..len];
    m[0] = if reply { 0 } else { 8 };
    m[1] = 0;
    m[2..4].fill(0);
    m[4..6].copy_from_slice(&id.to_be_bytes());
    m[6..8].copy_from_slice(&seq.to_be_bytes());
    m[8..].copy_from_slice(data);
    let c = !fold(sum(0, m));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    len
}

/// Builds a UDP datagram into `buf`; its length (0 if `buf` is too small). With `offload` the
/// checksum is left for the device (the driver writes the pseudo-header sum), else computed here.
#[allow(clippy::too_many_arguments)]
pub fn build_udp(
    buf: &mut [u8],
    r: &Route,
    sport: u16,
    dport: u16,
    data: &[u8],
    ident: u16,
    offload: bool,
) -> usize {
    let len = udp_headers(buf, r, sport, dport, data.len(), ident);
    if len == 0 {
        return 0;
    }
    let ulen = u16::try_from(8 + data.len()).unwrap_or(0);
    let u = &mut buf[ETH + IP..len];
    u[8..].copy_from_slice(data);
    if !offload {
        let mut s = sum(0, &r.src);
        s = sum(s, &r.dst);
        s = s.wrapping_add(17).wrapping_add(u32::from(ulen));
        let mut c = !fold(sum(s, u));
        if c == 0 {
            c = 0xffff;
        }
        u[6..8].copy_from_slice(&c.to_be_bytes());
    }
    len
}

/// Writes the Ethernet, IPv4 and UDP headers of a datagram with `payload` bytes into `buf`,
/// leaving the payload bytes after them as they are and the UDP checksum 0; the frame's length
/// (0 if `buf` is too small or the datagram too large for IPv4).
pub fn udp_headers(
    buf: &mut [u8],
    r: &Route,
    sport: u16,
    dport: u16,
    payload: usize,
    ident: u16,
) -> usize {
    let len = ETH + IP + 8 + payload;
    if buf.len() < len || 8 + payload > usize::from(u16::MAX) - IP {
        return 0;
    }
    ipv4(buf, r, 17, 8 + payload, ident);
    let ulen = u16::try_from(8 + payload).unwrap_or(0);
    let u = &mut buf[ETH + IP..ETH + IP + 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&ulen.to_be_bytes());
    u[6..8].fill(0);
    len
}

/// The addressing of a UDP/IPv4 datagram whose payload is not at hand (see [`udp_head`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpHead {
    /// Source address.
    pub src: [u8; 4],
    /// Destination address.
    pub dst: [u8; 4],
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Payload bytes.
    pub payload: usize,
}

/// The addressing of a UDP/IPv4 frame of `full` bytes of which `head` holds the start (a
/// segmentation offload frame, too large to copy whole), when the headers are whole and agree
/// with `full`.
pub fn udp_head(head: &[u8], full: usize) -> Option<UdpHead> {
    if be16(head, 12)? != 0x0800 {
        return None;
    }
    let p = head.get(ETH..)?;
    let ihl = usize::from(*p.first()? & 15) * 4;
    let total = usize::from(be16(p, 2)?);
    if *p.first()? >> 4 != 4 || ihl < IP || *p.get(9)? != 17 || ETH + total != full {
        return None;
    }
    let u = p.get(ihl..ihl + 8)?;
    let ulen = usize::from(be16(u, 4)?);
    if ulen < 8 || ihl + ulen != total {
        return None;
    }
    Some(UdpHead {
        src: arr(p, 12)?,
        dst: arr(p, 16)?,
        sport: be16(u, 0)?,
        dport: be16(u, 2)?,
        payload: ulen - 8,
    })
}

/// Whether `ip` is in `net`/`prefix`.
pub fn same_subnet(ip: [u8; 4], net: [u8; 4], prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    u32::from_be_bytes(ip) & mask == u32::from_be_bytes(net) & mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inet::l4_checksum_ok;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn route() -> Route {
        Route {
            src_mac: A,
            dst_mac: B,
            src: [10, 0, 0, 1],
            dst: [10, 0, 0, 2],
        }
    }

    #[test]
    fn arp_round_trips() {
        let mut b = [0u8; 64];
        let n = build_arp(&mut b, 1, A, [10, 0, 0, 1], [0; 6], [10, 0, 0, 2]);
        assert_eq!(n, 42);
        assert_eq!(b[..6], BROADCAST);
        assert_eq!(
            parse(&b[..n]),
            Parsed::ArpRequest {
                sha: A,
                spa: [10, 0, 0, 1],
                tpa: [10, 0, 0, 2]
            }
        );
        let n = build_arp(&mut b, 2, B, [10, 0, 0, 2], A, [10, 0, 0, 1]);
        assert_eq!(b[..6], A);
        assert_eq!(
            parse(&b[..n]),
            Parsed::ArpReply {
                sha: B,
                spa: [10, 0, 0, 2]
            }
        );
    }

    #[test]
    fn echo_and_udp_round_trip_with_valid_checksums() {
        let mut b = [0u8; 256];
        let n = build_echo(&mut b, &route(), false, 7, 9, b"ping", 1);
        match parse(&b[..n]) {
            Parsed::EchoRequest {
                id, seq, data, src, ..
            } => {
                assert_eq!((id, seq, data, src), (7, 9, &b"ping"[..], [10, 0, 0, 1]));
            }
            other => panic!("{other:?}"),
        }
        let n = build_echo(&mut b, &route(), true, 7, 9, b"ping", 1);
        assert_eq!(
            parse(&b[..n]),
            Parsed::EchoReply {
                src: [10, 0, 0, 1],
                id: 7,
                seq: 9
            }
        );
        let n = build_udp(&mut b, &route(), 1000, 7, b"hello", 2, false);
        assert!(l4_checksum_ok(&b[..n]));
        match parse(&b[..n]) {
            Parsed::Udp {
                sport,
                dport,
                data,
                dst,
                ..
            } => {
                assert_eq!(
                    (sport, dport, data, dst),
                    (1000, 7, &b"hello"[..], [10, 0, 0, 2])
                );
            }
            other => panic!("{other:?}"),
        }
        // Offloaded: checksum left zero here (the driver fills the pseudo-header sum).
        let n = build_udp(&mut b, &route(), 1000, 7, b"hello", 2, true);
        assert_eq!(b[ETH + IP + 6..ETH + IP + 8], [0, 0]);
        assert!(matches!(parse(&b[..n]), Parsed::Udp { .. }));
        assert_eq!(build_udp(&mut b[..40], &route(), 1, 2, b"x", 0, false), 0);
    }

    #[test]
    fn malformed_frames_are_other() {
        let mut b = [0u8; 256];
        let n = build_echo(&mut b, &route(), false, 7, 9, b"ping", 1);
        for cut in [0, 13, 20, 33, 40] {
            assert_eq!(parse(&b[..cut]), Parsed::Other, "cut {cut}");
        }
        let mut bad = b;
        bad[ETH + 8] ^= 1; // TTL: header checksum now wrong
        assert_eq!(parse(&bad[..n]), Parsed::Other);
        let mut bad = b;
        bad[n - 1] ^= 1; // ICMP payload: ICMP checksum wrong
        assert_eq!(parse(&bad[..n]), Parsed::Other);
        let mut frag = b;
        frag[ETH + 6] = 0x20; // more fragments
        assert_eq!(parse(&frag[..n]), Parsed::Other);
        assert!(same_subnet([10, 0, 0, 9], [10, 0, 0, 1], 24));
        assert!(!same_subnet([10, 0, 1, 9], [10, 0, 0, 1], 24));
        assert!(same_subnet([1, 2, 3, 4], [9, 9, 9, 9], 0));
    }

    #[test]
    fn a_segmentation_frame_is_addressed_from_its_headers_alone() {
        let r = route();
        let mut whole = [0u8; 3100];
        // Headers of a 3000-byte datagram; udp_head sees only the first 200 bytes.
        let n = udp_headers(&mut whole, &r, 40_000, 5001, 3000, 7);
        let mut b = [0u8; 200];
        b.copy_from_slice(&whole[..200]);
        assert_eq!(n, ETH + IP + 8 + 3000);
        assert_eq!(b[ETH + IP + 4..ETH + IP + 6], 3008u16.to_be_bytes());
        let head = UdpHead {
            src: r.src,
            dst: r.dst,
            sport: 40_000,
            dport: 5001,
            payload: 3000,
        };
        assert_eq!(udp_head(&b, n), Some(head));
        assert_eq!(udp_head(&b, n - 1), None, "the lengths disagree");
        assert_eq!(udp_head(&b[..ETH + IP + 4], n), None, "UDP header cut");
        let mut tcp = b;
        tcp[ETH + 9] = 6;
        assert_eq!(udp_head(&tcp, n), None);
        assert_eq!(
            udp_headers(&mut b, &r, 1, 2, 3000, 0),
            0,
            "buffer too small"
        );
    }
}
