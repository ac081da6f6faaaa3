//! The generic half of a CPL3 virtio-mmio driver: the status handshake with feature negotiation,
//! and one split virtqueue (virtio 1.2 §2.7) in driver-owned pages, polled (no interrupts:
//! VIRTQ_AVAIL_F_NO_INTERRUPT). Drivers (one file each) add their requests on top.

use core::sync::atomic::{fence, Ordering};

use super::Transport;
use crate::io::{mmio_read32, mmio_write32};

use super::blk::reg;

const S_ACK: u32 = 1;
const S_DRIVER: u32 = 2;
const S_DRIVER_OK: u32 = 4;
const S_FEATURES_OK: u32 = 8;
const S_NEEDS_RESET: u32 = 64;
/// VIRTIO_F_VERSION_1.
pub const F_VERSION_1: u64 = 1 << 32;
/// Descriptor flag: device-writable.
pub const D_WRITE: u16 = 2;
/// Bytes of ring memory one queue of up to 256 entries needs here (descriptors, available ring,
/// used ring: one page each); [`ring_bytes`] for larger queues.
pub const RING_BYTES: u64 = 0x3000;

const fn pages(bytes: u64) -> u64 {
    bytes.div_ceil(0x1000) * 0x1000
}

/// Bytes of ring memory a queue of `size` entries needs here: descriptors, available ring and used
/// ring, each starting on a page.
pub const fn ring_bytes(size: u16) -> u64 {
    let n = size as u64;
    pages(16 * n) + pages(6 + 2 * n) + pages(6 + 8 * n)
}

/// Resets the device and negotiates: accepts `wanted` ∩ offered (VERSION_1 is required);
/// returns the accepted features, FEATURES_OK checked.
pub fn negotiate(t: &Transport, wanted: u64) -> Result<u64, &'static str> {
    if t.version != 2 {
        return Err("not-a-modern-transport");
    }
    let b = t.base;
    mmio_write32(b + reg::STATUS, 0);
    mmio_write32(b + reg::STATUS, S_ACK);
    mmio_write32(b + reg::STATUS, S_ACK | S_DRIVER);
    mmio_write32(b + reg::DEVICE_FEATURES_SEL, 0);
    let lo = u64::from(mmio_read32(b + reg::DEVICE_FEATURES));
    mmio_write32(b + reg::DEVICE_FEATURES_SEL, 1);
    let hi = u64::from(mmio_read32(b + reg::DEVICE_FEATURES));
    let offered = lo | (hi << 32);
    if offered & F_VERSION_1 == 0 {
        return Err("no-version-1");
    }
    let accept = offered & (wanted | F_VERSION_1);
    mmio_write32(b + reg::DRIVER_FEATURES_SEL, 0);
    mmio_write32(b + reg::DRIVER_FEATURES, accept as u32);
    mmio_write32(b + reg::DRIVER_FEATURES_SEL, 1);
    mmio_write32(b + reg::DRIVER_FEATURES, (accept >> 32) as u32);
    mmio_write32(b + reg::STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
    if mmio_read32(b + reg::STATUS) & S_FEATURES_OK == 0 {
        return Err("features-refused");
    }
    Ok(accept)
}

/// Sets DRIVER_OK and checks the device took it.
pub fn driver_ok(t: &Transport) -> Result<(), &'static str> {
    let ok = S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK;
    mmio_write32(t.base + reg::STATUS, ok);
    let st = mmio_read32(t.base + reg::STATUS);
    if st & S_NEEDS_RESET != 0 || st & S_DRIVER_OK == 0 {
        return Err("driver-ok-refused");
    }
    Ok(())
}

fn w16(a: u64, v: u16) {
    // SAFETY: `a` is inside a queue's ring pages (identity-mapped RAM the driver owns).
    unsafe { (a as usize as *mut u16).write_volatile(v) }
}
fn r16(a: u64) -> u16 {
    // SAFETY: as for `w16`.
    unsafe { (a as usize as *const u16).read_volatile() }
}
fn r32(a: u64) -> u32 {
    // SAFETY: as for `w16`.
    unsafe { (a as usize as *const u32).read_volatile() }
}

/// One split virtqueue, set up between [`negotiate`] and [`driver_ok`].
pub struct SplitQueue {
    base: u64,
    index: u32,
    size: u16,
    desc: u64,
    avail: u64,
    used: u64,
    avail_idx: u16,
    used_seen: u16,
}

impl SplitQueue {
    /// Queue `index` of `t` with up to `want` entries, its rings in the [`ring_bytes`]`(want)` at
    /// `ring` ([`RING_BYTES`] for up to 256).
    pub fn setup(t: &Transport, index: u32, ring: u64, want: u16) -> Result<Self, &'static str> {
        let b = t.base;
        mmio_write32(b + reg::QUEUE_SEL, index);
        let max = mmio_read32(b + reg::QUEUE_NUM_MAX);
        if max == 0 {
            return Err("no-queue");
        }
        let size = want.min(u16::try_from(max).unwrap_or(want));
        // SAFETY: the ring pages are RAM reserved for this queue by the caller.
        unsafe { core::ptr::write_bytes(ring as usize as *mut u8, 0, ring_bytes(size) as usize) };
        let n = u64::from(size);
        let avail = ring + pages(16 * n);
        let (desc, used) = (ring, avail + pages(6 + 2 * n));
        mmio_write32(b + reg::QUEUE_NUM, u32::from(size));
        let set = |lo: u64, hi: u64, a: u64| {
            mmio_write32(b + lo, a as u32);
            mmio_write32(b + hi, (a >> 32) as u32);
        };
        set(reg::QUEUE_DESC_LOW, reg::QUEUE_DESC_HIGH, desc);
        set(reg::QUEUE_AVAIL_LOW, reg::QUEUE_AVAIL_HIGH, avail);
        set(reg::QUEUE_USED_LOW, reg::QUEUE_USED_HIGH, used);
        mmio_write32(b + reg::QUEUE_READY, 1);
        w16(avail, 1); // VIRTQ_AVAIL_F_NO_INTERRUPT
        Ok(Self {
            base: b,
            index,
            size,
            desc,
            avail,
            used,
            avail_idx: 0,
            used_seen: 0,
        })
    }

    /// Publishes a one-descriptor chain at descriptor `slot` (buffer `addr`, `len` bytes, `flags`).
    pub fn push_one(&mut self, slot: u16, addr: u64, len: u32, flags: u16) {
        let i = slot % self.size;
        let d = self.desc + 16 * u64::from(i);
        // SAFETY: descriptor `i` lies in this queue's descriptor page (size <= 256 entries).
        unsafe {
            (d as usize as *mut [u64; 2])
                .write_volatile([addr, u64::from(len) | (u64::from(flags) << 32)])
        };
        w16(
            self.avail + 4 + 2 * u64::from(self.avail_idx % self.size),
            i,
        );
        self.avail_idx = self.avail_idx.wrapping_add(1);
        fence(Ordering::SeqCst);
        w16(self.avail + 2, self.avail_idx);
        fence(Ordering::SeqCst);
    }

    /// Publishes a chain of `descs` (address, length, flags) in descriptors 0.. (one chain in
    /// flight at a time: the control queue).
    pub fn push_chain(&mut self, descs: &[(u64, u32, u16)]) {
        let n = descs.len().min(usize::from(self.size));
        for (i, &(addr, len, flags)) in descs.iter().take(n).enumerate() {
            let next = if i + 1 < n { 1u16 } else { 0 };
            let d = self.desc + 16 * i as u64;
            let word = u64::from(len) | (u64::from(flags | next) << 32) | (((i as u64) + 1) << 48);
            // SAFETY: descriptor `i` < queue size lies in this queue's descriptor page.
            unsafe { (d as usize as *mut [u64; 2]).write_volatile([addr, word]) };
        }
        w16(
            self.avail + 4 + 2 * u64::from(self.avail_idx % self.size),
            0,
        );
        self.avail_idx = self.avail_idx.wrapping_add(1);
        fence(Ordering::SeqCst);
        w16(self.avail + 2, self.avail_idx);
        fence(Ordering::SeqCst);
    }

    /// Publishes a chain of raw descriptors (address, length, flags, next) at descriptor
    /// indices 0.., whose head is `head` (for drivers that misbehave on purpose).
    pub fn push_raw(&mut self, descs: &[(u64, u32, u16, u16)], head: u16) {
        for (i, &(addr, len, flags, next)) in descs.iter().take(usize::from(self.size)).enumerate()
        {
            let d = self.desc + 16 * i as u64;
            let word = u64::from(len) | (u64::from(flags) << 32) | (u64::from(next) << 48);
            // SAFETY: descriptor `i` < queue size lies in this queue's descriptor page.
            unsafe { (d as usize as *mut [u64; 2]).write_volatile([addr, word]) };
        }
        w16(
            self.avail + 4 + 2 * u64::from(self.avail_idx % self.size),
            head,
        );
        self.avail_idx = self.avail_idx.wrapping_add(1);
        fence(Ordering::SeqCst);
        w16(self.avail + 2, self.avail_idx);
        fence(Ordering::SeqCst);
    }

    /// Entries in the queue (the smaller of what the driver wanted and the device offers).
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Whether the device asked for no kicks (VIRTQ_USED_F_NO_NOTIFY).
    pub fn kicks_suppressed(&self) -> bool {
        fence(Ordering::SeqCst);
        r16(self.used) & 1 != 0
    }

    /// QueueNotify.
    pub fn notify(&self) {
        mmio_write32(self.base + reg::QUEUE_NOTIFY, self.index);
    }

    /// The next used element (descriptor id, length), if the device published one.
    pub fn poll(&mut self) -> Option<(u32, u32)> {
        fence(Ordering::SeqCst);
        if r16(self.used + 2) == self.used_seen {
            return None;
        }
        let e = self.used + 4 + 8 * u64::from(self.used_seen % self.size);
        self.used_seen = self.used_seen.wrapping_add(1);
        Some((r32(e), r32(e + 4)))
    }

    /// Polls up to `spins` times for the next used element.
    pub fn wait(&mut self, spins: u64) -> Option<(u32, u32)> {
        for _ in 0..spins {
            if let Some(u) = self.poll() {
                return Some(u);
            }
            core::hint::spin_loop();
        }
        None
    }
}
