//! The receive path: frames from the TAP straight into the driver's buffers (readv into guest
//! memory, no copy), virtio 1.2 §5.1.6.3–4.
//!
//! Each round gathers enough available chains for the largest frame the TAP may hand us (with
//! MRG_RXBUF several chains, else one), reads one frame, and gives back to the available ring the
//! chains it did not fill. A frame larger than the gathered buffers lands in a host scratch buffer
//! behind them and is dropped (counted), as is a frame the receive filter refuses. With no buffers
//! posted the worker stops reading the TAP until the driver posts some: the kernel's queue drops
//! what does not fit, the VMM never queues.

use std::io;
use std::os::fd::AsFd;

use virtio_queue::QueueT;

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

/// Most frames one pass moves before returning to the event loop (fairness with transmit).
pub const BATCH: usize = 256;

/// Reusable receive state of one NIC.
pub struct Rx {
    iov: FrameIov,
    heads: Vec<(u16, usize)>,
    scratch: Vec<u8>,
    /// Frames delivered.
    pub frames: u64,
    /// Frames dropped (too large for the buffers, filtered).
    pub dropped: u64,
}

impl Default for Rx {
    fn default() -> Self {
        Self::new()
    }
}

enum Gather {
    Ready(u64, u16),
    Empty,
    Bad(u16, u64, String),
}

impl Rx {
    /// Buffers sized for the worst case, allocated once.
    pub fn new() -> Self {
        Self {
            iov: FrameIov::new(),
            heads: Vec::with_capacity(usize::from(super::QUEUE_SIZE)),
            scratch: vec![0; super::header::MAX_GSO_FRAME + HDR_LEN],
            frames: 0,
            dropped: 0,
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
        for _ in 0..BATCH {
            match self.one(t, net) {
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

    /// Gathers chains for one frame (lock held by the caller).
    fn gather(
        &mut self,
        t: &MmioTransport,
        st: &mut crate::devices::virtio::mmio::TransportState,
        need: usize,
        mrg: bool,
    ) -> Gather {
        let generation = st.generation;
        let Some(q) = st.queues.get_mut(RX_QUEUE) else {
            return Gather::Empty;
        };
        let start = q.next_avail();
        self.iov.clear();
        self.heads.clear();
        while self.iov.bytes() < need {
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
                    return Gather::Bad(head, generation, why);
                }
                // Seen again first next round, and answered then.
                q.set_next_avail(q.next_avail().wrapping_sub(1));
                break;
            }
            self.heads.push((head, got));
            if !mrg {
                break;
            }
        }
        if self.heads.is_empty() {
            Gather::Empty
        } else {
            Gather::Ready(generation, start)
        }
    }

    /// One frame; `Ok(false)` when no buffers are posted.
    fn one(&mut self, t: &MmioTransport, net: &NetShared) -> io::Result<bool> {
        let negotiated = net.features();
        let mrg = negotiated & features::MRG_RXBUF != 0;
        let need = HDR_LEN + max_rx_frame(net.rx_offloads(), net.mtu);
        let mut guard = t.lock();
        if !guard.live() {
            return Ok(false);
        }
        let st = &mut *guard;
        let (generation, start) = match self.gather(t, st, need, mrg) {
            Gather::Empty => return Ok(false),
            Gather::Bad(head, generation, why) => {
                drop(guard);
                t.log().guest_error(&why);
                t.add_used(RX_QUEUE, head, generation, 0);
                return Ok(true);
            }
            Gather::Ready(g, s) => (g, s),
        };
        let cap = self.iov.bytes();
        let scratch = &mut self.scratch;
        self.iov.push_host(scratch);
        // SAFETY: the guest iovecs were checked against guest RAM (which stays mapped while the
        // transport's GuestRam lives) and the last one is our scratch buffer; all are writable.
        let read = unsafe { super::sys::readv(net.tap.as_fd(), self.iov.host()) };
        self.iov.pop_host();
        let q = st
            .queues
            .get_mut(RX_QUEUE)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                q.set_next_avail(start);
                return Err(e);
            }
        };
        let mut dst = [0u8; 6];
        let deliver = n <= cap
            && n >= HDR_LEN + 14
            && self.iov.read(t.ram(), HDR_LEN, &mut dst).is_some()
            && net.filter().accepts(&dst);
        if !deliver {
            q.set_next_avail(start);
            drop(guard);
            self.dropped += 1;
            if n > cap {
                t.log().guest_error(&format_args!(
                    "dropped a {n}-byte frame: the posted receive buffers hold {cap}"
                ));
            }
            return Ok(true);
        }
        // The chains the frame spans; the rest go back to the available ring.
        let mut used = 0usize;
        let mut left = n;
        while left > 0 && used < self.heads.len() {
            left = left.saturating_sub(self.heads[used].1);
            used += 1;
        }
        let used16 = u16::try_from(used).unwrap_or(u16::MAX);
        q.set_next_avail(start.wrapping_add(used16));
        drop(guard);
        if self
            .iov
            .write(t.ram(), NUM_BUFFERS_OFFSET, &used16.to_le_bytes())
            .is_none()
        {
            t.log().guest_error(&"receive header not writable");
        }
        let mut left = n;
        for &(head, len) in self.heads.iter().take(used) {
            let k = left.min(len);
            left -= k;
            t.add_used(
                RX_QUEUE,
                head,
                generation,
                u32::try_from(k).unwrap_or(u32::MAX),
            );
        }
        self.frames += 1;
        net.stats.received((n - HDR_LEN) as u64);
        Ok(true)
    }
}
