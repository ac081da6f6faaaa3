//! The receive path's UDP coalescing against a driver-side mock queue, with a datagram socketpair
//! in place of the TAP (one datagram = one frame with its vnet header): runs become one
//! segmentation frame, everything else is delivered alone, in order, none lost, bytes intact.

use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::GuestAddress;

use super::rx::{Rx, RxPass};
use super::tap::Tap;
use super::tests::{rig_with, Rig};
use super::{features, HDR_LEN};
use crate::devices::virtio::test_utils::activate_with;

const WRITE: u16 = 2;
const MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0, 0, 1];
const BASE: u64 = 0x10_0000;
const USO_GUEST: u64 =
    features::MRG_RXBUF | features::GUEST_CSUM | features::GUEST_USO4 | features::GUEST_USO6;

fn rig() -> Rig {
    rig_with(Tap::fake_uso)
}

/// Pseudo-random bytes (xorshift), different for each `seed`.
fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn sum16(data: &[u8]) -> u16 {
    let mut acc: u32 = data
        .chunks(2)
        .map(|w| u32::from(w[0]) << 8 | w.get(1).map_or(0, |&b| u32::from(b)))
        .sum();
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    u16::try_from(acc).unwrap()
}

/// A frame for MAC: vnet `flags` (NEEDS_CSUM with the UDP checksum's start and offset), IPv4
/// 10.0.0.1 -> 10.0.0.2, UDP `sport` -> `dport`, `payload`; the UDP checksum field `check`.
fn udp(flags: u8, sport: u16, dport: u16, check: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; HDR_LEN];
    f[0] = flags;
    if flags == 1 {
        f[6..8].copy_from_slice(&34u16.to_le_bytes());
        f[8..10].copy_from_slice(&6u16.to_le_bytes());
    }
    f.extend_from_slice(&MAC);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 9, 0x08, 0x00]);
    let total = u16::try_from(28 + payload.len()).unwrap();
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[4..6].copy_from_slice(&sport.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let c = !sum16(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&(total - 20).to_be_bytes());
    f.extend_from_slice(&check.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Activates with `features` and posts `chains` receive chains of `size` bytes (one descriptor
/// each, chain i at BASE + i * 64 KiB).
fn activate<'a>(
    r: &'a Rig,
    features: u64,
    chains: u16,
    size: u32,
) -> MockSplitQueue<'a, vm_memory::GuestMemoryMmap> {
    let mem = r.ram.mmap();
    // The mock places its used ring `len` bytes after the available ring's header, inside the
    // ring of a queue that long: a mock four times the device's 16 entries keeps them apart.
    let rxq = MockSplitQueue::create(mem, GuestAddress(0x1_0000), 64);
    let txq = MockSplitQueue::create(mem, GuestAddress(0x2_0000), 16);
    let ctl = MockSplitQueue::create(mem, GuestAddress(0x3_0000), 16);
    activate_with(&r.t, features, &[(0, &rxq), (1, &txq), (2, &ctl)]);
    post(&rxq, 0, chains, size);
    rxq
}

fn post<M: vm_memory::GuestMemory>(rxq: &MockSplitQueue<'_, M>, from: u16, n: u16, size: u32) {
    let descs: Vec<RawDescriptor> = (from..from + n)
        .map(|i| {
            RawDescriptor::from(SplitDescriptor::new(
                BASE + u64::from(i) * 0x1_0000,
                size,
                WRITE,
                0,
            ))
        })
        .collect();
    rxq.add_desc_chains(&descs, from).unwrap();
}

/// The frames the driver got, in order: each reassembled from `num_buffers` used chains, with
/// `num_buffers` zeroed.
fn received<M: vm_memory::GuestMemory>(r: &Rig, rxq: &MockSplitQueue<'_, M>) -> Vec<Vec<u8>> {
    let used = rxq.used();
    let entries: Vec<(u32, u32)> = (0..used.idx().load())
        .map(|i| {
            let e = used.ring().ref_at(usize::from(i)).unwrap().load();
            (e.id(), e.len())
        })
        .collect();
    let mut frames = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        let chunk = |k: usize| {
            let (id, len) = entries[k];
            let mut b = vec![0u8; len as usize];
            r.ram
                .read_slice(&mut b, GuestAddress(BASE + u64::from(id) * 0x1_0000))
                .unwrap();
            b
        };
        let mut f = chunk(i);
        let num = usize::from(u16::from_le_bytes([f[10], f[11]]));
        assert!(num >= 1 && i + num <= entries.len(), "num_buffers {num}");
        for k in 1..num {
            f.extend_from_slice(&chunk(i + k));
        }
        f[10..12].fill(0);
        frames.push(f);
        i += num;
    }
    frames
}

/// What the coalesced frame of `parts` (all of one flow, the first's headers) must be.
fn coalesced(parts: &[Vec<u8>]) -> Vec<u8> {
    let seg = parts[0].len() - 54;
    let payload: usize = parts.iter().map(|p| p.len() - 54).sum();
    let mut f = parts[0][..54].to_vec();
    f[0] = 1;
    f[1] = 5;
    f[2..4].copy_from_slice(&42u16.to_le_bytes());
    f[4..6].copy_from_slice(&u16::try_from(seg).unwrap().to_le_bytes());
    f[6..8].copy_from_slice(&34u16.to_le_bytes());
    f[8..10].copy_from_slice(&6u16.to_le_bytes());
    let total = u16::try_from(28 + payload).unwrap();
    f[28..30].copy_from_slice(&total.to_be_bytes());
    f[36..38].fill(0);
    let c = !sum16(&f[26..46]);
    f[36..38].copy_from_slice(&c.to_be_bytes());
    f[50..52].copy_from_slice(&(total - 20).to_be_bytes());
    let mut pseudo = f[38..46].to_vec();
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(total - 20).to_be_bytes());
    f[52..54].copy_from_slice(&sum16(&pseudo).to_be_bytes());
    for p in parts {
        f.extend_from_slice(&p[54..]);
    }
    f
}

/// Flow A (6 datagrams, the last short), A again (alone: a foreign frame follows), the foreign
/// frame, flow B (3 datagrams), two of flow A whose checksums the guest must verify (alone each).
fn traffic() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let a = |i: u64, n: usize| udp(1, 4000, 5001, 0x1234, &bytes(i, n));
    let run_a: Vec<Vec<u8>> = (0..5).map(|i| a(i, 1000)).chain([a(5, 300)]).collect();
    let lone_a = a(6, 1000);
    let mut foreign = vec![0u8; HDR_LEN];
    foreign.extend_from_slice(&MAC);
    foreign.extend_from_slice(&[0x02, 0, 0, 0, 0, 9, 0x88, 0xb5]);
    foreign.extend_from_slice(&bytes(7, 46));
    let run_b: Vec<Vec<u8>> = (0..3)
        .map(|i| udp(2, 4000, 5002, 0x5678, &bytes(10 + i, 800)))
        .collect();
    let verify: Vec<Vec<u8>> = (0..2)
        .map(|i| udp(0, 4000, 5001, 0x9abc, &bytes(20 + i, 1000)))
        .collect();
    let sent: Vec<Vec<u8>> = run_a
        .iter()
        .chain([&lone_a, &foreign])
        .chain(&run_b)
        .chain(&verify)
        .cloned()
        .collect();
    let mut want = vec![coalesced(&run_a), lone_a, foreign, coalesced(&run_b)];
    want.extend(verify);
    (sent, want)
}

#[test]
fn runs_of_one_flow_become_one_frame_and_everything_else_goes_alone_in_order() {
    let r = rig();
    let rxq = activate(&r, USO_GUEST, 16, 4096);
    let (sent, want) = traffic();
    for f in &sent {
        r.peer.send(f).unwrap();
    }
    let mut rx = Rx::new();
    rx.set_coalescing(true);
    assert_eq!(rx.process(&r.t, &r.net), RxPass::Drained);
    let got = received(&r, &rxq);
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "frame {i}");
    }
    assert_eq!((rx.frames, rx.dropped), (6, 0));
    assert_eq!((rx.coalesced_frames, rx.coalesced_datagrams), (2, 9));
    assert!(!rx.has_pending());
}

#[test]
fn switched_off_or_not_negotiated_every_frame_goes_alone_unchanged() {
    for (on, features) in [
        (false, USO_GUEST & !features::GUEST_USO4),
        (false, USO_GUEST),
        (true, USO_GUEST & !features::GUEST_USO4),
        (false, features::MRG_RXBUF),
        (true, features::MRG_RXBUF),
    ] {
        let r = rig();
        let rxq = activate(&r, features, 16, 4096);
        let (sent, _) = traffic();
        for f in &sent {
            r.peer.send(f).unwrap();
        }
        let mut rx = Rx::new();
        rx.set_coalescing(on);
        assert_eq!(rx.process(&r.t, &r.net), RxPass::Drained);
        assert_eq!(received(&r, &rxq), sent, "on={on} features={features:#x}");
        assert_eq!(rx.coalesced_frames, 0);
    }
}

#[test]
fn payloads_beyond_one_reads_ranges_are_copied_in_place_intact() {
    // 128-byte chains: a 900-byte payload read after the run's end spans more ranges than one
    // readv gets, and its tail goes through the scratch buffer.
    let r = rig();
    let rxq = activate(&r, USO_GUEST, 16, 128);
    let run: Vec<Vec<u8>> = (0..2)
        .map(|i| udp(2, 1, 2, 0, &bytes(30 + i, 900)))
        .collect();
    for f in &run {
        r.peer.send(f).unwrap();
    }
    let mut rx = Rx::new();
    rx.set_coalescing(true);
    assert_eq!(rx.process(&r.t, &r.net), RxPass::Drained);
    assert_eq!(received(&r, &rxq), [coalesced(&run)]);
}

#[test]
fn a_frame_that_does_not_join_waits_for_buffers_and_is_never_lost() {
    let r = rig();
    // One 4096-byte chain: A1 and A2 (2054 bytes) join; B (another flow) is read after them and
    // waits for a chain of its own; A3 follows it.
    let rxq = activate(&r, USO_GUEST, 1, 4096);
    let a: Vec<Vec<u8>> = (0..3)
        .map(|i| udp(1, 7, 8, 0, &bytes(40 + i, 1000)))
        .collect();
    let b = udp(2, 9, 8, 0, &bytes(50, 500));
    for f in [&a[0], &a[1], &b, &a[2]] {
        r.peer.send(f).unwrap();
    }
    let mut rx = Rx::new();
    rx.set_coalescing(true);
    assert_eq!(rx.process(&r.t, &r.net), RxPass::NoBuffers);
    assert!(rx.has_pending(), "B was read and waits for a buffer");
    assert_eq!(received(&r, &rxq), [coalesced(&a[..2])]);
    // A pause gives the held chains back; the frame stays with the receive path.
    rx.release(&r.t);
    post(&rxq, 1, 3, 4096);
    assert_eq!(rx.process(&r.t, &r.net), RxPass::Drained);
    assert!(!rx.has_pending());
    assert_eq!(
        received(&r, &rxq),
        [coalesced(&a[..2]), b, a[2].clone()],
        "B alone, then A3 alone (after another flow)"
    );
}

#[test]
fn a_run_that_cannot_take_another_datagram_ends_without_reading_the_next() {
    let r = rig();
    // One 2500-byte chain: A1 and A2 (2054 bytes) fit, a third 1000-byte payload could not, so
    // A3 stays in the TAP (nothing pending) until buffers come.
    let rxq = activate(&r, USO_GUEST, 1, 2500);
    let a: Vec<Vec<u8>> = (0..3)
        .map(|i| udp(1, 7, 8, 0, &bytes(60 + i, 1000)))
        .collect();
    for f in &a {
        r.peer.send(f).unwrap();
    }
    let mut rx = Rx::new();
    rx.set_coalescing(true);
    assert_eq!(rx.process(&r.t, &r.net), RxPass::NoBuffers);
    assert!(!rx.has_pending());
    post(&rxq, 1, 2, 2500);
    assert_eq!(rx.process(&r.t, &r.net), RxPass::Drained);
    assert_eq!(received(&r, &rxq), [coalesced(&a[..2]), a[2].clone()]);
}
