//! `ip=dhcp`: leases the address with DHCPv4 (RFC 2131) before the scenario runs. DISCOVER until
//! an OFFER comes, then REQUEST the offered address from that server until its ACK; each step
//! retransmitted [`TRIES`] times with growing timeouts (2, 4, 4, 4 s, at most 14 s a step), and a
//! NAK ends it. Success prints `PROBE <scenario> dhcp ip=A.B.C.D/NN gw=A.B.C.D|none
//! server=A.B.C.D lease=S|none`; failure prints `PROBE <scenario> dhcp failed reason=.. tries=N`
//! and the scenario stops. The messages are built and parsed by `domus_probe::dhcp` (host-tested).
//!
//! Not done: no ARP probe of the leased address (no DHCPDECLINE), no renewal (the probe's runs are
//! shorter than any lease), no unicast replies (the BROADCAST flag asks the server to broadcast).

use super::{Ip, Stack, FRAME};
use crate::io::rdtsc;
use domus_probe::dhcp::{self, kind, Reply};
use domus_probe::ipv4::{self, Parsed};

/// Transmissions per step.
pub const TRIES: u32 = 4;

/// What the lease gave.
pub struct Lease {
    /// Address.
    pub ip: [u8; 4],
    /// Prefix length (32 when the server sent no mask).
    pub prefix: u8,
    /// Router.
    pub gw: Option<[u8; 4]>,
}

/// Runs DISCOVER/OFFER/REQUEST/ACK on `stack` (whose address is still 0.0.0.0); reports the
/// outcome as `PROBE <scenario> dhcp ...`.
pub fn lease(stack: &mut Stack, scenario: &str) -> Option<Lease> {
    let mac = stack.net.mac;
    let t0 = rdtsc();
    let xid = (t0 as u32) ^ u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]);
    let offer = match exchange(stack, t0, xid, None) {
        Ok((r, _)) => r,
        Err(tries) => return failed(scenario, "no-offer", tries),
    };
    let ack = match exchange(stack, t0, xid, Some(&offer)) {
        Ok((r, _)) if r.kind == kind::ACK && r.yiaddr == offer.yiaddr => r,
        Ok((r, n)) if r.kind == kind::ACK => return failed(scenario, "ack-for-other-address", n),
        Ok((_, n)) => return failed(scenario, "nak", n),
        Err(tries) => return failed(scenario, "no-ack", tries),
    };
    let l = Lease {
        ip: ack.yiaddr,
        prefix: ack.prefix.or(offer.prefix).unwrap_or(32),
        gw: ack.router.or(offer.router),
    };
    struct Opt<T>(Option<T>);
    impl<T: core::fmt::Display> core::fmt::Display for Opt<T> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match &self.0 {
                Some(v) => v.fmt(f),
                None => f.write_str("none"),
            }
        }
    }
    crate::report!(
        "{scenario} dhcp ip={}/{} gw={} server={} lease={}",
        Ip(l.ip),
        l.prefix,
        Opt(l.gw.map(Ip)),
        Ip(ack.server),
        Opt(ack.lease)
    );
    Some(l)
}

fn failed(scenario: &str, reason: &str, tries: u32) -> Option<Lease> {
    crate::report!("{scenario} dhcp failed reason={reason} tries={tries}");
    None
}

/// Sends DISCOVER (or REQUEST for `offer`) until a matching reply (OFFER, or ACK/NAK) arrives:
/// it and the transmissions it took; `Err(tries)` after [`TRIES`] unanswered transmissions.
fn exchange(
    stack: &mut Stack,
    t0: u64,
    xid: u32,
    offer: Option<&Reply>,
) -> Result<(Reply, u32), u32> {
    let hz = stack.clock.hz;
    let mac = stack.net.mac;
    for attempt in 0..TRIES {
        let secs = u16::try_from(rdtsc().wrapping_sub(t0) / hz).unwrap_or(u16::MAX);
        stack.net.tx.send(|b| {
            let cap = FRAME.min(b.len());
            let b = &mut b[..cap];
            match offer {
                None => dhcp::build_discover(b, mac, xid, secs),
                Some(o) => dhcp::build_request(b, mac, xid, secs, o.yiaddr, o.server),
            }
        });
        stack.net.flush();
        let wait = if attempt == 0 { 2 } else { 4 };
        let deadline = rdtsc().wrapping_add(wait * hz);
        while rdtsc() < deadline {
            let Some(r) = receive(stack, xid) else {
                continue;
            };
            let wanted = match offer {
                None => r.kind == kind::OFFER,
                // Only the chosen server's answer counts (others see the REQUEST as a decline).
                Some(o) => (r.kind == kind::ACK || r.kind == kind::NAK) && r.server == o.server,
            };
            if wanted {
                return Ok((r, attempt + 1));
            }
        }
    }
    Err(TRIES)
}

/// The next DHCP reply for `xid` among the frames received; `None` when none is waiting.
fn receive(stack: &mut Stack, xid: u32) -> Option<Reply> {
    let mut frame = [0u8; FRAME];
    loop {
        let Some(n) = stack.net.recv(&mut frame) else {
            stack.net.flush();
            return None;
        };
        if let Parsed::Udp {
            sport: dhcp::SERVER_PORT,
            dport: dhcp::CLIENT_PORT,
            data,
            ..
        } = ipv4::parse(&frame[..n])
        {
            if let Some(r) = dhcp::parse_reply(data, xid, stack.net.mac) {
                return Some(r);
            }
        }
    }
}
