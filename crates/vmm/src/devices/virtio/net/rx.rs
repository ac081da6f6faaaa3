//! The receive path: frames from the TAP straight into the driver's buffers (readv into guest
//! memory, no copy; see below for the datagrams that join a coalesced frame), virtio 1.2
//! §5.1.6.3–4.
//!
//! Each round gathers enough available chains for the largest frame the TAP may hand us (with
//! MRG_RXBUF several chains, else one) and reads one frame; the chains it did not fill stay held
//! for the next frame (the device may keep available buffers as long as it likes, virtio 1.2
//! §2.7.13), and go back to the available ring ([`Rx::release`]) before the thread answers a
//! control event, so a paused or saved device holds none. A frame larger than the gathered
//! buffers lands in a host scratch buffer behind them and is dropped (counted), as is a frame the
//! receive filter refuses. With no buffers
//! posted the worker stops reading the TAP until the driver posts some: the kernel's queue drops
//! what does not fit, the VMM never queues.
//!
//! When the driver accepts UDP segmentation frames, datagrams of one flow that the TAP already
//! holds go to the guest as one frame ([`super::coalesce`]): after a candidate frame the next
//! ones are each read whole into the scratch buffer (one plain read: cheaper in the kernel than
//! a readv into several ranges, more than the copy after it), their headers checked from there
//! and their payloads copied straight after the previous payload in the guest's buffers; a frame
//! that does not join is kept in a host buffer (`pending`) and delivered as its own frame next,
//! before the TAP is read again.

use std::io;
use std::os::fd::AsFd;

use virtio_queue::QueueT;

use super::coalesce::{self, Flow, Join, HEAD};
use super::header::{max_rx_frame, NUM_BUFFERS_OFFSET};
use super::iov::FrameIov;
use super::{features, NetShared, HDR_LEN, RX_QUEUE};
use crate::devices::virtio::mmio::MmioTransport;
use crate::vstate::memory::Direction;

/// How the receive pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxPass {
    /// The TAP has nothing more.
    Drained,
    /// The driver posted no (more) buffers: stop reading the TAP until it does.
    NoBuffers,
    /// The TAP failed (logged): stop reading it.
    Broken,
}

/// Most frames one pass reads from the TAP before returning to the event loop (fairness with
/// transmit); a coalesced frame counts its datagrams ([`Rx::moved`]).
pub const BATCH: usize = 256;

/// Guest ranges one readv gets while frames are small: with the scratch buffer behind them that is
/// 8 iovecs, which the kernel imports on its stack (UIO_FASTIOV); more cost an allocation and a
/// copy of the whole array per frame, and with segmentation offloads negotiated the device holds
/// some 33 chains for every frame. A frame larger than these ranges spills into the scratch
/// buffer and is copied into the rest; the frames after it get every range until one fits again.
pub const FAST_RANGES: usize = 7;

/// Reusable receive state of one NIC.
pub struct Rx {
    /// The gathered chains' ranges, in order; after a frame, those of the chains it did not use.
    iov: FrameIov,
    /// The gathered chains: head, bytes, number of ranges in `iov`.
    heads: Vec<(u16, usize, usize)>,
    /// Device generation the chains in `heads` were taken in.
    held_generation: u64,
    /// Bad chains met while gathering, answered (used length 0) once the lock is dropped.
    bad: Vec<(u16, String)>,
    scratch: Vec<u8>,
    /// The last frame did not fit [`FAST_RANGES`] ranges: read the next into every range.
    wide: bool,
    /// Coalescing allowed (`DOMUS_NET_RX_COALESCE`); used when the driver accepts it.
    coalesce: bool,
    /// The headers of the frame read after a coalescing candidate.
    next_head: [u8; HEAD],
    /// A frame read while coalescing that did not join: delivered next, before the TAP is read.
    pending: Vec<u8>,
    /// Its length, if there is one.
    pending_len: Option<usize>,
    /// Frames delivered.
    pub frames: u64,
    /// Frames dropped (too large for the buffers, filtered).
    pub dropped: u64,
    /// Coalesced frames delivered (each of two datagrams or more).
    pub coalesced_frames: u64,
    /// Datagrams those frames carried.
    pub coalesced_datagrams: u64,
}

impl Default for Rx {
    fn default() -> Self {
        Self::new()
    }
}

enum Gather {
    /// Chains gathered; `true` when the unused ones must go back to the ring after the frame.
    Ready(bool),
    Empty,
}

impl Rx {
    /// Buffers sized for the worst case, allocated once.
    pub fn new() -> Self {
        Self {
            iov: FrameIov::new(),
            heads: Vec::with_capacity(usize::from(super::RX_QUEUE_SIZE)),
            held_generation: 0,
            bad: Vec::with_capacity(usize::from(super::RX_QUEUE_SIZE)),
            scratch: vec![0; super::header::MAX_GSO_FRAME + HDR_LEN],
            wide: false,
            coalesce: coalesce::enabled_from_env(),
            next_head: [0; HEAD],
            pending: vec![0; super::header::MAX_GSO_FRAME + HDR_LEN],
            pending_len: None,
            frames: 0,
            dropped: 0,
            coalesced_frames: 0,
            coalesced_datagrams: 0,
        }
    }

    /// Turns receive coalescing on or off (default: `DOMUS_NET_RX_COALESCE`, on unless 0).
    pub fn set_coalescing(&mut self, on: bool) {
        self.coalesce = on;
    }

    /// Frames read from the TAP and delivered: a coalesced frame counts as its datagrams (what
    /// the receive moderation and the batch limit count, so that coalescing does not make a
    /// stream look like a trickle).
    pub fn moved(&self) -> u64 {
        self.frames - self.coalesced_frames + self.coalesced_datagrams
    }

    /// Whether a frame read while coalescing waits to be delivered (the driver posted no buffers
    /// for it yet); it is delivered before the TAP is read again.
    pub fn has_pending(&self) -> bool {
        self.pending_len.is_some()
    }

    /// Gives the chains held for the next frame back to the available ring (they are the last
    /// ones taken from it, so rewinding `next_avail` returns exactly them): before the device's
    /// state is saved or the thread pauses, so nothing is in flight.
    pub fn release(&mut self, t: &MmioTransport) {
        if self.heads.is_empty() {
            return;
        }
        let held = u16::try_from(self.heads.len()).unwrap_or(u16::MAX);
        self.heads.clear();
        self.iov.clear();
        let mut st = t.lock();
        if st.generation != self.held_generation || !st.live() {
            return;
        }
        if let Some(q) = st.queues.get_mut(RX_QUEUE) {
            q.set_next_avail(q.next_avail().wrapping_sub(held));
        }
    }

    /// Asks the driver for receive-queue kicks again (clears VIRTQ_USED_F_NO_NOTIFY) when the
    /// buffers ran out; `true` if buffers arrived meanwhile (then go on without waiting).
    pub fn want_kicks(t: &MmioTransport) -> bool {
        let mut st = t.lock();
        if !st.live() {
            return false;
        }
        let mem = t.ram().mmap();
        st.queues
            .get_mut(RX_QUEUE)
            .and_then(|q| q.enable_notification(mem).ok())
            .unwrap_or(false)
    }

    /// While buffers are posted the TAP's readiness drives receive: the driver need not kick
    /// (sets VIRTQ_USED_F_NO_NOTIFY, virtio 1.2 §2.7.10).
    pub fn no_kicks(t: &MmioTransport) {
        let mut st = t.lock();
        if !st.live() {
            return;
        }
        let mem = t.ram().mmap();
        if let Some(q) = st.queues.get_mut(RX_QUEUE) {
            let _ignored = q.disable_notification(mem);
        }
    }

    /// Moves frames from the TAP to the guest until the TAP is empty, the buffers run out or a
    /// batch is done.
    pub fn process(&mut self, t: &MmioTransport, net: &NetShared) -> RxPass {
        let start = self.moved();
        for round in 0.. {
            // A frame a coalescing attempt read is never left behind by a full batch: it goes
            // out (alone) in one more round. (Rounds count too: dropped frames move nothing.)
            let full = round >= BATCH || self.moved() - start >= BATCH as u64;
            if full && self.pending_len.is_none() {
                break;
            }
            match self.one(t, net, !full) {
                Ok(true) => {}
                Ok(false) => return RxPass::NoBuffers,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return RxPass::Drained,
                Err(e) => {
                    t.log().host_error("reading the TAP", &e);
                    return RxPass::Broken;
                }
            }
        }
        RxPass::Drained
    }

    /// Gathers chains for one frame (lock held by the caller) after those still held from the
    /// previous one: enough for `need` bytes with MRG_RXBUF, else one. A bad chain met first is
    /// queued in `bad` (answered by the caller); one met after good chains goes back to the ring
    /// (answered once those are used) and so do the unused chains after this frame
    /// (`Gather::Ready(true)`), which keeps the held chains the last ones taken from the ring.
    fn gather(
        &mut self,
        t: &MmioTransport,
        st: &mut crate::devices::virtio::mmio::TransportState,
        need: usize,
        mrg: bool,
    ) -> Gather {
        if st.generation != self.held_generation {
            self.heads.clear();
            self.iov.clear();
            self.held_generation = st.generation;
        }
        let Some(q) = st.queues.get_mut(RX_QUEUE) else {
            return Gather::Empty;
        };
        let mut put_back = false;
        while self.iov.bytes() < need && (mrg || self.heads.is_empty()) {
            let Some(chain) = q.pop_descriptor_chain(t.ram().mmap()) else {
                break;
            };
            let head = chain.head_index();
            let before = (self.iov.len(), self.iov.bytes());
            let mut bad = None;
            for d in chain {
                if !d.is_write_only() {
                    bad = Some("device-readable descriptor in a receive chain".to_owned());
                    break;
                }
                if let Err(e) = self
                    .iov
                    .push(t.ram(), d.addr(), d.len(), Direction::DeviceWrites)
                {
                    bad = Some(e.to_string());
                    break;
                }
            }
            let got = self.iov.bytes() - before.1;
            if bad.is_none() && got < HDR_LEN {
                bad = Some(format!(
                    "receive chain of {got} bytes cannot hold the header"
                ));
            }
            if let Some(why) = bad {
                self.iov.truncate(before.0);
                if self.heads.is_empty() {
                    self.bad.push((head, why));
                    continue;
                }
                // Seen again first once the chains before it are used, and answered then.
                q.set_next_avail(q.next_avail().wrapping_sub(1));
                put_back = true;
                break;
            }
            self.heads.push((head, got, self.iov.len() - before.0));
        }
        if self.heads.is_empty() {
            Gather::Empty
        } else {
            Gather::Ready(put_back)
        }
    }

    /// Answers the bad chains `gather` met.
    fn answer_bad(&mut self, t: &MmioTransport) {
        for (head, why) in self.bad.drain(..) {
            t.log().guest_error(&why);
            t.add_used(RX_QUEUE, head, self.held_generation, 0);
        }
    }

    /// One frame; `Ok(false)` when no buffers are posted. Chains gathered but not used by the
    /// frame (or by a frame that was dropped, or when the TAP had nothing) stay held for the next
    /// one: with segmentation offloads negotiated a frame may need ~33 small buffers, and taking
    /// and giving them back for every MTU-sized frame would cost more than the frame. With
    /// `may_coalesce` the frame may carry more datagrams read after it ([`Self::coalesce`]).
    fn one(&mut self, t: &MmioTransport, net: &NetShared, may_coalesce: bool) -> io::Result<bool> {
        let negotiated = net.features();
        let mrg = negotiated & features::MRG_RXBUF != 0;
        let need = HDR_LEN + max_rx_frame(net.rx_offloads(), net.mtu);
        let mut guard = t.lock();
        if !guard.live() {
            return Ok(false);
        }
        let st = &mut *guard;
        let put_back = match self.gather(t, st, need, mrg) {
            Gather::Empty => {
                drop(guard);
                let answered = !self.bad.is_empty();
                self.answer_bad(t);
                return Ok(answered);
            }
            Gather::Ready(p) => p,
        };
        drop(guard);
        self.answer_bad(t);
        let generation = self.held_generation;
        let cap = self.iov.bytes();
        let read = match self.pending_len.take() {
            Some(m) => Ok(self.place_pending(t, m, cap)),
            None => self.read_frame(t, net, cap),
        };
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                if put_back {
                    self.release(t);
                }
                return Err(e);
            }
        };
        let mut dst = [0u8; 6];
        let deliver = n <= cap
            && n >= HDR_LEN + 14
            && self.iov.read(t.ram(), HDR_LEN, &mut dst).is_some()
            && net.filter().accepts(&dst);
        if !deliver {
            if put_back {
                self.release(t);
            }
            self.dropped += 1;
            if n > cap {
                t.log().guest_error(&format_args!(
                    "dropped a {n}-byte frame: the posted receive buffers hold {cap}"
                ));
            }
            return Ok(true);
        }
        let wanted = features::GUEST_CSUM | features::GUEST_USO4;
        let n = if may_coalesce && self.coalesce && net.rx_offloads() & wanted == wanted {
            self.coalesce(t, net, n, cap)
        } else {
            n
        };
        // The chains the frame spans; the rest stay held (or go back, see `gather`).
        let mut used = 0usize;
        let mut left = n;
        while left > 0 && used < self.heads.len() {
            left = left.saturating_sub(self.heads[used].1);
            used += 1;
        }
        let used16 = u16::try_from(used).unwrap_or(u16::MAX);
        if self
            .iov
            .write(t.ram(), NUM_BUFFERS_OFFSET, &used16.to_le_bytes())
            .is_none()
        {
            t.log().guest_error(&"receive header not writable");
        }
        let mut left = n;
        let mut ranges = 0;
        for &(head, len, k) in self.heads.iter().take(used) {
            let chunk = left.min(len);
            left -= chunk;
            ranges += k;
            t.add_used(
                RX_QUEUE,
                head,
                generation,
                u32::try_from(chunk).unwrap_or(u32::MAX),
            );
        }
        self.heads.drain(..used);
        self.iov.drain_front(ranges);
        if put_back {
            self.release(t);
        }
        self.frames += 1;
        net.stats.received((n - HDR_LEN) as u64);
        Ok(true)
    }

    /// Reads one frame from the TAP into the gathered chains (`cap` bytes): into at most
    /// [`FAST_RANGES`] ranges and the scratch buffer, whose part goes into the rest of the chains
    /// after the read, or into every range after a frame that did not fit those. Its length.
    fn read_frame(&mut self, t: &MmioTransport, net: &NetShared, cap: usize) -> io::Result<usize> {
        let fast = (!self.wide && self.iov.len() > FAST_RANGES).then_some(FAST_RANGES);
        let scratch = &mut self.scratch;
        let n = if let Some(k) = fast {
            let mut v = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; FAST_RANGES + 1];
            v[..k].copy_from_slice(&self.iov.host()[..k]);
            v[k] = libc::iovec {
                iov_base: scratch.as_mut_ptr().cast(),
                iov_len: scratch.len(),
            };
            // SAFETY: as below, for the first `k` guest iovecs and the scratch buffer.
            unsafe { super::sys::readv(net.tap.as_fd(), &v) }?
        } else {
            self.iov.push_host(scratch);
            // SAFETY: the guest iovecs were checked against guest RAM (which stays mapped while
            // the transport's GuestRam lives) and the last one is our scratch buffer; all are
            // writable.
            let r = unsafe { super::sys::readv(net.tap.as_fd(), self.iov.host()) };
            self.iov.pop_host();
            r?
        };
        let fast_bytes = self.iov.prefix_bytes(FAST_RANGES);
        if let Some(k) = fast {
            let prefix = self.iov.prefix_bytes(k);
            if n > prefix {
                self.wide = true;
                let spilled = self.scratch.get(..n - prefix);
                if n <= cap
                    && spilled
                        .and_then(|b| self.iov.write(t.ram(), prefix, b))
                        .is_none()
                {
                    t.log().guest_error(&"receive buffers not writable");
                }
            }
        } else if self.wide && n <= fast_bytes {
            self.wide = false;
        }
        Ok(n)
    }

    /// Copies the pending frame of `m` bytes into the gathered chains (`cap` bytes; a larger one
    /// is dropped by the caller). Its length.
    fn place_pending(&mut self, t: &MmioTransport, m: usize, cap: usize) -> usize {
        if m <= cap
            && self
                .pending
                .get(..m)
                .and_then(|b| self.iov.write(t.ram(), 0, b))
                .is_none()
        {
            t.log().guest_error(&"receive buffers not writable");
        }
        m
    }

    /// Given a delivered frame of `n` bytes in the gathered chains (`cap` bytes), reads the frames
    /// the TAP holds after it for as long as they join its flow ([`Flow`]): each one read whole
    /// into the scratch buffer, its headers into `next_head` and its payload copied straight
    /// after the previous payload. The first that does not join is kept in `pending`, delivered
    /// next. Returns the length of the frame
    /// to deliver: `n` when nothing joined, else the coalesced frame's, its headers rewritten.
    fn coalesce(&mut self, t: &MmioTransport, net: &NetShared, n: usize, cap: usize) -> usize {
        let mut head = [0u8; HEAD];
        if n <= HEAD || self.iov.read(t.ram(), 0, &mut head).is_none() {
            return n;
        }
        let Some(mut flow) = Flow::start(&head, n) else {
            return n;
        };
        let mut end = n;
        while flow.has_room(cap - end) {
            // The whole frame into the scratch buffer with one plain read, then its payload into
            // the guest: a single-segment read costs the kernel less per datagram than a readv
            // into headers, guest ranges and scratch, more than the copy after it (Run J, Run L).
            let Ok(m) = super::sys::read(net.tap.as_fd(), &mut self.scratch) else {
                // EAGAIN: nothing more queued. Another error is met again by the next read.
                break;
            };
            // tun reports a frame's whole length even when it did not fit.
            let Some(frame) = self.scratch.get(..m) else {
                self.dropped += 1;
                break;
            };
            let h = m.min(HEAD);
            self.next_head[..h].copy_from_slice(&frame[..h]);
            let joins = m > HEAD && flow.offer(&self.next_head, m, cap - end) == Join::Yes;
            if joins {
                if self.iov.write(t.ram(), end, &frame[HEAD..]).is_none() {
                    t.log().guest_error(&"receive buffers not writable");
                }
                end += m - HEAD;
                continue;
            }
            // Not of the run: kept whole in `pending` for its own delivery next.
            match self.pending.get_mut(..m) {
                Some(p) => {
                    p.copy_from_slice(frame);
                    self.pending_len = Some(m);
                }
                None => self.dropped += 1,
            }
            break;
        }
        if flow.segments() < 2 {
            return n;
        }
        if self.iov.write(t.ram(), 0, &flow.head()).is_none() {
            t.log().guest_error(&"receive header not writable");
        }
        self.coalesced_frames += 1;
        self.coalesced_datagrams += u64::from(flow.segments());
        end
    }
}
