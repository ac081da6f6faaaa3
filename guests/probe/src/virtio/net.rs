//! A polling virtio-net driver (virtio 1.2 §5.1) at CPL3.
//!
//! One queue pair (receiveq1, transmitq1) plus the control queue when offered. Every buffer is one
//! descriptor: 12-byte `virtio_net_hdr_v1` followed by the frame. Receive buffers are 2 KiB; with
//! MRG_RXBUF a larger frame spans several and is reassembled in a scratch buffer (`num_buffers`
//! says how many). Checksum offload both ways when negotiated: on transmit the driver leaves the
//! pseudo-header sum and sets NEEDS_CSUM (the host completes it); on receive NEEDS_CSUM frames are
//! completed here and DATA_VALID ones are trusted, the rest verified here. Notifications are
//! batched: [`Net::flush`] kicks each queue once after a round of work, and not at all while the
//! device suppresses kicks (VIRTQ_USED_F_NO_NOTIFY).
//!
//! UDP segmentation offload (VIRTIO_NET_F_HOST_USO, offered by a device whose host side can
//! segment): [`TxPart::send_large`] queues one frame of up to 64 KiB with `gso_type`
//! VIRTIO_NET_HDR_GSO_UDP_L4 and `gso_size` the payload bytes per datagram (virtio 1.2 §5.1.6.2);
//! the device cuts it into datagrams. Those frames use the last [`BIG_SLOTS`] transmit
//! descriptors, whose buffers are 64 KiB each. On receive (VIRTIO_NET_F_GUEST_USO4 with
//! GUEST_USO6, asked for by the scenarios that stream) the device may hand over such a frame
//! whole, spread over several buffers (MRG_RXBUF); [`Net::recv_frame`] says so (`gso`) and gives
//! its full length. Its checksum is the sender's partial one for the whole (NEEDS_CSUM): it is not
//! completed here. Receive kicks are batched while frames are waiting ([`Net::flush_batched`]).

use super::queue::{self, SplitQueue, D_WRITE, RING_BYTES};
use super::Transport;
use crate::io::mmio_read32;
use domus_probe::inet;

/// Virtio device type of a NIC.
pub const DEVICE_NET: u32 = 1;
/// The virtio-net header with VERSION_1.
pub const HDR: usize = 12;
/// Entries per transmit queue.
pub const QSIZE: u16 = 256;
/// Most entries of the receive queue (and receive buffers posted): as many as the device offers up
/// to this. A long receive ring lets the device keep filling buffers while the vCPU is not
/// running (on a busy host a vCPU thread can be off its CPU for a few milliseconds).
pub const RX_QSIZE: u16 = 1024;
/// Bytes per receive or transmit buffer.
pub const BUF: u64 = 2048;
/// Physical memory of the driver (rings, buffers, scratch): 16 MiB .. 20 MiB.
pub const REGION: u64 = 0x100_0000;

/// Feature bits (virtio 1.2 §5.1.3).
pub mod f {
    /// CSUM.
    pub const CSUM: u64 = 1 << 0;
    /// GUEST_CSUM.
    pub const GUEST_CSUM: u64 = 1 << 1;
    /// MTU.
    pub const MTU: u64 = 1 << 3;
    /// MAC.
    pub const MAC: u64 = 1 << 5;
    /// MRG_RXBUF.
    pub const MRG_RXBUF: u64 = 1 << 15;
    /// STATUS.
    pub const STATUS: u64 = 1 << 16;
    /// CTRL_VQ.
    pub const CTRL_VQ: u64 = 1 << 17;
    /// CTRL_RX.
    pub const CTRL_RX: u64 = 1 << 18;
    /// GUEST_USO4.
    pub const GUEST_USO4: u64 = 1 << 54;
    /// GUEST_USO6.
    pub const GUEST_USO6: u64 = 1 << 55;
    /// HOST_USO.
    pub const HOST_USO: u64 = 1 << 56;
}

/// Receive buffers posted again before [`Net::flush_batched`] kicks.
pub const RX_KICK_BATCH: u16 = 32;
/// Transmit descriptors whose buffers hold a whole segmentation-offload frame.
pub const BIG_SLOTS: u16 = 8;
/// Bytes per large transmit buffer (header + frame).
pub const BIG_BUF: u64 = 0x1_0000;
/// VIRTIO_NET_HDR_GSO_UDP_L4.
const GSO_UDP_L4: u8 = 5;

const RX_RING: u64 = REGION;
const TX_RING: u64 = REGION + queue::ring_bytes(RX_QSIZE);
const CTRL_RING: u64 = TX_RING + RING_BYTES;
const CTRL_BUF: u64 = CTRL_RING + RING_BYTES;
const RX_BUFS: u64 = REGION + 0x1_0000;
const TX_BUFS: u64 = RX_BUFS + RX_QSIZE as u64 * BUF;
/// Reassembly buffer for frames spanning several receive buffers (64 KiB + header).
const SCRATCH: u64 = TX_BUFS + QSIZE as u64 * BUF;
const SCRATCH_BYTES: usize = 0x1_1000;
/// Large transmit buffers, one per descriptor `QSIZE - BIG_SLOTS ..`.
const BIG_BUFS: u64 = SCRATCH + 0x2_0000;
const FIRST_BIG: u16 = QSIZE - BIG_SLOTS;
// Everything fits the driver's 4 MiB region.
const _: () = assert!(BIG_BUFS + BIG_SLOTS as u64 * BIG_BUF <= REGION + 0x40_0000);
const _: () = assert!(CTRL_BUF + 0x1000 <= RX_BUFS);

const NEEDS_CSUM: u8 = 1;
const DATA_VALID: u8 = 2;

fn mem(addr: u64, len: usize) -> &'static mut [u8] {
    // SAFETY: every address used here lies in the driver's identity-mapped region of RAM, which
    // only this driver touches; the device writes a buffer only while it is posted, and the driver
    // reads it only after the device returned it.
    unsafe { core::slice::from_raw_parts_mut(addr as usize as *mut u8, len) }
}

/// Receive half.
pub struct RxPart {
    q: SplitQueue,
    features: u64,
    kick: bool,
    unkicked: u16,
    /// Frames received.
    pub frames: u64,
    /// Frames dropped (bad checksum, malformed merge).
    pub dropped: u64,
    /// Length of the last segmentation offload frame (kept at `SCRATCH + HDR`), 0 if none.
    run_len: usize,
}

/// Transmit half.
pub struct TxPart {
    q: SplitQueue,
    features: u64,
    free: [u16; QSIZE as usize],
    free_len: usize,
    big: [u16; BIG_SLOTS as usize],
    big_len: usize,
    kick: bool,
    /// Frames sent.
    pub frames: u64,
}

/// An initialised NIC.
pub struct Net {
    /// The NIC's address (configuration space).
    pub mac: [u8; 6],
    /// Its MTU (configuration space, 1500 without VIRTIO_NET_F_MTU).
    pub mtu: u16,
    /// Negotiated features.
    pub features: u64,
    /// Receive half.
    pub rx: RxPart,
    /// Transmit half.
    pub tx: TxPart,
    ctrl: Option<SplitQueue>,
}

impl Net {
    /// Resets the NIC, negotiates `wanted` (∩ offered), sets up the queues, posts every receive
    /// buffer and sets DRIVER_OK.
    pub fn init(t: &Transport, wanted: u64) -> Result<Self, &'static str> {
        if t.device_id != DEVICE_NET {
            return Err("not-a-virtio-net");
        }
        let features = queue::negotiate(t, wanted)?;
        let cfg0 = mmio_read32(t.base + 0x100).to_le_bytes();
        let cfg1 = mmio_read32(t.base + 0x104).to_le_bytes();
        let cfg2 = mmio_read32(t.base + 0x108).to_le_bytes();
        let mac = [cfg0[0], cfg0[1], cfg0[2], cfg0[3], cfg1[0], cfg1[1]];
        let mtu = if features & f::MTU != 0 {
            u16::from_le_bytes([cfg2[2], cfg2[3]])
        } else {
            1500
        };
        let rxq = SplitQueue::setup(t, 0, RX_RING, RX_QSIZE)?;
        let txq = SplitQueue::setup(t, 1, TX_RING, QSIZE)?;
        let ctrl = if features & f::CTRL_VQ != 0 {
            Some(SplitQueue::setup(t, 2, CTRL_RING, 16)?)
        } else {
            None
        };
        let mut free = [0u16; QSIZE as usize];
        for (i, s) in free.iter_mut().enumerate() {
            *s = i as u16;
        }
        let mut big = [0u16; BIG_SLOTS as usize];
        for (i, s) in big.iter_mut().enumerate() {
            *s = FIRST_BIG + i as u16;
        }
        let mut net = Self {
            mac,
            mtu,
            features,
            rx: RxPart {
                q: rxq,
                features,
                kick: false,
                unkicked: 0,
                frames: 0,
                dropped: 0,
                run_len: 0,
            },
            tx: TxPart {
                q: txq,
                features,
                free,
                free_len: usize::from(FIRST_BIG),
                big,
                big_len: usize::from(BIG_SLOTS),
                kick: false,
                frames: 0,
            },
            ctrl,
        };
        // Touch every receive buffer once before the device gets it, as a kernel's driver posts
        // memory its allocator already touched: otherwise the first frame into each buffer pays
        // the host's first-touch fault (a 1024-entry ring is ~1000 echoes of cold buffers).
        mem(RX_BUFS, usize::from(net.rx.q.size()) * BUF as usize).fill(0);
        for id in 0..net.rx.q.size() {
            net.rx.post(id);
        }
        queue::driver_ok(t)?;
        net.flush();
        Ok(net)
    }

    /// Kicks the queues that got new buffers since the last flush.
    pub fn flush(&mut self) {
        if core::mem::take(&mut self.rx.kick) && !self.rx.q.kicks_suppressed() {
            self.rx.q.notify();
        }
        self.rx.unkicked = 0;
        if core::mem::take(&mut self.tx.kick) && !self.tx.q.kicks_suppressed() {
            self.tx.q.notify();
        }
    }

    /// [`Self::flush`] while more received frames are waiting: the receive queue is kicked only
    /// once [`RX_KICK_BATCH`] buffers were posted again since its last kick. A device that ran out
    /// of buffers (and asked for kicks) then waits for a batch rather than taking each buffer as
    /// it comes back, a guest exit per frame; the caller's final [`Self::flush`], when nothing more
    /// is waiting, kicks for the rest.
    pub fn flush_batched(&mut self) {
        if self.rx.unkicked >= RX_KICK_BATCH {
            self.flush();
        } else if core::mem::take(&mut self.tx.kick) && !self.tx.q.kicks_suppressed() {
            self.tx.q.notify();
        }
    }

    /// Sends one control command (`class`, `cmd`, `data`) and returns the device's ack byte
    /// (`None` without a control queue or without an answer).
    pub fn control(&mut self, class: u8, cmd: u8, data: &[u8]) -> Option<u8> {
        let q = self.ctrl.as_mut()?;
        let buf = mem(CTRL_BUF, 512);
        let n = data.len().min(500);
        buf[0] = class;
        buf[1] = cmd;
        buf[2..2 + n].copy_from_slice(&data[..n]);
        buf[511] = 0xff;
        // A chain of two descriptors: command (readable), ack (writable).
        q.push_chain(&[(CTRL_BUF, (2 + n) as u32, 0), (CTRL_BUF + 511, 1, D_WRITE)]);
        q.notify();
        q.wait(2_000_000_000)?;
        Some(mem(CTRL_BUF, 512)[511])
    }

    /// Copies the next received frame (header stripped) into `out` and posts its buffer again;
    /// its length, `Some(0)` for a frame dropped here (bad checksum, malformed merge), `None` when
    /// nothing arrived.
    pub fn recv(&mut self, out: &mut [u8]) -> Option<usize> {
        self.recv_frame(out).map(|r| r.copied)
    }

    /// As [`Self::recv`], with the frame's full length (more than `out` holds for a segmentation
    /// offload frame) and its `gso_size` (0 for an ordinary frame).
    pub fn recv_frame(&mut self, out: &mut [u8]) -> Option<Received> {
        let frame = self.rx.next()?;
        self.rx.frames += 1;
        self.rx.run_len = 0;
        let (copied, len) = match frame.data {
            Some((addr, len)) => {
                let n = len.min(out.len());
                out[..n].copy_from_slice(mem(addr, n));
                if frame.gso > 0 {
                    // Kept whole for `last_run` (one that fit one buffer is copied out before the
                    // buffer goes back to the device).
                    let keep = SCRATCH + HDR as u64;
                    if addr != keep && len <= SCRATCH_BYTES - HDR {
                        mem(keep, len).copy_from_slice(mem(addr, len));
                    }
                    self.rx.run_len = len.min(SCRATCH_BYTES - HDR);
                }
                (n, len)
            }
            None => (0, 0),
        };
        if let Some(id) = frame.repost {
            self.rx.post(id);
        }
        Some(Received {
            copied,
            len,
            gso: frame.gso,
        })
    }
}

impl Net {
    /// The whole last frame [`Self::recv_frame`] returned if it was a segmentation offload frame
    /// (header stripped), until the next call; empty otherwise.
    pub fn last_run(&self) -> &[u8] {
        mem(SCRATCH + HDR as u64, self.rx.run_len)
    }
}

impl RxPart {
    fn post(&mut self, id: u16) {
        self.q
            .push_one(id, RX_BUFS + u64::from(id) * BUF, BUF as u32, D_WRITE);
        self.kick = true;
        self.unkicked = self.unkicked.saturating_add(1);
    }

    /// The next received frame (header stripped), or `None` when nothing arrived.
    fn next(&mut self) -> Option<Frame> {
        let (id, len) = self.q.poll()?;
        let id = (id as u16) % self.q.size();
        let addr = RX_BUFS + u64::from(id) * BUF;
        let len = (len as usize).min(BUF as usize);
        let mut hdr = [0u8; HDR];
        hdr.copy_from_slice(mem(addr, HDR));
        let num = u16::from_le_bytes([hdr[10], hdr[11]]);
        let gso = if hdr[1] == 0 {
            0
        } else {
            u16::from_le_bytes([hdr[4], hdr[5]]).max(1)
        };
        if self.features & f::MRG_RXBUF == 0 || num <= 1 {
            let data = self.finish(addr, len, &hdr).map(|l| (addr + HDR as u64, l));
            return Some(Frame {
                data,
                repost: Some(id),
                gso,
            });
        }
        // Reassemble: this buffer, then num-1 more, each posted again at once.
        let scratch = mem(SCRATCH, SCRATCH_BYTES);
        let mut at = len.min(SCRATCH_BYTES);
        scratch[..at].copy_from_slice(mem(addr, at));
        self.post(id);
        for _ in 1..num {
            let Some((id2, len2)) = self.q.wait(100_000_000) else {
                self.dropped += 1;
                return Some(Frame {
                    data: None,
                    repost: None,
                    gso,
                });
            };
            let id2 = (id2 as u16) % self.q.size();
            let a2 = RX_BUFS + u64::from(id2) * BUF;
            let l2 = (len2 as usize).min(BUF as usize).min(SCRATCH_BYTES - at);
            scratch[at..at + l2].copy_from_slice(mem(a2, l2));
            at += l2;
            self.post(id2);
        }
        let data = self
            .finish(SCRATCH, at, &hdr)
            .map(|l| (SCRATCH + HDR as u64, l));
        Some(Frame {
            data,
            repost: None,
            gso,
        })
    }

    /// Checksum handling of a frame at `addr` (`len` with the header); its length, or `None` if
    /// dropped.
    fn finish(&mut self, addr: u64, len: usize, hdr: &[u8; HDR]) -> Option<usize> {
        if len < HDR + 14 {
            self.dropped += 1;
            return None;
        }
        let frame = mem(addr + HDR as u64, len - HDR);
        if hdr[1] != 0 {
            // A segmentation offload frame: its checksum is a partial one for the whole.
            return Some(len - HDR);
        }
        if self.features & f::GUEST_CSUM != 0 && hdr[0] & NEEDS_CSUM != 0 {
            let start = usize::from(u16::from_le_bytes([hdr[6], hdr[7]]));
            let off = usize::from(u16::from_le_bytes([hdr[8], hdr[9]]));
            if !inet::complete_partial(frame, start, off) {
                self.dropped += 1;
                return None;
            }
        } else if hdr[0] & DATA_VALID == 0 && !inet::l4_checksum_ok(frame) {
            self.dropped += 1;
            return None;
        }
        Some(len - HDR)
    }
}

impl TxPart {
    fn reclaim(&mut self) {
        while let Some((id, _)) = self.q.poll() {
            let id = (id as u16) % QSIZE;
            if id >= FIRST_BIG {
                if self.big_len < self.big.len() {
                    self.big[self.big_len] = id;
                    self.big_len += 1;
                }
            } else if self.free_len < self.free.len() {
                self.free[self.free_len] = id;
                self.free_len += 1;
            }
        }
    }

    /// Whether the device takes UDP segmentation offload frames ([`Self::send_large`]).
    pub fn can_segment(&self) -> bool {
        self.features & (f::HOST_USO | f::CSUM) == f::HOST_USO | f::CSUM
    }

    /// Queues one UDP segmentation offload frame (HOST_USO) built by `build` into a large buffer;
    /// the device cuts it into datagrams of `seg` payload bytes. `build` returns the frame's length
    /// (the IPv4 and UDP lengths those of the whole), 0 to send nothing. Whether a frame was
    /// queued: `false` without HOST_USO, and while every large buffer is with the device (then
    /// the queue is kicked if it has news, and the caller may wait).
    pub fn send_large(&mut self, seg: u16, build: impl FnOnce(&mut [u8]) -> usize) -> bool {
        if !self.can_segment() || seg == 0 {
            return false;
        }
        if self.big_len == 0 {
            self.reclaim();
        }
        if self.big_len == 0 {
            if core::mem::take(&mut self.kick) && !self.q.kicks_suppressed() {
                self.q.notify();
            }
            return false;
        }
        let id = self.big[self.big_len - 1];
        let addr = BIG_BUFS + u64::from(id - FIRST_BIG) * BIG_BUF;
        let buf = mem(addr, BIG_BUF as usize);
        buf[..HDR].fill(0);
        let len = build(&mut buf[HDR..]).min(BIG_BUF as usize - HDR);
        if len == 0 {
            return false;
        }
        let buf = mem(addr, HDR + len);
        let Some((start, off)) = inet::offload_tx(&mut buf[HDR..]) else {
            return false;
        };
        self.big_len -= 1;
        buf[0] = NEEDS_CSUM;
        buf[1] = GSO_UDP_L4;
        // hdr_len: Ethernet + IPv4 + UDP headers (a hint without GUEST_HDRLEN).
        buf[2..4].copy_from_slice(&(start + 8).to_le_bytes());
        buf[4..6].copy_from_slice(&seg.to_le_bytes());
        buf[6..8].copy_from_slice(&start.to_le_bytes());
        buf[8..10].copy_from_slice(&off.to_le_bytes());
        self.q.push_one(id, addr, (HDR + len) as u32, 0);
        self.kick = true;
        self.frames += 1;
        true
    }

    /// Whether a transmit buffer is free (reclaiming finished ones first).
    pub fn has_room(&mut self) -> bool {
        if self.free_len == 0 {
            self.reclaim();
        }
        self.free_len > 0
    }

    /// Queues one frame built by `build` into a free buffer (waiting for one); `build` returns the
    /// frame's length, 0 to send nothing. Whether a frame was queued.
    pub fn send(&mut self, build: impl FnOnce(&mut [u8]) -> usize) -> bool {
        while !self.has_room() {
            core::hint::spin_loop();
        }
        let id = self.free[self.free_len - 1];
        let addr = TX_BUFS + u64::from(id) * BUF;
        let buf = mem(addr, BUF as usize);
        buf[..HDR].fill(0);
        let len = build(&mut buf[HDR..]).min(BUF as usize - HDR);
        if len == 0 {
            return false;
        }
        self.free_len -= 1;
        let buf = mem(addr, HDR + len);
        if self.features & f::CSUM != 0 {
            if let Some((start, off)) = inet::offload_tx(&mut buf[HDR..]) {
                buf[0] = NEEDS_CSUM;
                buf[6..8].copy_from_slice(&start.to_le_bytes());
                buf[8..10].copy_from_slice(&off.to_le_bytes());
            }
        }
        self.q.push_one(id, addr, (HDR + len) as u32, 0);
        self.kick = true;
        self.frames += 1;
        true
    }
}

/// One received frame: its bytes (`None` if dropped), the buffer to post again after use, its
/// `gso_size` (0 without segmentation offload).
struct Frame {
    data: Option<(u64, usize)>,
    repost: Option<u16>,
    gso: u16,
}

/// What [`Net::recv_frame`] got.
pub struct Received {
    /// Bytes copied out (0 for a frame dropped here).
    pub copied: usize,
    /// The frame's length (header stripped).
    pub len: usize,
    /// Its `gso_size`: payload bytes per datagram of a segmentation offload frame, else 0.
    pub gso: u16,
}
