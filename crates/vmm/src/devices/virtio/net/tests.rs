//! The receive and transmit paths against a driver-side mock queue, with a datagram socketpair in
//! place of the TAP (one datagram = one frame with its vnet header, as on a TAP): what a Linux driver
//! relies on — `num_buffers`, used lengths per chain, chains given back, frames never truncated.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;

use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::QueueT;
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::EventFd;

use super::device::{NetDevice, NetShared};
use super::rx::{Rx, RxPass};
use super::tap::Tap;
use super::tx::{Tx, TxPass};
use super::{features, HDR_LEN};
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::test_utils::{activate_with, test_ram};
use crate::vstate::memory::GuestRam;

const NEXT: u16 = 1;
const WRITE: u16 = 2;
const MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0, 0, 1];

fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
}

pub(super) struct Rig {
    pub(super) ram: GuestRam,
    pub(super) t: MmioTransport,
    pub(super) net: Arc<NetShared>,
    pub(super) peer: UnixDatagram,
}

fn rig() -> Rig {
    rig_with(Tap::fake)
}

/// A transport over a NIC whose TAP is one end of a datagram socketpair made by `tap`; the
/// other end is the rig's `peer`.
pub(super) fn rig_with(tap: fn(OwnedFd) -> Tap) -> Rig {
    let ram = test_ram(1 << 22);
    let (a, b) = UnixDatagram::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let net = Arc::new(NetShared::new(tap(OwnedFd::from(a)), MAC, 1500));
    let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let t = MmioTransport::new(
        "net".into(),
        Box::new(NetDevice::new(Arc::clone(&net))),
        ram.clone(),
        irq,
    )
    .unwrap();
    Rig {
        ram,
        t,
        net,
        peer: b,
    }
}

/// A frame for MAC with `payload` bytes after the Ethernet header, behind a zero vnet header.
fn frame(payload: usize) -> Vec<u8> {
    let mut f = vec![0u8; HDR_LEN];
    f.extend_from_slice(&MAC);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 9, 0x88, 0xb5]);
    f.extend((0..payload).map(|i| u8::try_from(i % 251).unwrap()));
    f
}

#[test]
fn mergeable_frame_spans_chains_with_num_buffers_and_the_rest_go_back() {
    let r = rig();
    let mem = r.ram.mmap();
    let rxq = MockSplitQueue::create(mem, GuestAddress(0x1_0000), 16);
    let txq = MockSplitQueue::create(mem, GuestAddress(0x2_0000), 16);
    let ctl = MockSplitQueue::create(mem, GuestAddress(0x3_0000), 16);
    activate_with(
        &r.t,
        features::MRG_RXBUF,
        &[(0, &rxq), (1, &txq), (2, &ctl)],
    );
    // Four chains of 600 bytes (the first two of two descriptors each).
    rxq.add_desc_chains(
        &[
            desc(0x10_0000, 400, WRITE | NEXT, 1),
            desc(0x11_0000, 200, WRITE, 0),
            desc(0x12_0000, 300, WRITE | NEXT, 3),
            desc(0x13_0000, 300, WRITE, 0),
            desc(0x14_0000, 600, WRITE, 0),
            desc(0x15_0000, 600, WRITE, 0),
        ],
        0,
    )
    .unwrap();
    // 12 + 14 + 1200 = 1226 bytes: three chains (the device gathers enough for a 1518-byte frame).
    let f = frame(1200);
    assert_eq!(f.len(), 1226);
    r.peer.send(&f).unwrap();
    let mut rx = Rx::new();
    assert_eq!(rx.process(&r.t, &r.net), RxPass::Drained);
    let used = rxq.used();
    assert_eq!(used.idx().load(), 3);
    let lens: Vec<(u32, u32)> = (0..3)
        .map(|i| {
            let e = used.ring().ref_at(i).unwrap().load();
            (e.id(), e.len())
        })
        .collect();
    assert_eq!(lens, [(0, 600), (2, 600), (4, 26)]);
    let mut hdr = [0u8; 12];
    r.ram.read_slice(&mut hdr, GuestAddress(0x10_0000)).unwrap();
    assert_eq!(u16::from_le_bytes([hdr[10], hdr[11]]), 3, "num_buffers");
    // The bytes landed in order across the descriptors.
    let mut tail = [0u8; 26];
    r.ram
        .read_slice(&mut tail, GuestAddress(0x14_0000))
        .unwrap();
    assert_eq!(tail[..], f[1200..]);
    let mut mid = [0u8; 300];
    r.ram.read_slice(&mut mid, GuestAddress(0x13_0000)).unwrap();
    assert_eq!(mid[..], f[900..1200]);
    // The fourth chain is still available: a small frame takes it alone.
    r.peer.send(&frame(46)).unwrap();
    assert_eq!(rx.process(&r.t, &r.net), RxPass::NoBuffers);
    let e = rxq.used().ring().ref_at(3).unwrap().load();
    assert_eq!((e.id(), e.len()), (5, 12 + 14 + 46));
    // No buffers left: the next frame waits in the TAP.
    r.peer.send(&frame(46)).unwrap();
    assert_eq!(rx.process(&r.t, &r.net), RxPass::NoBuffers);
    assert_eq!(rxq.used().idx().load(), 4);
}

#[test]
fn without_mergeable_buffers_a_frame_too_large_for_its_chain_is_dropped_not_truncated() {
    let r = rig();
    let mem = r.ram.mmap();
    let rxq = MockSplitQueue::create(mem, GuestAddress(0x1_0000), 16);
    let txq = MockSplitQueue::create(mem, GuestAddress(0x2_0000), 16);
    let ctl = MockSplitQueue::create(mem, GuestAddress(0x3_0000), 16);
    activate_with(&r.t, 0, &[(0, &rxq), (1, &txq), (2, &ctl)]);
    rxq.add_desc_chains(&[desc(0x10_0000, 200, WRITE, 0)], 0)
        .unwrap();
    r.peer.send(&frame(500)).unwrap();
    r.peer.send(&frame(100)).unwrap();
    let mut rx = Rx::new();
    assert_eq!(rx.process(&r.t, &r.net), RxPass::NoBuffers);
    // The large frame was dropped; the chain went back and took the small one.
    let used = rxq.used();
    assert_eq!(used.idx().load(), 1);
    let e = used.ring().ref_at(0).unwrap().load();
    assert_eq!((e.id(), e.len()), (0, 12 + 14 + 100));
    let mut hdr = [0u8; 12];
    r.ram.read_slice(&mut hdr, GuestAddress(0x10_0000)).unwrap();
    assert_eq!(
        u16::from_le_bytes([hdr[10], hdr[11]]),
        1,
        "num_buffers is 1 without MRG_RXBUF"
    );
    assert_eq!(rx.dropped, 1);
}

#[test]
fn bad_receive_chains_are_answered_with_zero_and_skipped() {
    let r = rig();
    let mem = r.ram.mmap();
    let rxq = MockSplitQueue::create(mem, GuestAddress(0x1_0000), 16);
    let txq = MockSplitQueue::create(mem, GuestAddress(0x2_0000), 16);
    let ctl = MockSplitQueue::create(mem, GuestAddress(0x3_0000), 16);
    activate_with(
        &r.t,
        features::MRG_RXBUF,
        &[(0, &rxq), (1, &txq), (2, &ctl)],
    );
    rxq.add_desc_chains(
        &[
            desc(0x10_0000, 2000, 0, 0),            // device-readable
            desc(0xffff_0000_0000, 2000, WRITE, 0), // outside RAM
            desc(0x12_0000, 8, WRITE, 0),           // cannot hold the header
            desc(0x13_0000, 2000, WRITE, 0),
        ],
        0,
    )
    .unwrap();
    r.peer.send(&frame(60)).unwrap();
    let mut rx = Rx::new();
    assert_eq!(rx.process(&r.t, &r.net), RxPass::NoBuffers);
    let used = rxq.used();
    assert_eq!(used.idx().load(), 4);
    let got: Vec<(u32, u32)> = (0..4)
        .map(|i| {
            let e = used.ring().ref_at(i).unwrap().load();
            (e.id(), e.len())
        })
        .collect();
    assert_eq!(got, [(0, 0), (1, 0), (2, 0), (3, 12 + 14 + 60)]);
    assert_eq!(r.t.log().guest_errors(), 3);
}

#[test]
fn transmit_sends_header_and_frame_and_rejects_bad_chains() {
    let r = rig();
    let mem = r.ram.mmap();
    let rxq = MockSplitQueue::create(mem, GuestAddress(0x1_0000), 16);
    let txq = MockSplitQueue::create(mem, GuestAddress(0x2_0000), 16);
    let ctl = MockSplitQueue::create(mem, GuestAddress(0x3_0000), 16);
    activate_with(&r.t, features::CSUM, &[(0, &rxq), (1, &txq), (2, &ctl)]);
    let f = frame(100);
    r.ram
        .write_slice(&f[..12], GuestAddress(0x10_0000))
        .unwrap();
    r.ram
        .write_slice(&f[12..], GuestAddress(0x11_0000))
        .unwrap();
    let mut bad_hdr = f.clone();
    bad_hdr[0] = 0x40; // unknown flag
    r.ram
        .write_slice(&bad_hdr, GuestAddress(0x12_0000))
        .unwrap();
    txq.add_desc_chains(
        &[
            desc(0x10_0000, 12, NEXT, 1),
            desc(0x11_0000, u32::try_from(f.len() - 12).unwrap(), 0, 0),
            desc(0x12_0000, u32::try_from(f.len()).unwrap(), 0, 0),
            desc(0x13_0000, 100, WRITE, 0),
        ],
        0,
    )
    .unwrap();
    let mut tx = Tx::new();
    assert_eq!(
        tx.process(&r.t, &r.net, None, std::time::Duration::ZERO),
        TxPass::Idle
    );
    let mut got = [0u8; 4096];
    let n = r.peer.recv(&mut got).unwrap();
    assert_eq!(got[..n], f[..], "header and frame in one datagram");
    r.peer.set_nonblocking(true).unwrap();
    assert!(r.peer.recv(&mut got).is_err(), "bad chains are not sent");
    let used = txq.used();
    assert_eq!(used.idx().load(), 3);
    for i in 0..3 {
        assert_eq!(used.ring().ref_at(i).unwrap().load().len(), 0);
    }
    assert_eq!((tx.frames, tx.dropped), (1, 2));
}

#[test]
fn rate_limit_holds_the_chain_on_the_ring() {
    let r = rig();
    let mem = r.ram.mmap();
    let rxq = MockSplitQueue::create(mem, GuestAddress(0x1_0000), 16);
    let txq = MockSplitQueue::create(mem, GuestAddress(0x2_0000), 16);
    let ctl = MockSplitQueue::create(mem, GuestAddress(0x3_0000), 16);
    activate_with(&r.t, 0, &[(0, &rxq), (1, &txq), (2, &ctl)]);
    let f = frame(1000);
    r.ram.write_slice(&f, GuestAddress(0x10_0000)).unwrap();
    let len = u32::try_from(f.len()).unwrap();
    txq.add_desc_chains(&[desc(0x10_0000, len, 0, 0), desc(0x10_0000, len, 0, 0)], 0)
        .unwrap();
    // 20 000 B/s, 50 ms: a 1000-byte credit; each frame is 1022 bytes, so one per interval.
    let mut limiter = super::rate::CreditLimiter::new(20_000, 50_000);
    let mut tx = Tx::new();
    let t0 = std::time::Duration::from_secs(1);
    let pass = tx.process(&r.t, &r.net, Some(&mut limiter), t0);
    assert_eq!(
        pass,
        TxPass::Throttled(std::time::Duration::from_millis(50))
    );
    assert_eq!(txq.used().idx().load(), 1);
    let later = t0 + std::time::Duration::from_millis(50);
    assert_eq!(
        tx.process(&r.t, &r.net, Some(&mut limiter), later),
        TxPass::Idle
    );
    assert_eq!(txq.used().idx().load(), 2);
}

#[test]
fn chains_a_frame_did_not_fill_are_held_for_the_next_and_released_before_a_pause() {
    let r = rig();
    let mem = r.ram.mmap();
    let rxq = MockSplitQueue::create(mem, GuestAddress(0x1_0000), 16);
    let txq = MockSplitQueue::create(mem, GuestAddress(0x2_0000), 16);
    let ctl = MockSplitQueue::create(mem, GuestAddress(0x3_0000), 16);
    activate_with(
        &r.t,
        features::MRG_RXBUF,
        &[(0, &rxq), (1, &txq), (2, &ctl)],
    );
    rxq.add_desc_chains(
        &[
            desc(0x10_0000, 600, WRITE, 0),
            desc(0x11_0000, 600, WRITE, 0),
            desc(0x12_0000, 600, WRITE, 0),
            desc(0x13_0000, 600, WRITE, 0),
        ],
        0,
    )
    .unwrap();
    let next_avail = |t: &MmioTransport| t.lock().queues[0].next_avail();
    // A small frame fills chain 0; chains 1 and 2 (gathered for a 1518-byte frame) and then 3
    // (gathered while the TAP turned out empty) stay with the device.
    r.peer.send(&frame(46)).unwrap();
    let mut rx = Rx::new();
    assert_eq!(rx.process(&r.t, &r.net), RxPass::Drained);
    assert_eq!(rxq.used().idx().load(), 1);
    assert_eq!(next_avail(&r.t), 4);
    // The next frame takes the first held chain, in ring order.
    r.peer.send(&frame(100)).unwrap();
    assert_eq!(rx.process(&r.t, &r.net), RxPass::Drained);
    let e = rxq.used().ring().ref_at(1).unwrap().load();
    assert_eq!((e.id(), e.len()), (1, 12 + 14 + 100));
    assert_eq!(next_avail(&r.t), 4);
    // Released (as before a pause or a state save): the two unused chains are available again.
    rx.release(&r.t);
    assert_eq!(next_avail(&r.t), 2);
    rx.release(&r.t);
    assert_eq!(
        next_avail(&r.t),
        2,
        "releasing twice gives back nothing more"
    );
    r.peer.send(&frame(46)).unwrap();
    assert_eq!(rx.process(&r.t, &r.net), RxPass::Drained);
    let e = rxq.used().ring().ref_at(2).unwrap().load();
    assert_eq!(e.id(), 2);
}

#[test]
fn a_frame_larger_than_the_fast_ranges_spills_into_the_rest_of_its_chains_intact() {
    let r = rig();
    let mem = r.ram.mmap();
    let rxq = MockSplitQueue::create(mem, GuestAddress(0x1_0000), 16);
    let txq = MockSplitQueue::create(mem, GuestAddress(0x2_0000), 16);
    let ctl = MockSplitQueue::create(mem, GuestAddress(0x3_0000), 16);
    activate_with(
        &r.t,
        features::MRG_RXBUF,
        &[(0, &rxq), (1, &txq), (2, &ctl)],
    );
    // Four chains of four 64-byte descriptors: the device gathers all 16 ranges for the first
    // frame, more than FAST_RANGES.
    let descs: Vec<RawDescriptor> = (0..16u16)
        .map(|i| {
            let last = i % 4 == 3;
            let flags = if last { WRITE } else { WRITE | NEXT };
            desc(
                0x10_0000 + u64::from(i) * 0x1000,
                64,
                flags,
                if last { 0 } else { i + 1 },
            )
        })
        .collect();
    rxq.add_desc_chains(&descs, 0).unwrap();
    // 600 bytes: three chains; read into 7 ranges (448 bytes) and the scratch buffer, whose 152
    // bytes are copied into the next three ranges. Then a 72-byte frame in the fourth chain.
    let big = frame(574);
    let small = frame(46);
    for f in [&big, &small] {
        r.peer.send(f).unwrap();
    }
    let mut rx = Rx::new();
    assert_eq!(
        rx.process(&r.t, &r.net),
        RxPass::NoBuffers,
        "every chain used"
    );
    assert_eq!((rx.frames, rx.dropped), (2, 0));
    let used = rxq.used();
    let got: Vec<(u32, u32)> = (0..used.idx().load())
        .map(|i| {
            let e = used.ring().ref_at(usize::from(i)).unwrap().load();
            (e.id(), e.len())
        })
        .collect();
    assert_eq!(got, [(0, 256), (4, 256), (8, 88), (12, 72)]);
    let read = |from: u16, len: usize| {
        let mut out = Vec::new();
        for d in from.. {
            if out.len() >= len {
                break;
            }
            let mut b = vec![0u8; 64.min(len - out.len())];
            r.ram
                .read_slice(&mut b, GuestAddress(0x10_0000 + u64::from(d) * 0x1000))
                .unwrap();
            out.extend_from_slice(&b);
        }
        out
    };
    let mut a = read(0, big.len());
    assert_eq!(u16::from_le_bytes([a[10], a[11]]), 3, "num_buffers");
    a[10..12].fill(0);
    assert_eq!(a, big);
    let mut b = read(12, small.len());
    assert_eq!(u16::from_le_bytes([b[10], b[11]]), 1, "num_buffers");
    b[10..12].fill(0);
    assert_eq!(b, small);
}
