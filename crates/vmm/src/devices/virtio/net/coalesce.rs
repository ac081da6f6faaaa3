//! Receive-side UDP coalescing: consecutive datagrams of one IPv4 UDP flow that the TAP already
//! has queued go to the guest as ONE UDP segmentation offload frame, as the host's own UDP GRO
//! forwarding would build it, when the driver accepts such frames (GUEST_CSUM and GUEST_USO4).
//!
//! The receive path ([`super::rx`]) reads a frame; if it is a [`Flow`] candidate it reads the
//! next frames one by one (their 54 bytes of headers into a scratch buffer, their payloads
//! straight into the guest's buffers after the previous payload) for as long as they match and
//! the TAP has them: it never waits for a partner. A frame that does not match is delivered as
//! its own frame, next and in order. Nothing stays in the device between read passes except
//! (when the driver posted no buffers for it) that one frame, which is then like a frame still
//! queued in the TAP: outside the guest's rings and outside any saved state.
//!
//! A frame is a candidate when its vnet header has no GSO type and either NEEDS_CSUM (at the UDP
//! checksum: `csum_start` 34, `csum_offset` 6), DATA_VALID, or no flag with a zero UDP checksum
//! (IPv4's "no checksum") — a frame whose checksum the guest must verify is delivered alone —
//! and it is Ethernet (no VLAN tag) / IPv4 with a 20-byte header and a valid header checksum,
//! not a fragment (MF clear, offset 0), UDP, with lengths that match the frame exactly and a
//! non-empty payload. The next frame joins when it is a candidate with the same Ethernet header,
//! TOS, DF bit, TTL, protocol, addresses and ports (the IP identification is not kept: the guest's
//! segmentation numbers the datagrams from the first one's), and a payload no larger than the
//! first one's; a smaller payload joins and ends the run. A run also ends at [`MAX_SEGMENTS`]
//! datagrams, at 65 535 bytes of IP total length, and where the guest's gathered buffers end.
//! IPv6 (GUEST_USO6) is not coalesced.
//!
//! What a Linux guest sees (virtio 1.2 §5.1.6.4, drivers/net/virtio_net.c → virtio_net_hdr_to_skb
//! in include/linux/virtio_net.h): a frame with `flags` NEEDS_CSUM, `gso_type`
//! VIRTIO_NET_HDR_GSO_UDP_L4, `hdr_len` 42 (Ethernet + IPv4 + UDP), `gso_size` the first
//! datagram's payload bytes, `csum_start` 34 and `csum_offset` 6; the IPv4 total length and header
//! checksum and the UDP length are the whole run's, and the UDP checksum field holds the
//! pseudo-header sum (addresses, protocol, UDP length; not complemented) that NEEDS_CSUM asks the
//! receiver to complete — the shape the kernel's TAP hands over for a UDP_SEGMENT sender. Linux
//! takes it as a CHECKSUM_PARTIAL SKB_GSO_UDP_L4 packet: recent kernels refuse a UDP_L4 GSO frame
//! without NEEDS_CSUM or with a `csum_offset` other than the UDP checksum's, and one of more than
//! `gso_size` × UDP_MAX_SEGMENTS (64) bytes of payload, which is why runs stop at 64 datagrams. A
//! UDP_GRO socket gets the run whole, any other socket gets the datagrams again, cut by the
//! guest's stack with their checksums completed.
//!
//! `DOMUS_NET_RX_COALESCE=0` in the VMM's environment turns it off.

use super::HDR_LEN;

/// Bytes of headers a candidate has: vnet header, Ethernet, IPv4 (20), UDP.
pub const HEAD: usize = HDR_LEN + ETH + IP + UDP;
/// Most datagrams in one coalesced frame (Linux's UDP_MAX_SEGMENTS in older kernels).
pub const MAX_SEGMENTS: u16 = 64;

const ETH: usize = 14;
const IP: usize = 20;
const UDP: usize = 8;
/// Offsets in the head.
const ETH_AT: usize = HDR_LEN;
const IP_AT: usize = ETH_AT + ETH;
const UDP_AT: usize = IP_AT + IP;
const NEEDS_CSUM: u8 = 1;
const DATA_VALID: u8 = 2;
const GSO_UDP_L4: u8 = 5;
/// `csum_start` of a UDP checksum behind a 20-byte IPv4 header, and its `csum_offset`.
const CSUM_START: u16 = 34;
/// `hdr_len`: Ethernet, IPv4 and UDP headers.
const HDR_LEN_FIELD: u16 = 42;
const _: () = assert!(CSUM_START as usize == ETH + IP && HDR_LEN_FIELD as usize == ETH + IP + UDP);
const CSUM_OFFSET: u16 = 6;

/// Whether coalescing is on: `DOMUS_NET_RX_COALESCE` (0: off), else on.
pub fn enabled_from_env() -> bool {
    std::env::var("DOMUS_NET_RX_COALESCE").map_or(true, |v| v.trim() != "0")
}

fn be16(h: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([h[at], h[at + 1]])
}

fn le16(h: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([h[at], h[at + 1]])
}

/// The ones' complement sum of `data` (16-bit big-endian words), folded, not complemented.
fn sum16(data: &[u8], mut acc: u32) -> u16 {
    for w in data.chunks(2) {
        let hi = u32::from(w[0]) << 8;
        acc += hi | w.get(1).map_or(0, |&b| u32::from(b));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    u16::try_from(acc).unwrap_or(u16::MAX)
}

/// A length known to fit 16 bits (runs stop at 65 535 bytes).
fn len16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// The UDP payload bytes of `head` (a frame of `len` bytes, vnet header included) if it is a
/// coalescing candidate (see the module docs).
pub fn candidate(head: &[u8; HEAD], len: usize) -> Option<usize> {
    if len <= HEAD || head[1] != 0 {
        return None;
    }
    let udp_check = be16(head, UDP_AT + 6);
    let csum_ok = match head[0] {
        NEEDS_CSUM => le16(head, 6) == CSUM_START && le16(head, 8) == CSUM_OFFSET,
        DATA_VALID => true,
        0 => udp_check == 0,
        _ => false,
    };
    let ip = &head[IP_AT..UDP_AT];
    let total = usize::from(be16(ip, 2));
    let ok = csum_ok
        && be16(head, ETH_AT + 12) == 0x0800
        && ip[0] == 0x45
        && be16(ip, 6) & 0x3fff == 0
        && ip[9] == 17
        && total == len - HDR_LEN - ETH
        && usize::from(be16(head, UDP_AT + 4)) == total - IP
        && sum16(ip, 0) == 0xffff;
    ok.then_some(len - HEAD)
}

/// Whether `a` and `b` are of one flow: Ethernet header, version/IHL, TOS, flags and fragment
/// offset, TTL, protocol, addresses and ports equal.
fn same_flow(a: &[u8; HEAD], b: &[u8; HEAD]) -> bool {
    a[ETH_AT..IP_AT + 2] == b[ETH_AT..IP_AT + 2]
        && a[IP_AT + 6..IP_AT + 10] == b[IP_AT + 6..IP_AT + 10]
        && a[IP_AT + 12..UDP_AT + 4] == b[IP_AT + 12..UDP_AT + 4]
}

/// A run of datagrams being coalesced: the first one's headers and what joined so far.
#[derive(Debug, Clone)]
pub struct Flow {
    head: [u8; HEAD],
    seg: usize,
    segs: u16,
    payload: usize,
    ended: bool,
}

/// What to do with the next frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// It joins the run (its payload goes after the previous one).
    Yes,
    /// It does not: deliver it as its own frame.
    No,
}

impl Flow {
    /// A run starting with the candidate `head` of a `len`-byte frame (vnet header included).
    pub fn start(head: &[u8; HEAD], len: usize) -> Option<Self> {
        let seg = candidate(head, len)?;
        Some(Self {
            head: *head,
            seg,
            segs: 1,
            payload: seg,
            ended: false,
        })
    }

    /// Whether the next frame (`head`, `len` bytes with its vnet header) joins, given `room`
    /// bytes left in the guest's buffers after the run; counts it if it does.
    pub fn offer(&mut self, head: &[u8; HEAD], len: usize, room: usize) -> Join {
        if self.ended || self.segs >= MAX_SEGMENTS {
            return Join::No;
        }
        let Some(p) = candidate(head, len) else {
            return Join::No;
        };
        if p > self.seg || p > room || IP + UDP + self.payload + p > 65_535 {
            return Join::No;
        }
        if !same_flow(&self.head, head) {
            return Join::No;
        }
        self.segs += 1;
        self.payload += p;
        self.ended = p < self.seg;
        Join::Yes
    }

    /// Whether nothing more can join (a short datagram ended it, or a limit).
    pub fn ended(&self) -> bool {
        self.ended || self.segs >= MAX_SEGMENTS
    }

    /// Whether another full datagram could join with `room` bytes left in the guest's buffers:
    /// if not, the run ends without reading the next frame (which would only have to be moved
    /// into a frame of its own).
    pub fn has_room(&self, room: usize) -> bool {
        !self.ended() && self.seg <= room && IP + UDP + self.payload + self.seg <= 65_535
    }

    /// Datagrams in the run.
    pub fn segments(&self) -> u16 {
        self.segs
    }

    /// Length of the run's frame, vnet header included.
    pub fn frame_len(&self) -> usize {
        HDR_LEN + ETH + IP + UDP + self.payload
    }

    /// The headers of the coalesced frame (only meaningful for two datagrams or more): vnet
    /// header for UDP segmentation with NEEDS_CSUM, the run's IPv4 total length and header
    /// checksum, its UDP length and pseudo-header sum. `num_buffers` is left as it was.
    pub fn head(&self) -> [u8; HEAD] {
        let mut h = self.head;
        let udp_len = UDP + self.payload;
        let total = IP + udp_len;
        h[0] = NEEDS_CSUM;
        h[1] = GSO_UDP_L4;
        h[2..4].copy_from_slice(&HDR_LEN_FIELD.to_le_bytes());
        h[4..6].copy_from_slice(&len16(self.seg).to_le_bytes());
        h[6..8].copy_from_slice(&CSUM_START.to_le_bytes());
        h[8..10].copy_from_slice(&CSUM_OFFSET.to_le_bytes());
        h[IP_AT + 2..IP_AT + 4].copy_from_slice(&len16(total).to_be_bytes());
        h[IP_AT + 10..IP_AT + 12].fill(0);
        let ip_sum = !sum16(&h[IP_AT..UDP_AT], 0);
        h[IP_AT + 10..IP_AT + 12].copy_from_slice(&ip_sum.to_be_bytes());
        h[UDP_AT + 4..UDP_AT + 6].copy_from_slice(&len16(udp_len).to_be_bytes());
        let pseudo = sum16(&h[IP_AT + 12..IP_AT + 20], 17 + u32::from(len16(udp_len)));
        h[UDP_AT + 6..UDP_AT + 8].copy_from_slice(&pseudo.to_be_bytes());
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A candidate head: vnet `flags`, UDP 10.0.0.1:4000 -> 10.0.0.2:5001, `payload` bytes.
    fn head(flags: u8, payload: usize) -> [u8; HEAD] {
        let mut h = [0u8; HEAD];
        h[0] = flags;
        if flags == NEEDS_CSUM {
            h[6..8].copy_from_slice(&34u16.to_le_bytes());
            h[8..10].copy_from_slice(&6u16.to_le_bytes());
        }
        h[ETH_AT..ETH_AT + 6].copy_from_slice(&[0x00, 0x16, 0x3e, 0, 0, 1]);
        h[ETH_AT + 6..ETH_AT + 12].copy_from_slice(&[0x02, 0, 0, 0, 0, 9]);
        h[ETH_AT + 12..ETH_AT + 14].copy_from_slice(&[0x08, 0x00]);
        let ip = IP_AT;
        h[ip] = 0x45;
        h[ip + 2..ip + 4].copy_from_slice(&len16(28 + payload).to_be_bytes());
        h[ip + 4..ip + 6].copy_from_slice(&0x1234u16.to_be_bytes());
        h[ip + 6] = 0x40;
        h[ip + 8] = 64;
        h[ip + 9] = 17;
        h[ip + 12..ip + 16].copy_from_slice(&[10, 0, 0, 1]);
        h[ip + 16..ip + 20].copy_from_slice(&[10, 0, 0, 2]);
        fix_ip(&mut h);
        h[UDP_AT..UDP_AT + 2].copy_from_slice(&4000u16.to_be_bytes());
        h[UDP_AT + 2..UDP_AT + 4].copy_from_slice(&5001u16.to_be_bytes());
        h[UDP_AT + 4..UDP_AT + 6].copy_from_slice(&len16(8 + payload).to_be_bytes());
        if flags != 0 {
            h[UDP_AT + 6..UDP_AT + 8].copy_from_slice(&0xbeefu16.to_be_bytes());
        }
        h
    }

    fn fix_ip(h: &mut [u8; HEAD]) {
        h[IP_AT + 10..IP_AT + 12].fill(0);
        let s = !sum16(&h[IP_AT..UDP_AT], 0);
        h[IP_AT + 10..IP_AT + 12].copy_from_slice(&s.to_be_bytes());
    }

    fn len(payload: usize) -> usize {
        HEAD + payload
    }

    #[test]
    fn candidates_need_a_checksum_the_guest_need_not_verify_and_plain_ipv4_udp() {
        assert_eq!(candidate(&head(NEEDS_CSUM, 1472), len(1472)), Some(1472));
        assert_eq!(candidate(&head(DATA_VALID, 100), len(100)), Some(100));
        assert_eq!(candidate(&head(0, 100), len(100)), Some(100), "no checksum");
        let mut h = head(0, 100);
        h[UDP_AT + 6] = 1;
        assert_eq!(candidate(&h, len(100)), None, "a checksum to verify");
        assert_eq!(candidate(&head(3, 100), len(100)), None, "unknown flags");
        let mut h = head(NEEDS_CSUM, 100);
        h[6] = 40;
        assert_eq!(candidate(&h, len(100)), None, "csum_start elsewhere");
        let mut h = head(NEEDS_CSUM, 100);
        h[1] = GSO_UDP_L4;
        assert_eq!(candidate(&h, len(100)), None, "already a GSO frame");
        assert_eq!(candidate(&head(2, 0), len(0)), None, "empty payload");
        assert_eq!(
            candidate(&head(2, 100), len(101)),
            None,
            "padding: lengths differ"
        );
        let mut h = head(2, 100);
        h[IP_AT + 9] = 6;
        fix_ip(&mut h);
        assert_eq!(candidate(&h, len(100)), None, "not UDP");
        let mut h = head(2, 100);
        h[IP_AT] = 0x46;
        fix_ip(&mut h);
        assert_eq!(candidate(&h, len(100)), None, "IP options");
        let mut h = head(2, 100);
        h[IP_AT + 6] = 0x20;
        fix_ip(&mut h);
        assert_eq!(candidate(&h, len(100)), None, "more fragments");
        let mut h = head(2, 100);
        h[IP_AT + 7] = 1;
        fix_ip(&mut h);
        assert_eq!(candidate(&h, len(100)), None, "fragment offset");
        let mut h = head(2, 100);
        h[IP_AT + 10] ^= 1;
        assert_eq!(candidate(&h, len(100)), None, "bad IP header checksum");
        let mut h = head(2, 100);
        h[ETH_AT + 12..ETH_AT + 14].copy_from_slice(&[0x81, 0x00]);
        assert_eq!(candidate(&h, len(100)), None, "VLAN tag");
        let mut h = head(2, 100);
        h[UDP_AT + 5] ^= 1;
        assert_eq!(candidate(&h, len(100)), None, "UDP length");
    }

    #[test]
    fn a_run_rewrites_lengths_checksums_and_the_gso_fields() {
        let first = head(NEEDS_CSUM, 1472);
        let mut f = Flow::start(&first, len(1472)).unwrap();
        assert_eq!(f.offer(&head(DATA_VALID, 1472), len(1472), 1472), Join::Yes);
        assert!(!f.ended());
        assert_eq!(
            f.offer(&head(NEEDS_CSUM, 600), len(600), 1 << 20),
            Join::Yes
        );
        assert!(f.ended(), "a short datagram ends the run");
        assert_eq!(f.offer(&head(NEEDS_CSUM, 600), len(600), 1 << 20), Join::No);
        assert_eq!(f.segments(), 3);
        let payload = 1472 * 2 + 600;
        assert_eq!(f.frame_len(), HEAD + payload);
        let h = f.head();
        assert_eq!(h[0], NEEDS_CSUM);
        assert_eq!(h[1], GSO_UDP_L4);
        assert_eq!(le16(&h, 2), 42, "hdr_len");
        assert_eq!(le16(&h, 4), 1472, "gso_size");
        assert_eq!((le16(&h, 6), le16(&h, 8)), (34, 6));
        assert_eq!(usize::from(be16(&h, IP_AT + 2)), 28 + payload);
        assert_eq!(sum16(&h[IP_AT..UDP_AT], 0), 0xffff, "IP header checksum");
        assert_eq!(usize::from(be16(&h, UDP_AT + 4)), 8 + payload);
        // Pseudo-header: 10.0.0.1 + 10.0.0.2 + 17 + UDP length, folded.
        let want = 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 17 + 8 + u32::try_from(payload).unwrap();
        assert_eq!(u32::from(be16(&h, UDP_AT + 6)), want);
        // Everything else is the first datagram's, num_buffers included.
        assert_eq!(h[ETH_AT..IP_AT + 2], first[ETH_AT..IP_AT + 2]);
        assert_eq!(h[IP_AT + 4..IP_AT + 10], first[IP_AT + 4..IP_AT + 10]);
        assert_eq!(h[IP_AT + 12..UDP_AT + 4], first[IP_AT + 12..UDP_AT + 4]);
        assert_eq!(h[10..12], first[10..12]);
    }

    #[test]
    fn a_pseudo_header_sum_that_carries_is_folded() {
        let mut first = head(DATA_VALID, 1000);
        first[IP_AT + 12..IP_AT + 20]
            .copy_from_slice(&[0xff, 0xff, 0xff, 0xf0, 0xff, 0xff, 0xff, 0xf0]);
        fix_ip(&mut first);
        let mut next = first;
        next[0] = NEEDS_CSUM;
        next[6..8].copy_from_slice(&34u16.to_le_bytes());
        next[8..10].copy_from_slice(&6u16.to_le_bytes());
        let mut f = Flow::start(&first, len(1000)).unwrap();
        assert_eq!(f.offer(&next, len(1000), 5000), Join::Yes);
        let h = f.head();
        let mut acc: u32 = 0xffff + 0xfff0 + 0xffff + 0xfff0 + 17 + 2008;
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        assert_eq!(u32::from(be16(&h, UDP_AT + 6)), acc);
    }

    #[test]
    fn each_kind_of_mismatch_ends_the_run() {
        let base = head(NEEDS_CSUM, 1000);
        let start = || Flow::start(&base, len(1000)).unwrap();
        let changed = |at: usize, v: u8| {
            let mut h = base;
            h[at] = v;
            fix_ip(&mut h);
            h
        };
        let cases: [(&str, [u8; HEAD]); 9] = [
            ("other port", changed(UDP_AT + 3, 0x8a)),
            ("other source port", changed(UDP_AT + 1, 1)),
            ("other address", changed(IP_AT + 15, 7)),
            ("other TTL", changed(IP_AT + 8, 63)),
            ("other TOS", changed(IP_AT + 1, 0x10)),
            ("DF differs", changed(IP_AT + 6, 0)),
            ("other MAC", changed(ETH_AT + 11, 7)),
            ("fragment", changed(IP_AT + 6, 0x60)),
            ("not UDP", changed(IP_AT + 9, 6)),
        ];
        for (what, h) in cases {
            assert_eq!(start().offer(&h, len(1000), 1 << 20), Join::No, "{what}");
        }
        assert_eq!(
            start().offer(&head(NEEDS_CSUM, 1001), len(1001), 1 << 20),
            Join::No,
            "bigger datagram after a smaller"
        );
        let mut h = head(0, 1000);
        h[UDP_AT + 6] = 9;
        assert_eq!(
            start().offer(&h, len(1000), 1 << 20),
            Join::No,
            "DATA_VALID missing"
        );
        assert_eq!(
            start().offer(&base, len(1000), 999),
            Join::No,
            "no room in the guest's buffers"
        );
        // The IP identification differs between datagrams: they still join.
        assert_eq!(
            start().offer(&changed(IP_AT + 5, 9), len(1000), 1 << 20),
            Join::Yes
        );
    }

    #[test]
    fn runs_stop_at_64_kib_and_at_64_datagrams() {
        let big = head(DATA_VALID, 1472);
        let mut f = Flow::start(&big, len(1472)).unwrap();
        let mut joined = 1;
        while f.offer(&big, len(1472), 1 << 20) == Join::Yes {
            joined += 1;
        }
        assert_eq!(joined, 44, "44 × 1472 + 28 fits 65 535, 45 would not");
        assert!(!f.has_room(1 << 20), "a 45th is not even read");
        let g = Flow::start(&big, len(1472)).unwrap();
        assert!(g.has_room(1472));
        assert!(!g.has_room(1471), "no room in the guest's buffers");
        assert!(28 + f.frame_len() - HEAD <= 65_535);
        let small = head(DATA_VALID, 100);
        let mut f = Flow::start(&small, len(100)).unwrap();
        while f.offer(&small, len(100), 1 << 20) == Join::Yes {}
        assert_eq!(f.segments(), MAX_SEGMENTS);
        assert!(f.ended());
    }
}
