//! UDP streams for the benchmarks.
//!
//! - `net-tx ip=.. target=A.B.C.D:PORT bytes=N [size=S]`: sends N bytes of S-byte datagrams
//!   (default: as large as the MTU allows without fragmentation) as fast as the NIC takes them.
//! - `net-rx ip=.. port=P bytes=N`: prints `PROBE net-rx ready port=P ip=A.B.C.D` once it
//!   listens, then counts datagrams until N bytes arrived (or 2 s pass with nothing after the
//!   first).
//!
//! Both end with `PROBE net-tx|net-rx bytes=<payload bytes> frames=<datagrams> cycles=<TSC>
//! tsc_hz=<f>` (timed from the first datagram to the last) and power off. Checksums are left to the
//! device when it offers CSUM/GUEST_CSUM (see `virtio/net.rs`): a payload a host socket received
//! intact proves the host completed it.

use super::{setup, Event};
use crate::cmdline::Args;
use crate::io::rdtsc;
use crate::scenarios::Scenario;
use crate::Machine;
use domus_probe::inet;

/// `net-tx`.
pub const TX: Scenario = Scenario {
    name: "net-tx",
    run: tx,
};
/// `net-rx`.
pub const RX: Scenario = Scenario {
    name: "net-rx",
    run: rx,
};

/// Local port of `net-tx`.
const TX_PORT: u16 = 40_000;
/// Most bytes one run moves.
const MAX_BYTES: u64 = 1 << 40;

fn tx(machine: &Machine, args: &Args<'_>) {
    let Some((dst, port)) = args.get("target").and_then(inet::parse_endpoint) else {
        return crate::report!(
            "error net-tx reason=bad-target value={}",
            args.get("target").unwrap_or("")
        );
    };
    let bytes = match args.get_u64("bytes", 1 << 20) {
        Ok(n) if n <= MAX_BYTES => n,
        _ => return crate::report!("error net-tx reason=bad-bytes"),
    };
    let Some(mut stack) = setup(machine, args, "net-tx") else {
        return;
    };
    let max = usize::from(stack.net.mtu).saturating_sub(28).min(1472);
    let size = match args.get_u64("size", max as u64) {
        Ok(s) if (1..=max as u64).contains(&s) => s as usize,
        _ => return crate::report!("error net-tx reason=bad-size max={max}"),
    };
    let mut payload = [0u8; 1472];
    for (i, x) in payload.iter_mut().enumerate() {
        *x = i as u8;
    }
    // Resolve the next hop first (up to 5 s).
    let deadline = rdtsc() + 5 * stack.clock.hz;
    while stack.resolve(dst).is_none() {
        while stack.poll().is_some() {}
        if rdtsc() > deadline {
            return crate::report!("error net-tx reason=no-arp-reply");
        }
    }
    let (mut sent, mut frames) = (0u64, 0u64);
    let t0 = rdtsc();
    while sent < bytes {
        let n = (bytes - sent).min(size as u64) as usize;
        if stack.send_udp(dst, TX_PORT, port, &payload[..n]) {
            sent += n as u64;
            frames += 1;
        }
        // Kick every 32 datagrams (and answer ARP meanwhile).
        if frames % 32 == 0 {
            while stack.poll().is_some() {}
            stack.flush();
        }
    }
    stack.flush();
    let cycles = rdtsc().wrapping_sub(t0);
    crate::report!(
        "net-tx bytes={sent} frames={frames} cycles={cycles} tsc_hz={}",
        stack.clock.hz
    );
}

fn rx(machine: &Machine, args: &Args<'_>) {
    let port = match args.get_u64("port", 5001) {
        Ok(p) if (1..=65535).contains(&p) => p as u16,
        _ => return crate::report!("error net-rx reason=bad-port"),
    };
    let bytes = match args.get_u64("bytes", 1 << 20) {
        Ok(n) if n <= MAX_BYTES => n,
        _ => return crate::report!("error net-rx reason=bad-bytes"),
    };
    let Some(mut stack) = setup(machine, args, "net-rx") else {
        return;
    };
    crate::report!("net-rx ready port={port} ip={}", super::Ip(stack.ip));
    let hz = stack.clock.hz;
    let (mut got, mut frames, mut first, mut last) = (0u64, 0u64, 0u64, 0u64);
    loop {
        while let Some(e) = stack.poll() {
            if let Event::Udp { dport, len, .. } = e {
                if dport == port {
                    last = rdtsc();
                    if frames == 0 {
                        first = last;
                    }
                    got += len as u64;
                    frames += 1;
                }
            }
        }
        if got >= bytes || (frames > 0 && rdtsc().wrapping_sub(last) > 2 * hz) {
            break;
        }
    }
    let cycles = last.wrapping_sub(first);
    crate::report!("net-rx bytes={got} frames={frames} cycles={cycles} tsc_hz={hz}");
}
