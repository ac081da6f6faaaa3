//! `net-hostile ip=A.B.C.D/NN target=A.B.C.D:PORT [nic=K]`: a virtio-net driver that misbehaves on
//! purpose, then shows the NIC (and the entropy device) still work. One line per step:
//! `PROBE net-hostile step=<name> used=<entries> len=<used length>`:
//!
//! - `early-notify`: a frame queued and notified before DRIVER_OK (the device must not touch it:
//!   used=0), then DRIVER_OK and a second notify (now sent: used=1);
//! - `outside-ram`: a descriptor far outside guest RAM (answered: used=1 len=0);
//! - `loop`: a chain whose descriptors point at each other (answered, len=0);
//! - `oversized`: a 1 MiB frame (answered, len=0);
//! - `bad-csum`: NEEDS_CSUM with the checksum offset past the frame (answered, len=0);
//! - `bad-gso`: a GSO type that was not negotiated (answered, len=0);
//! - `starve`: no receive buffers posted while `PROBE net-hostile starving` lets the host flood
//!   the TAP for 2 s (the VMM must stop reading it, not queue);
//! - `reset`: 32 frames queued, then a device reset before they finish (status reads 0);
//!
//! then the driver starts over properly, sends `hostile-survived` to `target=` over UDP, reads 64
//! bytes from the entropy device, and prints `PROBE net-hostile done sent=1 rng=<ok|none|fail>`.

use super::setup;
use crate::cmdline::Args;
use crate::io::{mmio_read32, mmio_write32, rdtsc};
use crate::scenarios::Scenario;
use crate::virtio::net::{DEVICE_NET, REGION};
use crate::virtio::queue::{self, SplitQueue, RING_BYTES};
use crate::Machine;
use domus_probe::inet;

/// The scenario entry.
pub const SCENARIO: Scenario = Scenario {
    name: "net-hostile",
    run,
};

const RX_RING: u64 = REGION;
const TX_RING: u64 = REGION + RING_BYTES;
const FRAME: u64 = REGION + 0x1_0000;
const BIG: u64 = REGION + 0x10_0000;
const NEXT: u16 = 1;
const STATUS: u64 = 0x70;

fn frame(len: usize, flags: u8, gso: u8, csum_start: u16, csum_off: u16) {
    // SAFETY: FRAME is driver-owned RAM in the NIC region, 4 KiB available.
    let b = unsafe { core::slice::from_raw_parts_mut(FRAME as usize as *mut u8, 12 + len) };
    b.fill(0);
    b[0] = flags;
    b[1] = gso;
    b[4..6].copy_from_slice(&1400u16.to_le_bytes());
    b[6..8].copy_from_slice(&csum_start.to_le_bytes());
    b[8..10].copy_from_slice(&csum_off.to_le_bytes());
    // Broadcast Ethernet frame of an unknown EtherType.
    b[12..18].fill(0xff);
    b[24] = 0x88;
    b[25] = 0xb5;
}

/// Waits up to ~`ms` for used entries; (count, last length).
fn collect(q: &mut SplitQueue, hz: u64, ms: u64) -> (u32, u32) {
    let deadline = rdtsc() + hz / 1000 * ms;
    let (mut n, mut len) = (0, 0);
    while rdtsc() < deadline {
        if let Some((_, l)) = q.poll() {
            n += 1;
            len = l;
            if n == 1 && ms > 50 {
                // Give any further (wrong) entries a moment to show.
                let until = rdtsc() + hz / 100;
                while rdtsc() < until {
                    if let Some((_, l2)) = q.poll() {
                        n += 1;
                        len = l2;
                    }
                }
                break;
            }
        }
    }
    (n, len)
}

fn step(name: &str, q: &mut SplitQueue, hz: u64, ms: u64) {
    let (n, len) = collect(q, hz, ms);
    crate::report!("net-hostile step={name} used={n} len={len}");
}

fn run(machine: &Machine, args: &Args<'_>) {
    let Some((dst, port)) = args.get("target").and_then(inet::parse_endpoint) else {
        return crate::report!("error net-hostile reason=bad-target");
    };
    let nic = args.get_u64("nic", 0).unwrap_or(0) as usize;
    let devices = crate::virtio::discover(machine.acpi.as_ref());
    let Some(t) = devices.nth_of_type(DEVICE_NET, nic).copied() else {
        return crate::report!("error net-hostile reason=no-nic");
    };
    let hz = super::Clock::new(machine).hz;
    if let Err(e) = hostile(&t, hz) {
        return crate::report!("error net-hostile reason={e}");
    }
    // Start over properly: the NIC must still work.
    let Some(mut stack) = setup(machine, args, "net-hostile") else {
        return;
    };
    let deadline = rdtsc() + 5 * hz;
    let mut sent = 0u8;
    while rdtsc() < deadline {
        if stack.send_udp(dst, 40_001, port, b"hostile-survived") {
            stack.flush();
            sent = 1;
            break;
        }
        while stack.poll().is_some() {}
    }
    let rng = match devices.nth_of_type(crate::virtio::DEVICE_RNG, 0) {
        None => "none",
        Some(r) => match crate::virtio::rng::Rng::init(r, 0) {
            Ok(mut rng) => {
                if rng.read(0x90_0000, 64).is_some_and(|n| n > 0) {
                    "ok"
                } else {
                    "fail"
                }
            }
            Err(_) => "fail",
        },
    };
    crate::report!("net-hostile done sent={sent} rng={rng}");
}

fn hostile(t: &crate::virtio::Transport, hz: u64) -> Result<(), &'static str> {
    queue::negotiate(t, 0)?;
    let _rx = SplitQueue::setup(t, 0, RX_RING, 256)?;
    let mut tx = SplitQueue::setup(t, 1, TX_RING, 256)?;
    // Notify before DRIVER_OK.
    frame(60, 0, 0, 0, 0);
    tx.push_one(0, FRAME, 72, 0);
    tx.notify();
    let (early, _) = collect(&mut tx, hz, 100);
    queue::driver_ok(t)?;
    tx.notify();
    let (late, _) = collect(&mut tx, hz, 2000);
    crate::report!("net-hostile step=early-notify used={early} then={late}");
    tx.push_one(1, 0x7fff_0000_0000, 100, 0);
    tx.notify();
    step("outside-ram", &mut tx, hz, 2000);
    tx.push_raw(
        &[
            (FRAME, 100, NEXT, 3),
            (0, 0, 0, 0),
            (FRAME, 100, NEXT, 3),
            (FRAME, 100, NEXT, 2),
        ],
        2,
    );
    tx.notify();
    step("loop", &mut tx, hz, 2000);
    tx.push_one(4, BIG, 1 << 20, 0);
    tx.notify();
    step("oversized", &mut tx, hz, 2000);
    frame(60, 1, 0, 5000, 6);
    tx.push_one(5, FRAME, 72, 0);
    tx.notify();
    step("bad-csum", &mut tx, hz, 2000);
    frame(1000, 1, 3, 34, 6);
    tx.push_one(6, FRAME, 1012, 0);
    tx.notify();
    step("bad-gso", &mut tx, hz, 2000);
    // No receive buffers: the host floods meanwhile.
    crate::report!("net-hostile starving");
    let until = rdtsc() + 2 * hz;
    while rdtsc() < until {
        core::hint::spin_loop();
    }
    crate::report!("net-hostile step=starve used=0 len=0");
    // Reset mid-traffic.
    frame(60, 0, 0, 0, 0);
    for i in 0..32u16 {
        tx.push_one(8 + i, FRAME, 72, 0);
    }
    tx.notify();
    mmio_write32(t.base + STATUS, 0);
    let status = mmio_read32(t.base + STATUS);
    crate::report!("net-hostile step=reset status={status}");
    Ok(())
}
