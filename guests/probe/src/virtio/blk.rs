//! A polling virtio-blk driver for the modern virtio-mmio transport, entirely at CPL3.
//!
//! One split virtqueue per device at a fixed physical page range ([`RING_BASE`] + 16 KiB per device);
//! request slot `k` uses descriptors 3k (header), 3k+1 (data), 3k+2 (status), so up to 64 requests
//! can be in flight (queue size 256 allows 85; we cap at [`MAX_QD`]). Interrupts are suppressed
//! (VIRTQ_AVAIL_F_NO_INTERRUPT): completions are found by polling the used ring. Data buffers are
//! physical addresses chosen by the scenarios (the identity map makes them plain pointers).

use core::sync::atomic::{fence, Ordering};

use super::Transport;
use crate::io::{mmio_read32, mmio_write32};

/// Where the rings live (after the probe image, which ends below 8 MiB).
pub const RING_BASE: u64 = 0x80_0000;
/// Ring bytes per device.
pub const RING_STRIDE: u64 = 0x4000;
/// Largest queue depth the driver uses.
pub const MAX_QD: usize = 64;
/// Queue size the driver asks for.
const QSIZE: u16 = 256;

/// Request types.
pub const T_IN: u32 = 0;
/// Write.
pub const T_OUT: u32 = 1;
/// Flush.
pub const T_FLUSH: u32 = 4;
/// Get id.
pub const T_GET_ID: u32 = 8;
/// Discard.
pub const T_DISCARD: u32 = 11;
/// Write zeroes.
pub const T_WRITE_ZEROES: u32 = 13;

/// Feature bits.
const F_RO: u64 = 1 << 5;
const F_FLUSH: u64 = 1 << 9;
const F_SIZE_MAX: u64 = 1 << 1;
const F_SEG_MAX: u64 = 1 << 2;
const F_BLK_SIZE: u64 = 1 << 6;
const F_DISCARD: u64 = 1 << 13;
const F_WRITE_ZEROES: u64 = 1 << 14;

/// Register offsets (virtio 1.2 §4.2.2).
pub mod reg {
    #![allow(missing_docs)]
    pub const DEVICE_FEATURES: u64 = 0x10;
    pub const DEVICE_FEATURES_SEL: u64 = 0x14;
    pub const DRIVER_FEATURES: u64 = 0x20;
    pub const DRIVER_FEATURES_SEL: u64 = 0x24;
    pub const QUEUE_SEL: u64 = 0x30;
    pub const QUEUE_NUM_MAX: u64 = 0x34;
    pub const QUEUE_NUM: u64 = 0x38;
    pub const QUEUE_READY: u64 = 0x44;
    pub const QUEUE_NOTIFY: u64 = 0x50;
    pub const STATUS: u64 = 0x70;
    pub const QUEUE_DESC_LOW: u64 = 0x80;
    pub const QUEUE_DESC_HIGH: u64 = 0x84;
    pub const QUEUE_AVAIL_LOW: u64 = 0x90;
    pub const QUEUE_AVAIL_HIGH: u64 = 0x94;
    pub const QUEUE_USED_LOW: u64 = 0xa0;
    pub const QUEUE_USED_HIGH: u64 = 0xa4;
    pub const CONFIG: u64 = 0x100;
}

/// Status bits.
pub const S_ACK: u32 = 1;
/// DRIVER.
pub const S_DRIVER: u32 = 2;
/// DRIVER_OK.
pub const S_DRIVER_OK: u32 = 4;
/// FEATURES_OK.
pub const S_FEATURES_OK: u32 = 8;

/// A descriptor.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Desc {
    /// Guest-physical address.
    pub addr: u64,
    /// Length.
    pub len: u32,
    /// Flags (1 NEXT, 2 WRITE).
    pub flags: u16,
    /// Next index.
    pub next: u16,
}

/// NEXT flag.
pub const D_NEXT: u16 = 1;
/// Device-writable flag.
pub const D_WRITE: u16 = 2;

/// An initialised device.
pub struct Blk {
    /// Register base.
    pub base: u64,
    /// Capacity in sectors.
    pub sectors: u64,
    /// Device offered VIRTIO_BLK_F_RO.
    pub read_only: bool,
    /// DISCARD and WRITE_ZEROES negotiated.
    pub discard: bool,
    qsize: u16,
    desc: u64,
    avail: u64,
    used: u64,
    hdrs: u64,
    status: u64,
    avail_idx: u16,
    used_seen: u16,
}

fn w8(a: u64, v: u8) {
    // SAFETY: `a` is inside this device's ring pages (identity mapped RAM owned by the driver).
    unsafe { (a as usize as *mut u8).write_volatile(v) }
}
fn w16(a: u64, v: u16) {
    // SAFETY: as for `w8`.
    unsafe { (a as usize as *mut u16).write_volatile(v) }
}
fn w32(a: u64, v: u32) {
    // SAFETY: as for `w8`.
    unsafe { (a as usize as *mut u32).write_volatile(v) }
}
fn w64(a: u64, v: u64) {
    // SAFETY: as for `w8`.
    unsafe { (a as usize as *mut u64).write_volatile(v) }
}

/// Writes a request header (type, reserved, sector) at `h` (ring pages of a device).
pub fn write_header(h: u64, kind: u32, sector: u64) {
    w32(h, kind);
    w32(h + 4, 0);
    w64(h + 8, sector);
}

fn r16(a: u64) -> u16 {
    // SAFETY: as for `w8`.
    unsafe { (a as usize as *const u16).read_volatile() }
}
fn r32(a: u64) -> u32 {
    // SAFETY: as for `w8`.
    unsafe { (a as usize as *const u32).read_volatile() }
}
fn r8(a: u64) -> u8 {
    // SAFETY: as for `w8`.
    unsafe { (a as usize as *const u8).read_volatile() }
}

/// One completion.
#[derive(Clone, Copy, Debug)]
pub struct Done {
    /// Request slot.
    pub slot: usize,
    /// Status byte (0 OK, 1 IOERR, 2 UNSUPP; 0xff if the device never wrote it).
    pub status: u8,
    /// Used length.
    pub len: u32,
}

impl Blk {
    /// Resets the device and runs the handshake; `index` picks the ring pages.
    pub fn init(t: &Transport, index: usize) -> Result<Self, &'static str> {
        if t.version != 2 || t.device_id != 2 {
            return Err("not-a-modern-virtio-blk");
        }
        let b = t.base;
        let want = super::queue::negotiate(
            t,
            F_RO | F_FLUSH | F_SIZE_MAX | F_SEG_MAX | F_BLK_SIZE | F_DISCARD | F_WRITE_ZEROES,
        )?;
        mmio_write32(b + reg::QUEUE_SEL, 0);
        let max = mmio_read32(b + reg::QUEUE_NUM_MAX);
        if max == 0 {
            return Err("no-queue");
        }
        let qsize = QSIZE.min(u16::try_from(max).unwrap_or(QSIZE));
        let ring = RING_BASE + RING_STRIDE * index as u64;
        let (desc, avail, used) = (ring, ring + 0x1000, ring + 0x2000);
        // SAFETY: the ring pages are RAM reserved for this device (16 KiB at `ring`).
        unsafe { core::ptr::write_bytes(ring as usize as *mut u8, 0, RING_STRIDE as usize) };
        mmio_write32(b + reg::QUEUE_NUM, u32::from(qsize));
        let set = |lo: u64, hi: u64, a: u64| {
            mmio_write32(b + lo, a as u32);
            mmio_write32(b + hi, (a >> 32) as u32);
        };
        set(reg::QUEUE_DESC_LOW, reg::QUEUE_DESC_HIGH, desc);
        set(reg::QUEUE_AVAIL_LOW, reg::QUEUE_AVAIL_HIGH, avail);
        set(reg::QUEUE_USED_LOW, reg::QUEUE_USED_HIGH, used);
        mmio_write32(b + reg::QUEUE_READY, 1);
        w16(avail, 1); // VIRTQ_AVAIL_F_NO_INTERRUPT
        super::queue::driver_ok(t)?;
        let sectors = u64::from(mmio_read32(b + reg::CONFIG))
            | (u64::from(mmio_read32(b + reg::CONFIG + 4)) << 32);
        Ok(Self {
            base: b,
            sectors,
            read_only: want & F_RO != 0,
            discard: want & (F_DISCARD | F_WRITE_ZEROES) == (F_DISCARD | F_WRITE_ZEROES),
            qsize,
            desc,
            avail,
            used,
            hdrs: ring + 0x3000,
            status: ring + 0x3800,
            avail_idx: 0,
            used_seen: 0,
        })
    }

    /// Device status register.
    pub fn device_status(&self) -> u32 {
        mmio_read32(self.base + reg::STATUS)
    }

    /// Writes descriptor `i`.
    pub fn set_desc(&self, i: u16, d: Desc) {
        let a = self.desc + 16 * u64::from(i % self.qsize);
        // SAFETY: inside the descriptor table page of this device.
        unsafe { (a as usize as *mut Desc).write_volatile(d) }
    }

    /// Puts chain head `head` on the available ring (no notification).
    pub fn push_avail(&mut self, head: u16) {
        let slot = u64::from(self.avail_idx % self.qsize);
        w16(self.avail + 4 + 2 * slot, head);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        fence(Ordering::SeqCst);
        w16(self.avail + 2, self.avail_idx);
        fence(Ordering::SeqCst);
    }

    /// QueueNotify (an ioeventfd under domus-vmm).
    pub fn notify(&self) {
        mmio_write32(self.base + reg::QUEUE_NOTIFY, 0);
    }

    /// Queues request slot `slot`: header, one data buffer (none if `len` is 0), status.
    pub fn queue(&mut self, slot: usize, kind: u32, sector: u64, buf: u64, len: u32) {
        let s = (slot % MAX_QD) as u16;
        let h = self.hdrs + 16 * u64::from(s);
        write_header(h, kind, sector);
        let st = self.status + u64::from(s);
        w8(st, 0xff);
        let d0 = 3 * s;
        let data_writes = kind == T_IN || kind == T_GET_ID;
        if len > 0 {
            self.set_desc(
                d0,
                Desc {
                    addr: h,
                    len: 16,
                    flags: D_NEXT,
                    next: d0 + 1,
                },
            );
            let f = D_NEXT | if data_writes { D_WRITE } else { 0 };
            self.set_desc(
                d0 + 1,
                Desc {
                    addr: buf,
                    len,
                    flags: f,
                    next: d0 + 2,
                },
            );
        } else {
            self.set_desc(
                d0,
                Desc {
                    addr: h,
                    len: 16,
                    flags: D_NEXT,
                    next: d0 + 2,
                },
            );
        }
        self.set_desc(
            d0 + 2,
            Desc {
                addr: st,
                len: 1,
                flags: D_WRITE,
                next: 0,
            },
        );
        self.push_avail(d0);
    }

    /// The next completion, if the device published one.
    pub fn poll(&mut self) -> Option<Done> {
        fence(Ordering::SeqCst);
        if r16(self.used + 2) == self.used_seen {
            return None;
        }
        let e = self.used + 4 + 8 * u64::from(self.used_seen % self.qsize);
        let id = r32(e);
        let len = r32(e + 4);
        self.used_seen = self.used_seen.wrapping_add(1);
        let slot = (id / 3) as usize;
        let status = r8(self.status + (slot % MAX_QD) as u64);
        Some(Done { slot, status, len })
    }

    /// Waits for one completion (bounded by `spins` polls; `None` if the device never answered).
    pub fn wait(&mut self, spins: u64) -> Option<Done> {
        for _ in 0..spins {
            if let Some(d) = self.poll() {
                return Some(d);
            }
            core::hint::spin_loop();
        }
        None
    }

    /// One synchronous request; returns the status byte (0xfe on timeout).
    pub fn sync(&mut self, kind: u32, sector: u64, buf: u64, len: u32) -> u8 {
        self.queue(0, kind, sector, buf, len);
        self.notify();
        self.wait(2_000_000_000).map_or(0xfe, |d| d.status)
    }

    /// Raw access for `hostile`: the status byte of slot `slot`'s status area.
    pub fn status_addr(&self, slot: usize) -> u64 {
        self.status + (slot % MAX_QD) as u64
    }

    /// Raw access for `hostile`: the header address of slot `slot`.
    pub fn header_addr(&self, slot: usize) -> u64 {
        self.hdrs + 16 * (slot % MAX_QD) as u64
    }
}

impl Blk {
    /// For `hostile`: publishes an available index `ahead` entries beyond what was queued.
    pub fn corrupt_avail_idx(&mut self, ahead: u16) {
        fence(Ordering::SeqCst);
        w16(self.avail + 2, self.avail_idx.wrapping_add(ahead));
        fence(Ordering::SeqCst);
    }
}
