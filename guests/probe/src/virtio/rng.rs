//! A polling virtio-rng driver (virtio 1.2 §5.4) at CPL3: one request queue; each request is one
//! device-writable buffer the device fills with entropy (possibly only partly: the used length
//! says how much).

use super::queue::{self, SplitQueue, D_WRITE};
use super::{Transport, DEVICE_RNG};

/// Ring pages of entropy device `i` (after the block devices' 32 × 16 KiB at 8 MiB).
pub const RING_BASE: u64 = 0x88_0000;
/// Ring bytes per device.
pub const RING_STRIDE: u64 = 0x4000;
/// Queue entries asked for.
const QSIZE: u16 = 16;

/// An initialised entropy device.
pub struct Rng {
    queue: SplitQueue,
}

impl Rng {
    /// Resets the device and runs the handshake; `index` (among entropy devices) picks the ring pages.
    pub fn init(t: &Transport, index: usize) -> Result<Self, &'static str> {
        if t.device_id != DEVICE_RNG {
            return Err("not-a-virtio-rng");
        }
        if index >= 8 {
            return Err("too-many-rng-devices");
        }
        queue::negotiate(t, 0)?;
        let ring = RING_BASE + RING_STRIDE * index as u64;
        let q = SplitQueue::setup(t, 0, ring, QSIZE)?;
        queue::driver_ok(t)?;
        Ok(Self { queue: q })
    }

    /// Asks for `len` bytes into the buffer at physical `addr`; returns how many the device wrote
    /// (`None` if it never answered).
    pub fn read(&mut self, addr: u64, len: u32) -> Option<u32> {
        self.queue.push_one(0, addr, len, D_WRITE);
        self.queue.notify();
        self.queue.wait(4_000_000_000).map(|(_, n)| n)
    }
}
