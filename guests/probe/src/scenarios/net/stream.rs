//! UDP streams for the benchmarks.
//!
//! - `net-tx ip=.. target=A.B.C.D:PORT bytes=N [size=S]`: sends N bytes of S-byte datagrams
//!   (default: as large as the MTU allows without fragmentation) as fast as the NIC takes them.
//! - `net-rx ip=.. port=P bytes=N [idle=hlt|spin]`: prints `PROBE net-rx ready port=P ip=A.B.C.D`
//!   once it listens, then counts datagrams until N bytes arrived (or 2 s pass with nothing after
//!   the first). With nothing to read it waits in `hlt` for the next tick of a fast timer (the
//!   default; the receive ring, up to 1024 buffers, holds far more than a tick's frames), or
//!   spins (`idle=spin`). A spinning vCPU takes a whole host CPU that the sender and the device
//!   need: on a two-CPU host waiting in `hlt` roughly doubled host -> guest rates in both VMMs.
//!
//! `net-tx` uses UDP segmentation offload when the device offers HOST_USO: up to 44 datagrams of
//! 1472 bytes per frame, cut by the host (the kernel refuses a segmentation frame of one datagram:
//! a remainder below two goes out alone); while every large buffer is with the device it waits in
//! `hlt` for a fast timer tick. `frames=` counts datagrams either way. `net-rx` also asks for
//! GUEST_USO4/6 (IPv6 frames are ignored), so such frames from another guest (through a bridge)
//! or from a host sender using UDP_SEGMENT can arrive whole.
//!
//! Both end with `PROBE net-tx|net-rx bytes=<payload bytes> frames=<datagrams> cycles=<TSC>
//! tsc_hz=<f>` (timed from the first datagram to the last) and power off; `net-rx` adds
//! `idle_rounds=` and `idle_cycles=`, the rounds that found nothing after the first datagram and
//! the TSC cycles they took (time the receiver waited, descheduled time included), and `runs=`, the
//! segmentation offload frames among them. With `digest=sha256` it then prints
//! `PROBE net-rx sha256=<hex>`, the SHA-256 of the payloads for its port in arrival order. Checksums are left to the
//! device when it offers CSUM/GUEST_CSUM (see `virtio/net.rs`): a payload a host socket received
//! intact proves the host completed it.

use super::{setup, setup_with, Event, WANTED};
use crate::apic::LocalApic;
use crate::cmdline::Args;
use crate::event_loop::BUSY_TIMER_COUNT;
use crate::io::rdtsc;
use crate::layout::VECTOR_TIMER;
use crate::scenarios::Scenario;
use crate::virtio::net::f;
use crate::Machine;
use domus_probe::inet;
use domus_probe::sha256::{Hex, Sha256};

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
/// Most UDP payload bytes one segmentation offload frame carries (IPv4's 64 KiB less headers).
const LARGE_PAYLOAD: usize = 65_535 - 20 - 8;
/// Most datagrams in one segmentation offload frame (Linux refuses more than its
/// UDP_MAX_SEGMENTS, 64 in older kernels).
const MAX_SEGMENTS: usize = 64;
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
    // With HOST_USO, as many whole datagrams as one 64 KiB frame holds go out as one frame.
    let per_frame = (LARGE_PAYLOAD / size).min(MAX_SEGMENTS) as u64;
    let segment = stack.net.tx.can_segment() && per_frame > 1;
    let nap = Nap::new(machine);
    let (mut sent, mut frames) = (0u64, 0u64);
    let t0 = rdtsc();
    while sent < bytes {
        let left = bytes - sent;
        if segment && left >= 2 * size as u64 {
            let k = (left / size as u64).min(per_frame);
            let total = k * size as u64;
            if stack.send_udp_large(dst, TX_PORT, port, total as usize, size as u16) {
                sent += total;
                frames += k;
                stack.flush();
            } else {
                // Every large buffer is with the device (or ARP is pending).
                while stack.poll().is_some() {}
                nap.idle();
            }
            continue;
        }
        if !stack.net.tx.has_room() {
            while stack.poll().is_some() {}
            stack.flush();
            nap.idle();
            continue;
        }
        let n = left.min(size as u64) as usize;
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
    // Segmentation offload frames whole when the device offers it (fewer, larger frames).
    let Some(mut stack) = setup_with(
        machine,
        args,
        "net-rx",
        WANTED | f::GUEST_USO4 | f::GUEST_USO6,
    ) else {
        return;
    };
    // A digest of the payloads in arrival order (tests compare it with the sender's).
    let mut digest = match args.get("digest") {
        None => None,
        Some("sha256") => Some(Sha256::new()),
        Some(v) => return crate::report!("error net-rx reason=bad-digest value={v}"),
    };
    let nap = match args.get("idle") {
        None | Some("hlt") => Some(Nap::new(machine)),
        Some("spin") => None,
        Some(v) => return crate::report!("error net-rx reason=bad-idle value={v}"),
    };
    crate::report!("net-rx ready port={port} ip={}", super::Ip(stack.ip));
    let hz = stack.clock.hz;
    let (mut got, mut frames, mut first, mut last) = (0u64, 0u64, 0u64, 0u64);
    // Rounds that found nothing, and the TSC cycles they took (after the first datagram): how
    // much of the span the receiver waited for the device rather than worked.
    let (mut idle_rounds, mut idle_cycles) = (0u64, 0u64);
    // Segmentation offload frames received (each carried several datagrams).
    let mut runs = 0u64;
    loop {
        let round = rdtsc();
        let mut idle = true;
        while let Some(e) = stack.poll() {
            idle = false;
            let is_run = matches!(e, Event::UdpRun { .. });
            let (dport, len, datagrams) = match e {
                Event::Udp { dport, len, .. } => (dport, len, 1),
                Event::UdpRun {
                    dport,
                    len,
                    datagrams,
                } => (dport, len, datagrams),
                Event::EchoReply { .. } => continue,
            };
            if dport == port {
                if let Some(h) = digest.as_mut() {
                    if is_run {
                        let run = stack.net.last_run();
                        h.update(&run[run.len().saturating_sub(len)..]);
                    } else {
                        h.update(stack.payload());
                    }
                }
                runs += u64::from(is_run);
                last = rdtsc();
                if frames == 0 {
                    first = last;
                }
                got += len as u64;
                frames += datagrams;
            }
        }
        if got >= bytes || (frames > 0 && rdtsc().wrapping_sub(last) > 2 * hz) {
            break;
        }
        if idle {
            match &nap {
                Some(n) => n.idle(),
                None => core::hint::spin_loop(),
            }
            if frames > 0 {
                idle_rounds += 1;
                idle_cycles += rdtsc().wrapping_sub(round);
            }
        }
    }
    let cycles = last.wrapping_sub(first);
    crate::report!(
        "net-rx bytes={got} frames={frames} cycles={cycles} tsc_hz={hz} idle_rounds={idle_rounds} idle_cycles={idle_cycles} runs={runs}"
    );
    if let Some(h) = digest {
        crate::report!("net-rx sha256={}", Hex(h.finish()));
    }
}

/// Waiting without spinning: with a local APIC, a fast periodic timer (~260 µs, the event loop's
/// busy-polling tick) is started and an idle round sleeps in `hlt` until its next tick, leaving
/// the host CPU to the device (on a 2-CPU host a spinning vCPU competes with the VMM's device
/// thread and the peer). The receive ring (up to 1024 buffers) holds well over one tick of frames
/// at the rates seen here. Without a local APIC it spins.
struct Nap {
    sleep: bool,
}

impl Nap {
    fn new(machine: &Machine) -> Self {
        let Some(madt) = machine.acpi.as_ref().and_then(|a| a.madt) else {
            return Self { sleep: false };
        };
        let lapic = LocalApic::new(madt.lapic_addr);
        lapic.enable();
        lapic.start_periodic_timer(VECTOR_TIMER, BUSY_TIMER_COUNT);
        Self { sleep: true }
    }

    fn idle(&self) {
        if self.sleep {
            crate::syscall::wait_for_interrupt();
        } else {
            core::hint::spin_loop();
        }
    }
}
