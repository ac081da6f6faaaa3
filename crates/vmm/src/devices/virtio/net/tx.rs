//! The transmit path: each chain (header + frame, device-readable) goes to the TAP in one writev
//! straight from guest memory, virtio 1.2 §5.1.6.2. The header is checked first
//! ([`super::header::check_tx`]); a bad chain or header is answered with used length 0 and counted,
//! never stops the device. The `rate=` limiter ([`super::rate::CreditLimiter`]) holds a chain on
//! the ring until its credit is there.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use virtio_queue::QueueT;

use super::header::{check_tx, MAX_GSO_FRAME};
use super::iov::FrameIov;
use super::rate::CreditLimiter;
use super::{NetShared, HDR_LEN, TX_QUEUE};
use crate::devices::virtio::mmio::MmioTransport;
use crate::vstate::memory::Direction;

/// How the transmit pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxPass {
    /// Nothing left on the ring.
    Idle,
    /// The rate limit is reached: try again after this long.
    Throttled(Duration),
    /// The TAP's queue is full: wait until it is writable.
    Blocked,
    /// A batch was done; more may be waiting.
    More,
}

/// Most frames one pass sends before returning to the event loop.
pub const BATCH: usize = 256;

/// Reusable transmit state of one NIC.
pub struct Tx {
    iov: FrameIov,
    /// Frames sent.
    pub frames: u64,
    /// Frames dropped (bad chain or header, refused by the kernel).
    pub dropped: u64,
}

impl Default for Tx {
    fn default() -> Self {
        Self::new()
    }
}

enum Pop {
    Empty,
    Bad(u16, u64, String),
    Frame(u16, u64),
}

impl Tx {
    /// Vectors allocated once.
    pub fn new() -> Self {
        Self {
            iov: FrameIov::new(),
            frames: 0,
            dropped: 0,
        }
    }

    fn pop(&mut self, t: &MmioTransport, net: &NetShared) -> Pop {
        let mut guard = t.lock();
        if !guard.live() {
            return Pop::Empty;
        }
        let generation = guard.generation;
        let Some(q) = guard.queues.get_mut(TX_QUEUE) else {
            return Pop::Empty;
        };
        let Some(chain) = q.pop_descriptor_chain(t.ram().mmap()) else {
            return Pop::Empty;
        };
        let head = chain.head_index();
        drop(guard);
        self.iov.clear();
        for d in chain {
            if d.is_write_only() {
                return Pop::Bad(
                    head,
                    generation,
                    "device-writable descriptor in a transmit chain".into(),
                );
            }
            if self.iov.bytes() + d.len() as usize > HDR_LEN + MAX_GSO_FRAME {
                return Pop::Bad(head, generation, "transmit chain longer than 64 KiB".into());
            }
            if let Err(e) = self
                .iov
                .push(t.ram(), d.addr(), d.len(), Direction::DeviceReads)
            {
                return Pop::Bad(head, generation, e.to_string());
            }
        }
        let mut hdr = [0u8; HDR_LEN];
        if self.iov.read(t.ram(), 0, &mut hdr).is_none() {
            return Pop::Bad(
                head,
                generation,
                "transmit chain shorter than the header".into(),
            );
        }
        let frame = self.iov.bytes() - HDR_LEN;
        if let Err(e) = check_tx(&hdr, frame, net.features(), net.mtu) {
            return Pop::Bad(head, generation, e.to_string());
        }
        Pop::Frame(head, generation)
    }

    /// Puts the chain just popped back on the ring (same device generation only).
    fn unpop(t: &MmioTransport, generation: u64) {
        let mut st = t.lock();
        if st.generation != generation {
            return;
        }
        if let Some(q) = st.queues.get_mut(TX_QUEUE) {
            q.set_next_avail(q.next_avail().wrapping_sub(1));
        }
    }

    /// Sends what the driver queued, within `limiter` (`now`: time since the limiter's origin).
    pub fn process(
        &mut self,
        t: &MmioTransport,
        net: &NetShared,
        mut limiter: Option<&mut CreditLimiter>,
        now: Duration,
    ) -> TxPass {
        for _ in 0..BATCH {
            let (head, generation) = match self.pop(t, net) {
                Pop::Empty => return TxPass::Idle,
                Pop::Bad(head, generation, why) => {
                    self.dropped += 1;
                    t.log().guest_error(&why);
                    t.add_used(TX_QUEUE, head, generation, 0);
                    continue;
                }
                Pop::Frame(h, g) => (h, g),
            };
            let frame = (self.iov.bytes() - HDR_LEN) as u64;
            if let Some(l) = limiter.as_deref_mut() {
                if let Err(wait) = l.take(frame, now) {
                    Self::unpop(t, generation);
                    return TxPass::Throttled(wait);
                }
            }
            // SAFETY: every iovec was checked against guest RAM, which stays mapped while the
            // transport's GuestRam lives; writev only reads them.
            match unsafe { super::sys::writev(net.tap.as_fd(), self.iov.host()) } {
                Ok(_) => {
                    self.frames += 1;
                    net.stats.sent(frame);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    Self::unpop(t, generation);
                    return TxPass::Blocked;
                }
                Err(e) => {
                    // EINVAL & co: the kernel refused this frame (e.g. an inconsistent GSO header).
                    self.dropped += 1;
                    t.log()
                        .guest_error(&format_args!("the TAP refused a frame: {e}"));
                }
            }
            t.add_used(TX_QUEUE, head, generation, 0);
        }
        TxPass::More
    }
}
