//! The probe's DHCPv4 client messages (RFC 2131, options from RFC 2132): DISCOVER and REQUEST
//! built as whole broadcast Ethernet frames (source 0.0.0.0, UDP 68 -> 67, BROADCAST flag set so
//! the server answers by broadcast: the probe has no address to be unicast to yet), and OFFER /
//! ACK / NAK replies parsed from a UDP payload. Pure: the scenario (`scenarios/net/dhcp.rs` in the
//! binary) owns the retransmission and the clock.
//!
//! A reply is untrusted: every read is bounds-checked, an option running past the end, a message
//! for another transaction or client, a reply without a message type, an OFFER/ACK without an
//! address or server identifier and a non-contiguous subnet mask all yield `None`.

use crate::ipv4::{build_udp, Route, BROADCAST};

/// The client's UDP port.
pub const CLIENT_PORT: u16 = 68;
/// The server's UDP port.
pub const SERVER_PORT: u16 = 67;
/// The magic cookie opening the options (RFC 2131 §3).
const COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Fixed BOOTP header before the cookie.
const FIXED: usize = 236;
/// Smallest BOOTP message a relay must accept (RFC 1542 §2.1); shorter ones are padded.
const MIN_MSG: usize = 300;
/// The BOOTP message built here (with options) fits in this.
const MSG_CAP: usize = 320;

/// DHCP message types (option 53).
pub mod kind {
    /// DHCPDISCOVER.
    pub const DISCOVER: u8 = 1;
    /// DHCPOFFER.
    pub const OFFER: u8 = 2;
    /// DHCPREQUEST.
    pub const REQUEST: u8 = 3;
    /// DHCPACK.
    pub const ACK: u8 = 5;
    /// DHCPNAK.
    pub const NAK: u8 = 6;
}

/// A parsed server reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Message type (option 53): [`kind::OFFER`], [`kind::ACK`] or [`kind::NAK`].
    pub kind: u8,
    /// The offered / leased address (`yiaddr`; zero in a NAK).
    pub yiaddr: [u8; 4],
    /// Server identifier (option 54; zero if a NAK had none).
    pub server: [u8; 4],
    /// Prefix length from the subnet mask (option 1), if sent.
    pub prefix: Option<u8>,
    /// First router (option 3), if sent.
    pub router: Option<[u8; 4]>,
    /// Lease time in seconds (option 51), if sent.
    pub lease: Option<u32>,
}

/// Builds a DHCPDISCOVER frame into `buf`; its length (0 if `buf` is too small).
pub fn build_discover(buf: &mut [u8], mac: [u8; 6], xid: u32, secs: u16) -> usize {
    build(buf, mac, xid, secs, kind::DISCOVER, None)
}

/// Builds a DHCPREQUEST (SELECTING state: requested address and server identifier) into `buf`;
/// its length (0 if `buf` is too small).
pub fn build_request(
    buf: &mut [u8],
    mac: [u8; 6],
    xid: u32,
    secs: u16,
    addr: [u8; 4],
    server: [u8; 4],
) -> usize {
    build(buf, mac, xid, secs, kind::REQUEST, Some((addr, server)))
}

fn build(
    buf: &mut [u8],
    mac: [u8; 6],
    xid: u32,
    secs: u16,
    msg: u8,
    select: Option<([u8; 4], [u8; 4])>,
) -> usize {
    let mut m = [0u8; MSG_CAP];
    m[0] = 1; // BOOTREQUEST
    m[1] = 1; // Ethernet
    m[2] = 6;
    m[4..8].copy_from_slice(&xid.to_be_bytes());
    m[8..10].copy_from_slice(&secs.to_be_bytes());
    m[10..12].copy_from_slice(&0x8000u16.to_be_bytes()); // BROADCAST
    m[28..34].copy_from_slice(&mac);
    m[FIXED..FIXED + 4].copy_from_slice(&COOKIE);
    let mut at = FIXED + 4;
    let mut opt = |code: u8, data: &[u8]| {
        m[at] = code;
        m[at + 1] = data.len() as u8;
        m[at + 2..at + 2 + data.len()].copy_from_slice(data);
        at += 2 + data.len();
    };
    opt(53, &[msg]);
    let mut client_id = [1u8; 7];
    client_id[1..].copy_from_slice(&mac);
    opt(61, &client_id);
    if let Some((addr, server)) = select {
        opt(50, &addr);
        opt(54, &server);
    }
    // Parameter request list: subnet mask, router, lease time, server identifier.
    opt(55, &[1, 3, 51, 54]);
    m[at] = 255;
    let len = (at + 1).max(MIN_MSG);
    let r = Route {
        src_mac: mac,
        dst_mac: BROADCAST,
        src: [0; 4],
        dst: [255; 4],
    };
    build_udp(buf, &r, CLIENT_PORT, SERVER_PORT, &m[..len], 0, false)
}

fn addr4(d: &[u8]) -> Option<[u8; 4]> {
    d.try_into().ok()
}

/// The prefix length of a contiguous subnet mask; `None` for a non-contiguous one.
pub fn mask_prefix(mask: [u8; 4]) -> Option<u8> {
    let m = u32::from_be_bytes(mask);
    let ones = m.leading_ones();
    (m.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// Parses a server's BOOTP/DHCP message (`payload` of a UDP datagram from port 67) for
/// transaction `xid` and client `mac`; `None` if it is malformed, for someone else, or not an
/// OFFER, ACK or NAK.
pub fn parse_reply(payload: &[u8], xid: u32, mac: [u8; 6]) -> Option<Reply> {
    let fixed = payload.get(..FIXED + 4)?;
    if fixed[0] != 2 || fixed[1] != 1 || fixed[2] != 6 || fixed[FIXED..] != COOKIE {
        return None;
    }
    if fixed[4..8] != xid.to_be_bytes() || fixed[28..34] != mac {
        return None;
    }
    let yiaddr = addr4(&fixed[16..20])?;
    let (mut msg, mut server, mut prefix, mut router, mut lease) = (None, None, None, None, None);
    let mut opts = &payload[FIXED + 4..];
    loop {
        let (&code, rest) = opts.split_first()?; // no END option: truncated
        match code {
            0 => {
                opts = rest;
                continue;
            }
            255 => break,
            _ => {}
        }
        let (&len, rest) = rest.split_first()?;
        let data = rest.get(..usize::from(len))?;
        opts = &rest[usize::from(len)..];
        match code {
            53 if len == 1 => msg = Some(data[0]),
            54 => server = Some(addr4(data)?),
            1 => prefix = Some(mask_prefix(addr4(data)?)?),
            3 => {
                if len < 4 || len % 4 != 0 {
                    return None;
                }
                router = addr4(&data[..4]);
            }
            51 => lease = Some(u32::from_be_bytes(data.try_into().ok()?)),
            53 => return None,
            _ => {}
        }
    }
    let kind = msg?;
    match kind {
        kind::OFFER | kind::ACK => {
            let bad = |a: [u8; 4]| a == [0; 4] || a == [255; 4] || a[0] >= 224;
            if bad(yiaddr) || bad(server?) {
                return None;
            }
        }
        kind::NAK => {}
        _ => return None,
    }
    Some(Reply {
        kind,
        yiaddr,
        server: server.unwrap_or([0; 4]),
        prefix,
        router: router.filter(|&r| r != [0; 4]),
        lease,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inet::l4_checksum_ok;
    use crate::ipv4::{parse, Parsed, ETH, IP};

    const MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0x12, 0x34, 0x56];
    const XID: u32 = 0xdead_beef;

    /// A server reply: fixed part, cookie, `opts` (raw, END appended by the caller).
    fn reply(yiaddr: [u8; 4], opts: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; FIXED];
        m[0] = 2;
        m[1] = 1;
        m[2] = 6;
        m[4..8].copy_from_slice(&XID.to_be_bytes());
        m[16..20].copy_from_slice(&yiaddr);
        m[28..34].copy_from_slice(&MAC);
        m.extend(COOKIE);
        m.extend(opts);
        m
    }

    fn offer_opts() -> Vec<u8> {
        vec![
            53, 1, 2, 54, 4, 10, 0, 5, 1, 51, 4, 0, 0, 0x0e, 0x10, 1, 4, 255, 255, 255, 0, 3, 8,
            10, 0, 5, 1, 10, 0, 5, 254, 0, 0, 255,
        ]
    }

    #[test]
    fn discover_and_request_are_broadcast_dhcp_frames() {
        let mut b = [0u8; 600];
        let n = build_discover(&mut b, MAC, XID, 3);
        assert_eq!(n, ETH + IP + 8 + MIN_MSG);
        assert_eq!(b[..6], BROADCAST);
        assert!(l4_checksum_ok(&b[..n]));
        let Parsed::Udp {
            src,
            dst,
            sport,
            dport,
            data,
            mac,
        } = parse(&b[..n])
        else {
            panic!("not UDP");
        };
        assert_eq!(
            (src, dst, sport, dport, mac),
            ([0; 4], [255; 4], 68, 67, MAC)
        );
        assert_eq!(data[0], 1);
        assert_eq!(data[4..8], XID.to_be_bytes());
        assert_eq!(data[8..10], [0, 3]);
        assert_eq!(data[10], 0x80);
        assert_eq!(data[28..34], MAC);
        assert_eq!(data[236..240], COOKIE);
        assert_eq!(data[240..243], [53, 1, 1]);
        assert_eq!(
            data[243..252],
            [61, 7, 1, 0x00, 0x16, 0x3e, 0x12, 0x34, 0x56]
        );
        assert_eq!(data[252..258], [55, 4, 1, 3, 51, 54]);
        assert_eq!(data[258], 255);

        let n = build_request(&mut b, MAC, XID, 4, [10, 0, 5, 50], [10, 0, 5, 1]);
        let Parsed::Udp { data, .. } = parse(&b[..n]) else {
            panic!("not UDP");
        };
        assert_eq!(data[240..243], [53, 1, 3]);
        assert_eq!(data[252..258], [50, 4, 10, 0, 5, 50]);
        assert_eq!(data[258..264], [54, 4, 10, 0, 5, 1]);
        assert_eq!(build_discover(&mut b[..100], MAC, XID, 0), 0);
    }

    #[test]
    fn offer_ack_and_nak_parse() {
        let m = reply([10, 0, 5, 50], &offer_opts());
        assert_eq!(
            parse_reply(&m, XID, MAC),
            Some(Reply {
                kind: kind::OFFER,
                yiaddr: [10, 0, 5, 50],
                server: [10, 0, 5, 1],
                prefix: Some(24),
                router: Some([10, 0, 5, 1]),
                lease: Some(3600),
            })
        );
        let m = reply([10, 0, 5, 50], &[53, 1, 5, 54, 4, 10, 0, 5, 1, 255]);
        let r = parse_reply(&m, XID, MAC).unwrap();
        assert_eq!(
            (r.kind, r.prefix, r.router, r.lease),
            (kind::ACK, None, None, None)
        );
        let m = reply([0; 4], &[53, 1, 6, 255]);
        assert_eq!(parse_reply(&m, XID, MAC).unwrap().kind, kind::NAK);
        assert_eq!(mask_prefix([255, 255, 255, 255]), Some(32));
        assert_eq!(mask_prefix([0; 4]), Some(0));
        assert_eq!(mask_prefix([255, 255, 240, 0]), Some(20));
    }

    #[test]
    fn truncated_replies_are_rejected_at_every_length() {
        let m = reply([10, 0, 5, 50], &offer_opts());
        assert!(parse_reply(&m, XID, MAC).is_some());
        // Without its END option every prefix is truncated (trailing pads do not end it).
        let end = m.iter().rposition(|&b| b == 255).unwrap();
        for cut in 0..=end {
            assert_eq!(parse_reply(&m[..cut], XID, MAC), None, "cut {cut}");
        }
    }

    #[test]
    fn hostile_replies_are_rejected() {
        let ok = reply([10, 0, 5, 50], &offer_opts());
        let reject = |m: &[u8], why: &str| assert_eq!(parse_reply(m, XID, MAC), None, "{why}");
        assert!(parse_reply(&ok, XID, MAC).is_some());
        assert_eq!(parse_reply(&ok, XID ^ 1, MAC), None, "other xid");
        assert_eq!(parse_reply(&ok, XID, [2; 6]), None, "other client");
        let mut m = ok.clone();
        m[0] = 1;
        reject(&m, "a request, not a reply");
        let mut m = ok.clone();
        m[236] = 0;
        reject(&m, "bad cookie");
        reject(&reply([10, 0, 5, 50], &[53, 1, 2, 255]), "no server id");
        reject(
            &reply([10, 0, 5, 50], &[54, 4, 10, 0, 5, 1, 255]),
            "no type",
        );
        reject(
            &reply([0; 4], &[53, 1, 2, 54, 4, 1, 1, 1, 1, 255]),
            "no address",
        );
        reject(
            &reply([224, 0, 0, 1], &[53, 1, 5, 54, 4, 1, 1, 1, 1, 255]),
            "multicast address",
        );
        reject(
            &reply(
                [10, 0, 5, 50],
                &[53, 1, 2, 54, 4, 1, 1, 1, 1, 1, 4, 255, 0, 255, 0, 255],
            ),
            "non-contiguous mask",
        );
        reject(
            &reply([10, 0, 5, 50], &[53, 1, 2, 54, 3, 1, 1, 1, 255]),
            "short server id",
        );
        reject(
            &reply(
                [10, 0, 5, 50],
                &[53, 1, 2, 54, 4, 1, 1, 1, 1, 3, 5, 1, 2, 3, 4, 5, 255],
            ),
            "router list not a multiple of 4",
        );
        reject(
            &reply(
                [10, 0, 5, 50],
                &[53, 1, 2, 54, 4, 1, 1, 1, 1, 51, 2, 0, 1, 255],
            ),
            "short lease",
        );
        reject(
            &reply([10, 0, 5, 50], &[53, 2, 2, 2, 54, 4, 1, 1, 1, 1, 255]),
            "two-byte message type",
        );
        reject(
            &reply([10, 0, 5, 50], &[53, 1, 3, 54, 4, 1, 1, 1, 1, 255]),
            "a REQUEST type from a server",
        );
        reject(
            &reply(
                [10, 0, 5, 50],
                &[53, 1, 2, 54, 4, 1, 1, 1, 1, 12, 200, 1, 2],
            ),
            "option length past the end",
        );
        // Every single-byte corruption of the options parses or is rejected, never panics.
        for i in 236..ok.len() {
            for v in [0u8, 1, 4, 0x7f, 0xff] {
                let mut m = ok.clone();
                m[i] = v;
                let _ = parse_reply(&m, XID, MAC);
            }
        }
    }
}
