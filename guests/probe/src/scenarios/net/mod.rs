//! The network scenarios: a CPL3 virtio-net driver (`virtio/net.rs`) under the probe's own small
//! IPv4 stack ([`Stack`] here, frames parsed and built by `domus_probe::ipv4`): ARP, ICMP echo and
//! UDP, no allocator. Common arguments: `nic=K` picks the K-th NIC (default 0), `ip=A.B.C.D/NN` and
//! `gw=A.B.C.D`, or `ip=dhcp` to lease them with DHCPv4 first (`dhcp.rs`).
//!
//! - `net-echo`: answers ARP, ICMP echo and UDP echo on port 7 until the power button
//!   (`echo.rs`).
//! - `net-ping target=A.B.C.D [count=N]`: ICMP echo round trips (`ping.rs`).
//! - `net-tx target=A.B.C.D:PORT bytes=N [size=S]`, `net-rx port=P bytes=N`: UDP streams for
//!   benchmarks (`stream.rs`).
//! - `net-hostile`: a misbehaving driver (`hostile.rs`).
//!
//! Before its own line every scenario prints `PROBE net link mac=.. mtu=.. features=.. ctrl=..
//! tsc_hz=..`: what the NIC's configuration space and the negotiation gave, how the device answered
//! the control command that turns promiscuous mode off (`ok`, `refused`, `none` without a control
//! queue), and the calibrated TSC rate.

mod dhcp;
mod echo;
mod hostile;
mod ping;
mod stream;

pub use echo::SCENARIO as ECHO;
pub use hostile::SCENARIO as HOSTILE;
pub use ping::SCENARIO as PING;
pub use stream::{RX, TX};

use crate::cmdline::Args;
use crate::io::rdtsc;
use crate::virtio::net::{f, Net, DEVICE_NET};
use crate::Machine;
use domus_probe::inet;
use domus_probe::ipv4::{self, Parsed, Route};

/// What every network scenario asks of the NIC.
pub const WANTED: u64 = f::CSUM
    | f::GUEST_CSUM
    | f::MTU
    | f::MAC
    | f::MRG_RXBUF
    | f::STATUS
    | f::CTRL_VQ
    | f::CTRL_RX
    | f::HOST_USO;

/// Largest frame the stack handles (MTU 1500 plus Ethernet header; larger MTUs are cut to this).
pub const FRAME: usize = 1514;
/// ARP cache entries.
const ARP_SLOTS: usize = 8;

/// A TSC clock.
#[derive(Clone, Copy)]
pub struct Clock {
    /// TSC ticks per second.
    pub hz: u64,
}

impl Clock {
    /// Calibrated against the ACPI PM timer (50 ms).
    pub fn new(machine: &Machine) -> Self {
        Self {
            hz: super::blk::tsc_hz(machine).max(1_000_000),
        }
    }

    /// Microseconds in `cycles` ticks.
    pub fn us(&self, cycles: u64) -> u64 {
        (u128::from(cycles) * 1_000_000 / u128::from(self.hz)) as u64
    }
}

/// What [`Stack::poll`] hands to the scenario (ARP and echo requests are answered inside).
pub enum Event {
    /// A UDP datagram for us; its payload is [`Stack::payload`].
    Udp {
        /// Source address.
        src: [u8; 4],
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Payload length.
        len: usize,
    },
    /// A run of UDP datagrams for us that arrived as one segmentation offload frame (only with
    /// GUEST_USO4, which only the streaming scenarios ask for): counted, its payload not kept.
    UdpRun {
        /// Destination port.
        dport: u16,
        /// Payload bytes of all the datagrams.
        len: usize,
        /// Datagrams (payload bytes per datagram: the frame's `gso_size`).
        datagrams: u64,
    },
    /// An ICMP echo reply.
    EchoReply {
        /// Identifier.
        id: u16,
        /// Sequence number.
        seq: u16,
    },
}

/// The NIC with an address.
pub struct Stack {
    /// The driver.
    pub net: Net,
    /// Our address.
    pub ip: [u8; 4],
    prefix: u8,
    gw: Option<[u8; 4]>,
    arp: [([u8; 4], [u8; 6]); ARP_SLOTS],
    arp_next: usize,
    last_arp_request: u64,
    ident: u16,
    /// Clock.
    pub clock: Clock,
    frame: [u8; FRAME],
    payload: (usize, usize),
}

impl Stack {
    /// The next event, after answering what needs no scenario; `None` when nothing arrived.
    pub fn poll(&mut self) -> Option<Event> {
        loop {
            let mut frame = [0u8; FRAME];
            let Some(got) = self.net.recv_frame(&mut frame) else {
                self.net.flush();
                return None;
            };
            if got.len > got.copied {
                match ipv4::udp_head(&frame[..got.copied], got.len) {
                    Some(h) if h.dst == self.ip && got.gso > 0 => {
                        self.net.flush_batched();
                        return Some(Event::UdpRun {
                            dport: h.dport,
                            len: h.payload,
                            datagrams: h.payload.div_ceil(usize::from(got.gso)) as u64,
                        });
                    }
                    _ => continue,
                }
            }
            let n = got.copied;
            self.frame = frame;
            if let Some(ev) = self.handle(n) {
                self.net.flush_batched();
                return Some(ev);
            }
        }
    }

    /// The payload of the last [`Event::Udp`].
    pub fn payload(&self) -> &[u8] {
        &self.frame[self.payload.0..self.payload.0 + self.payload.1]
    }

    fn handle(&mut self, n: usize) -> Option<Event> {
        let frame = self.frame;
        match ipv4::parse(&frame[..n]) {
            Parsed::ArpRequest { sha, spa, tpa } => {
                self.learn(spa, sha);
                if tpa == self.ip {
                    let (mac, ip) = (self.net.mac, self.ip);
                    self.net
                        .tx
                        .send(|b| ipv4::build_arp(b, 2, mac, ip, sha, spa));
                }
                None
            }
            Parsed::ArpReply { sha, spa } => {
                self.learn(spa, sha);
                None
            }
            Parsed::EchoRequest {
                mac,
                src,
                dst,
                id,
                seq,
                data,
            } if dst == self.ip => {
                let r = Route {
                    src_mac: self.net.mac,
                    dst_mac: mac,
                    src: self.ip,
                    dst: src,
                };
                let ident = self.next_ident();
                self.net
                    .tx
                    .send(|b| ipv4::build_echo(b, &r, true, id, seq, data, ident));
                None
            }
            Parsed::EchoReply { id, seq, .. } => Some(Event::EchoReply { id, seq }),
            Parsed::Udp {
                src,
                dst,
                sport,
                dport,
                data,
                ..
            } if dst == self.ip => {
                let at = data.as_ptr() as usize - frame.as_ptr() as usize;
                self.payload = (at, data.len());
                Some(Event::Udp {
                    src,
                    sport,
                    dport,
                    len: data.len(),
                })
            }
            _ => None,
        }
    }

    fn learn(&mut self, ip: [u8; 4], mac: [u8; 6]) {
        if let Some(e) = self.arp.iter_mut().find(|e| e.0 == ip) {
            e.1 = mac;
            return;
        }
        self.arp[self.arp_next] = (ip, mac);
        self.arp_next = (self.arp_next + 1) % ARP_SLOTS;
    }

    fn next_ident(&mut self) -> u16 {
        self.ident = self.ident.wrapping_add(1);
        self.ident
    }

    /// The next hop's MAC for `dst`; when unknown, asks (at most every 100 ms) and returns `None`.
    pub fn resolve(&mut self, dst: [u8; 4]) -> Option<[u8; 6]> {
        let hop = match self.gw {
            Some(g) if !ipv4::same_subnet(dst, self.ip, self.prefix) => g,
            _ => dst,
        };
        if let Some(e) = self.arp.iter().find(|e| e.0 == hop && e.0 != [0; 4]) {
            return Some(e.1);
        }
        let now = rdtsc();
        if now.wrapping_sub(self.last_arp_request) > self.clock.hz / 10 {
            self.last_arp_request = now;
            let (mac, ip) = (self.net.mac, self.ip);
            self.net
                .tx
                .send(|b| ipv4::build_arp(b, 1, mac, ip, [0; 6], hop));
            self.net.flush();
        }
        None
    }

    fn route(&mut self, dst: [u8; 4]) -> Option<Route> {
        let dst_mac = self.resolve(dst)?;
        Some(Route {
            src_mac: self.net.mac,
            dst_mac,
            src: self.ip,
            dst,
        })
    }

    /// Queues a UDP datagram (checksum left to the device when it offers CSUM); `false` while the
    /// next hop is being resolved or the payload is too large.
    pub fn send_udp(&mut self, dst: [u8; 4], sport: u16, dport: u16, data: &[u8]) -> bool {
        let Some(r) = self.route(dst) else {
            return false;
        };
        let ident = self.next_ident();
        let offload = self.net.features & f::CSUM != 0;
        self.net.tx.send(|b| {
            let cap = FRAME.min(b.len());
            ipv4::build_udp(&mut b[..cap], &r, sport, dport, data, ident, offload)
        })
    }

    /// Queues `segs` UDP datagrams of `seg` payload bytes each (the last may be shorter, `total`
    /// bytes in all) as one segmentation offload frame (HOST_USO, see `virtio/net.rs`); the payload
    /// bytes are whatever the large buffer holds. `false` without HOST_USO, while the next hop is
    /// being resolved, or when `total` is larger than one frame holds.
    pub fn send_udp_large(
        &mut self,
        dst: [u8; 4],
        sport: u16,
        dport: u16,
        total: usize,
        seg: u16,
    ) -> bool {
        if !self.net.tx.can_segment() {
            return false;
        }
        let Some(r) = self.route(dst) else {
            return false;
        };
        let ident = self.next_ident();
        self.net.tx.send_large(seg, |b| {
            ipv4::udp_headers(b, &r, sport, dport, total, ident)
        })
    }

    /// Queues an ICMP echo request; `false` while the next hop is being resolved.
    pub fn send_ping(&mut self, dst: [u8; 4], id: u16, seq: u16, data: &[u8]) -> bool {
        let Some(r) = self.route(dst) else {
            return false;
        };
        let ident = self.next_ident();
        self.net
            .tx
            .send(|b| ipv4::build_echo(b, &r, false, id, seq, data, ident))
    }

    /// Kicks the queues.
    pub fn flush(&mut self) {
        self.net.flush();
    }
}

/// Brings NIC `nic=` up with `ip=`/`gw=`; reports the failure as `PROBE error <scenario> ...`.
pub fn setup(machine: &Machine, args: &Args<'_>, scenario: &str) -> Option<Stack> {
    setup_with(machine, args, scenario, WANTED)
}

/// [`setup`] asking for the features `wanted` (∩ offered).
pub fn setup_with(
    machine: &Machine,
    args: &Args<'_>,
    scenario: &str,
    wanted: u64,
) -> Option<Stack> {
    let nic = match args.get_u64("nic", 0) {
        Ok(n) => n as usize,
        Err(v) => {
            crate::report!("error {scenario} reason=bad-nic value={v}");
            return None;
        }
    };
    let ip = args.get("ip").unwrap_or("");
    let use_dhcp = ip == "dhcp";
    let cidr = match inet::parse_cidr(ip) {
        Some(c) => c,
        // The address comes from the lease below.
        None if use_dhcp => inet::Cidr {
            addr: [0; 4],
            prefix: 32,
        },
        None => {
            crate::report!("error {scenario} reason=bad-ip value={ip}");
            return None;
        }
    };
    let gw = match args.get("gw").map(|g| (g, inet::parse_ipv4(g))) {
        None => None,
        Some((_, Some(a))) => Some(a),
        Some((g, None)) => {
            crate::report!("error {scenario} reason=bad-gw value={g}");
            return None;
        }
    };
    let devices = crate::virtio::discover(machine.acpi.as_ref());
    let Some(t) = devices.nth_of_type(DEVICE_NET, nic) else {
        crate::report!("error {scenario} reason=no-nic nic={nic}");
        return None;
    };
    let mut netdev = match Net::init(t, wanted) {
        Ok(n) => n,
        Err(e) => {
            crate::report!("error {scenario} reason={e} addr={:#x}", t.base);
            return None;
        }
    };
    // Receive only our own address and broadcast from now on (the device filters; VIRTIO_NET_CTRL_RX
    // PROMISC off), when the device has a control queue.
    let promisc_off = match netdev.control(0, 0, &[0]) {
        Some(0) => "ok",
        Some(_) => "refused",
        None => "none",
    };
    let clock = Clock::new(machine);
    let mut mac = [0u8; 17];
    inet::format_mac(netdev.mac, &mut mac);
    crate::report!(
        "net link mac={} mtu={} features={:#x} ctrl={promisc_off} tsc_hz={}",
        core::str::from_utf8(&mac).unwrap_or("?"),
        netdev.mtu,
        netdev.features,
        clock.hz
    );
    let mut stack = Stack {
        net: netdev,
        ip: cidr.addr,
        prefix: cidr.prefix,
        gw,
        arp: [([0; 4], [0; 6]); ARP_SLOTS],
        arp_next: 0,
        last_arp_request: 0,
        ident: 0,
        clock,
        frame: [0; FRAME],
        payload: (0, 0),
    };
    if use_dhcp {
        let lease = dhcp::lease(&mut stack, scenario)?;
        stack.ip = lease.ip;
        stack.prefix = lease.prefix;
        // An explicit gw= wins over the lease's router.
        stack.gw = stack.gw.or(lease.gw);
    }
    Some(stack)
}

impl Stack {
    /// The default gateway, if any.
    pub fn gw(&self) -> Option<[u8; 4]> {
        self.gw
    }
}

/// The NIC's frame counters.
pub fn counters(stack: &Stack) -> (u64, u64) {
    (stack.net.rx.frames, stack.net.tx.frames)
}

/// An IPv4 address as text.
pub struct Ip(pub [u8; 4]);

impl core::fmt::Display for Ip {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "{a}.{b}.{c}.{d}")
    }
}
