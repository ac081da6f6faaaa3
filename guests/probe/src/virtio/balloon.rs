//! A CPL3 virtio-balloon driver (virtio 1.2 §5.5) serviced by the event loop: it reads the host's
//! target (`num_pages`), inflates (gives page frames of its [`PagePool`] to the host on the inflate
//! queue) or deflates (takes the highest held frames back on the deflate queue) in batches of 256
//! PFNs, writes `actual` after each batch, and once it has caught up prints
//! `PROBE balloon target_mib=<N> actual_mib=<M>` (M = N unless the pool ran out of frames). The
//! MiB figures are the e820 RAM (rounded as `hello` rounds it) minus the balloon.
//!
//! The pool is the RAM from [`POOL_BASE`] up to 3 GiB (the write-back identity map; below it live
//! the image, the stacks and the drivers' rings), less the NIC's buffers at 16-20 MiB. `touch_mib=N` on the command line
//! makes the probe a memory user: at start and after each catch-up it writes every page of the lowest N MiB of
//! free frames (never a held one), so the VMM's resident memory shows what the guest uses and that
//! inflated frames stay untouched. Frames are held lowest first, so inflating takes touched frames
//! first.
//!
//! Wake-ups: the device's configuration interrupt, routed through the IOAPIC to [`VECTOR_BALLOON`]
//! when ACPI names its GSI, and the event loop's periodic timer as a safety net.

use super::queue::{self, SplitQueue};
use super::{blk::reg, Transport};
use crate::apic::{mask_pic, IoApic, LocalApic, Route};
use crate::cmdline::Args;
use crate::event_loop::{EventLoop, Events, Flow};
use crate::io::{mmio_read32, mmio_write32};
use crate::layout::VECTOR_BALLOON;
use crate::sync::SpinLock;
use crate::Machine;
use domus_probe::memmap::E820_RAM;
use domus_probe::pagepool::PagePool;

/// Virtio device type of a memory balloon.
pub const DEVICE_BALLOON: u32 = 5;
/// Ring pages (inflate queue, then deflate queue), after the entropy devices' rings.
pub const RING_BASE: u64 = 0x8a_0000;
/// The PFN buffer of each queue (one request in flight per queue).
const PFN_BUF: [u64; 2] = [RING_BASE + 0x6000, RING_BASE + 0x7000];
/// First frame of the pool (10 MiB: the image, the stacks and every driver's rings lie below).
pub const POOL_BASE: u64 = 0xa0_0000;
/// Left out of the pool: the NIC's rings and buffers (`net-echo`) at 16 MiB.
const POOL_HOLE: (u64, u64) = (0x100_0000, 0x140_0000);
/// End of the pool (the uncached top GiB of the identity map is MMIO).
const POOL_END: u64 = 0xc000_0000;
/// Bitmap words of the pool: (3 GiB - 10 MiB) / 4 KiB / 64.
const POOL_WORDS: usize = ((POOL_END - POOL_BASE) / 4096 / 64) as usize;
/// PFNs per request (Linux's VIRTIO_BALLOON_ARRAY_PFNS_MAX).
const BATCH: u64 = 256;
/// Most batches one round of the event loop does (64 MiB), so other hooks keep running.
const BATCHES_PER_ROUND: u32 = 64;
/// Spins waiting for the device to return a request.
const WAIT_SPINS: u64 = 4_000_000_000;
/// InterruptStatus / InterruptACK.
const INTERRUPT_STATUS: u64 = 0x60;
const INTERRUPT_ACK: u64 = 0x64;

/// End of the hole (`POOL_HOLE.1` unless a scenario keeps more out: [`extend_hole`]).
static HOLE_END: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(POOL_HOLE.1);

/// Keeps RAM from the hole's start (16 MiB) up to `end` out of the pool too (a scenario's own
/// memory there, e.g. mem-soak's region); call before [`attach`].
pub fn extend_hole(end: u64) {
    HOLE_END.fetch_max(end, core::sync::atomic::Ordering::SeqCst);
}

static POOL: SpinLock<PagePool<POOL_WORDS>> = SpinLock::new(PagePool::new(POOL_BASE >> 12));
static DRIVER: SpinLock<Option<Balloon>> = SpinLock::new(None);

/// An initialised balloon.
pub struct Balloon {
    base: u64,
    queues: [SplitQueue; 2],
    ram_mib: u64,
    target: u64,
    caught_up: bool,
    touch_pages: u64,
}

impl Balloon {
    /// Resets the device, negotiates no features, sets up both queues.
    fn init(t: &Transport, ram_mib: u64, touch_mib: u64) -> Result<Self, &'static str> {
        queue::negotiate(t, 0)?;
        let inflate = SplitQueue::setup(t, 0, RING_BASE, 16)?;
        let deflate = SplitQueue::setup(t, 1, RING_BASE + queue::RING_BYTES, 16)?;
        queue::driver_ok(t)?;
        Ok(Self {
            base: t.base,
            queues: [inflate, deflate],
            ram_mib,
            // An empty balloon is where the driver starts: nothing to report until a target comes.
            target: 0,
            caught_up: true,
            touch_pages: touch_mib.saturating_mul(256),
        })
    }

    /// One request of `pfns` on queue `q` (0 inflate, 1 deflate), waited for.
    fn send(&mut self, q: usize, pfns: &[u64]) -> Result<(), &'static str> {
        let buf = PFN_BUF[q];
        for (i, &pfn) in pfns.iter().enumerate() {
            // SAFETY: the PFN buffer is a page of RAM reserved for this queue (1 KiB used).
            unsafe { ((buf + 4 * i as u64) as usize as *mut u32).write_volatile(pfn as u32) };
        }
        let queue = &mut self.queues[q];
        queue.push_one(0, buf, 4 * pfns.len() as u32, 0);
        queue.notify();
        queue.wait(WAIT_SPINS).map(|_| ()).ok_or("no-answer")
    }

    fn mib(&self, pages: u64) -> u64 {
        self.ram_mib.saturating_sub(pages / 256)
    }

    /// Follows the target by up to [`BATCHES_PER_ROUND`] batches.
    fn service(&mut self, pool: &mut PagePool<POOL_WORDS>) {
        let isr = mmio_read32(self.base + INTERRUPT_STATUS);
        if isr != 0 {
            mmio_write32(self.base + INTERRUPT_ACK, isr);
        }
        let target = u64::from(mmio_read32(self.base + reg::CONFIG));
        if target != self.target {
            self.target = target;
            self.caught_up = false;
        }
        if self.caught_up {
            return;
        }
        let mut pfns = [0u64; BATCH as usize];
        let mut short = false;
        for _ in 0..BATCHES_PER_ROUND {
            let held = pool.held_pages();
            let (q, n) = if held < target {
                let want = (target - held).min(BATCH);
                let mut n = 0;
                while n < want {
                    let Some(pfn) = pool.hold_lowest() else { break };
                    pfns[n as usize] = pfn;
                    n += 1;
                }
                short = n < want;
                (0, n)
            } else if held > target {
                let want = (held - target).min(BATCH);
                let mut n = 0;
                while n < want {
                    let Some(pfn) = pool.release_highest() else {
                        break;
                    };
                    pfns[n as usize] = pfn;
                    n += 1;
                }
                (1, n)
            } else {
                break;
            };
            if n > 0 {
                if let Err(e) = self.send(q, &pfns[..n as usize]) {
                    crate::report!("error balloon reason={e}");
                    self.caught_up = true;
                    return;
                }
                mmio_write32(self.base + reg::CONFIG + 4, pool.held_pages() as u32);
            }
            if short || n == 0 {
                break;
            }
        }
        let held = pool.held_pages();
        if held == target || short {
            self.caught_up = true;
            crate::report!(
                "balloon target_mib={} actual_mib={}",
                self.mib(target),
                self.mib(held)
            );
            touch(pool, self.touch_pages);
        }
    }
}

/// Writes one word into each of the lowest `pages` free frames.
fn touch(pool: &PagePool<POOL_WORDS>, pages: u64) {
    for pfn in pool.lowest_free(pages) {
        let a = pfn << 12;
        // SAFETY: a free frame of the pool: RAM below 3 GiB that nothing else uses.
        unsafe { (a as usize as *mut u64).write_volatile(pfn) };
    }
}

fn hook(_ev: &mut Events) -> Flow {
    DRIVER.with(|d| {
        if let Some(d) = d {
            POOL.with(|p| d.service(p));
        }
    });
    Flow::Continue
}

/// Routes the device's GSI (edge, active high: how domus-vmm and QEMU describe virtio-mmio).
fn route(machine: &Machine, gsi: u32) -> bool {
    let Some(madt) = machine.acpi.as_ref().and_then(|a| a.madt) else {
        return false;
    };
    let Some(ioapic) = madt
        .ioapics()
        .iter()
        .filter(|io| io.gsi_base <= gsi)
        .max_by_key(|io| io.gsi_base)
    else {
        return false;
    };
    let regs = IoApic::new(ioapic.addr);
    let pin = gsi - ioapic.gsi_base;
    if gsi == 0 || pin >= regs.pins() {
        return false;
    }
    let lapic = LocalApic::new(madt.lapic_addr);
    lapic.enable();
    mask_pic();
    let r = Route {
        vector: VECTOR_BALLOON,
        level: false,
        active_low: false,
        dest: lapic.id(),
    };
    regs.route(pin, &r);
    true
}

/// Finds the first balloon and registers its hook on `lp`; `Ok(false)` when the machine has none.
pub fn attach(
    lp: &mut EventLoop,
    machine: &Machine,
    args: &Args<'_>,
) -> Result<bool, &'static str> {
    let touch_mib = args.get_u64("touch_mib", 0).map_err(|_| "bad-touch-mib")?;
    let devices = super::discover(machine.acpi.as_ref());
    let Some(t) = devices.nth_of_type(DEVICE_BALLOON, 0) else {
        return Ok(false);
    };
    let Some(boot) = machine.boot.as_ref() else {
        return Err("no-memory-map");
    };
    POOL.with(|p| {
        for r in boot.memmap.regions().iter().filter(|r| r.kind == E820_RAM) {
            let start = r.addr.div_ceil(4096);
            let end = r.addr.saturating_add(r.size) / 4096;
            let hole_end = HOLE_END.load(core::sync::atomic::Ordering::SeqCst);
            let (hole_start, hole_end) = (POOL_HOLE.0 >> 12, hole_end.div_ceil(4096));
            p.add_free(start, end.min(hole_start));
            p.add_free(start.max(hole_end), end);
        }
    });
    let b = Balloon::init(t, boot.memmap.ram_mib(), touch_mib)?;
    POOL.with(|p| touch(p, b.touch_pages));
    DRIVER.with(|d| *d = Some(b));
    lp.hook("balloon", hook)?;
    route(machine, t.irq);
    lp.watch_timer(machine);
    Ok(true)
}
