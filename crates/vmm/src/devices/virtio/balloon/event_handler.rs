//! The virtio-balloon device thread: takes the page-frame lists the driver puts on the inflate queue
//! (queue 0) and the deflate queue (queue 1) (virtio 1.2 §5.5.6: each device-readable buffer is an
//! array of le32 page frame numbers of 4 KiB pages).
//!
//! Inflate: every PFN inside guest RAM is returned to the host ([`GuestRam::discard`]: MADV_DONTNEED
//! on anonymous memory, a punched hole on a memfd); runs of consecutive PFNs go back in one call.
//! Deflate: nothing to do for the memory (a discarded page is zero-fill-on-demand again, which is why
//! the device does not need VIRTIO_BALLOON_F_MUST_TELL_HOST); the pages only leave the count. A PFN
//! outside guest RAM, a device-writable buffer or a length that is not a multiple of 4 is a guest
//! mistake: skipped, counted ([`BalloonShared::bad_pfns`]) and logged through the transport's
//! rate-limited [`crate::devices::guest_log::GuestLog`]; the request still completes.
//!
//! Control events as for the other devices ([`crate::threads`]); requests are served synchronously,
//! so nothing is in flight when `Pause` is acknowledged.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use virtio_queue::QueueOwnedT;
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::EventFd;

use super::device::BalloonShared;
use crate::devices::virtio::mmio::MmioTransport;
use crate::threads::{ThreadAck, ThreadMailbox};
use crate::vstate::memory::GuestRam;

/// The balloon's page size (VIRTIO_BALLOON_PFN_SHIFT = 12, whatever the guest's page size).
pub const PAGE: u64 = 4096;
const PAGE_BYTES: usize = 4096;
/// Inflate queue index.
pub const INFLATE: usize = 0;
/// Deflate queue index.
pub const DEFLATE: usize = 1;
/// Most PFN bytes read from one buffer (Linux sends at most 256 PFNs per request).
const MAX_BUFFER: u32 = 64 << 10;

/// What one queue pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Requests completed.
    pub requests: u64,
    /// Valid PFNs handled.
    pub pages: u64,
    /// PFNs ignored (outside RAM).
    pub bad: u64,
}

/// Applies `pfns` for queue `queue`: inflate discards runs of consecutive valid frames.
fn apply(t: &MmioTransport, shared: &BalloonShared, queue: usize, pfns: &[u32], pass: &mut Pass) {
    let ram = t.ram();
    let mut run: Option<(u64, u64)> = None; // (first pfn, count)
    let flush = |run: Option<(u64, u64)>| {
        if let Some((first, n)) = run {
            discard(t, ram, first, n);
        }
    };
    for &pfn in pfns {
        let pfn = u64::from(pfn);
        let gpa = GuestAddress(pfn * PAGE);
        if !ram.is_ram(gpa, PAGE_BYTES) {
            pass.bad += 1;
            shared.bad_pfns.fetch_add(1, Ordering::Relaxed);
            t.log().guest_error(&format_args!(
                "balloon PFN {pfn:#x} (address {:#x}) is outside guest RAM: ignored",
                gpa.0
            ));
            continue;
        }
        pass.pages += 1;
        if queue == INFLATE {
            shared.inflated_pages.fetch_add(1, Ordering::Relaxed);
            run = match run {
                Some((first, n)) if first + n == pfn => Some((first, n + 1)),
                other => {
                    flush(other);
                    Some((pfn, 1))
                }
            };
        } else {
            // Saturating: a deflate of a page never inflated (or inflated before a reset) is harmless.
            let _ignored =
                shared
                    .inflated_pages
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                        Some(v.saturating_sub(1))
                    });
        }
    }
    flush(run);
}

/// Returns `n` pages from `first` to the host (a run inside one region; split at region ends).
fn discard(t: &MmioTransport, ram: &GuestRam, first: u64, n: u64) {
    let mut start = first;
    let end = first + n;
    while start < end {
        // The largest prefix inside one region: is_ram checks a single region.
        let mut len = end - start;
        while len > 1
            && !ram.is_ram(
                GuestAddress(start * PAGE),
                usize::try_from(len * PAGE).unwrap_or(usize::MAX),
            )
        {
            len /= 2;
        }
        let bytes = usize::try_from(len * PAGE).unwrap_or(0);
        if let Err(e) = ram.discard(GuestAddress(start * PAGE), bytes) {
            t.log()
                .host_error("returning balloon pages to the host", &e);
        }
        start += len;
    }
}

/// Serves the chains available on queue `queue` (inflate or deflate).
pub fn process(t: &MmioTransport, shared: &BalloonShared, queue: usize) -> Pass {
    let mut pass = Pass::default();
    loop {
        let (generation, head, pfns) = {
            let mut st = t.lock();
            if !st.live() {
                t.log()
                    .guest_error(&"queue notified before DRIVER_OK (or after NEEDS_RESET)");
                return pass;
            }
            let st = &mut *st;
            let Some(q) = st.queues.get_mut(queue) else {
                return pass;
            };
            let mut iter = match q.iter(t.ram().mmap()) {
                Ok(it) => it,
                Err(e) => {
                    t.needs_reset(st, &format_args!("available ring unusable: {e}"));
                    return pass;
                }
            };
            let Some(chain) = iter.next() else {
                return pass;
            };
            let head = chain.head_index();
            let mut pfns = Vec::new();
            for d in chain {
                if d.is_write_only() {
                    t.log()
                        .guest_error(&"device-writable descriptor in a balloon request");
                    continue;
                }
                let len = d.len().min(MAX_BUFFER);
                if len % 4 != 0 {
                    t.log().guest_error(&format_args!(
                        "balloon buffer of {len} bytes is not a whole number of PFNs"
                    ));
                }
                let mut buf = vec![0u8; (len / 4 * 4) as usize];
                if t.ram().read_slice(&mut buf, d.addr()).is_err() {
                    t.log().guest_error(&format_args!(
                        "balloon buffer at {:#x} (+{len}) is outside guest RAM",
                        d.addr().0
                    ));
                    continue;
                }
                pfns.extend(
                    buf.chunks_exact(4)
                        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                );
            }
            (st.generation, head, pfns)
        };
        apply(t, shared, queue, &pfns, &mut pass);
        pass.requests += 1;
        t.add_used(queue, head, generation, 0);
    }
}

/// What the device thread needs (moved into it).
pub struct Worker {
    /// Transport (queues, status, interrupt).
    pub transport: Arc<MmioTransport>,
    /// Target, actual and counters.
    pub shared: Arc<BalloonShared>,
    /// Queue notifications (inflate, deflate).
    pub notify: Vec<EventFd>,
    /// Control events.
    pub events: ThreadMailbox,
}

impl Worker {
    /// Runs until a `Stop` event (or the owner going away); acknowledges `Stop` last.
    pub fn run(self) {
        let mut fds: Vec<libc::pollfd> = self
            .notify
            .iter()
            .map(AsRawFd::as_raw_fd)
            .chain([self.events.fd()])
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let control = fds.len() - 1;
        loop {
            if crate::sys::poll(&mut fds).is_err() {
                tracing::error!(dev = %self.transport.name(), "poll failed; device stops");
                break;
            }
            if fds[control].revents != 0
                && !self.events.serve_waiting(|| self.transport.save_state())
            {
                break;
            }
            for (queue, fd) in self.notify.iter().enumerate() {
                if fds[queue].revents != 0 {
                    let _ignored = fd.read();
                    let pass = process(&self.transport, &self.shared, queue);
                    tracing::debug!(dev = %self.transport.name(), queue, ?pass, "balloon pass");
                }
            }
        }
        self.events.ack(ThreadAck::Stopped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::balloon::device::BalloonDevice;
    use crate::devices::virtio::test_utils::{activate_with, test_ram};
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;

    const WRITE: u16 = 2;

    fn desc(addr: u64, len: u32, flags: u16) -> RawDescriptor {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
    }

    fn resident(ram: &GuestRam, gpa: u64) -> bool {
        use vm_memory::{GuestMemoryBackend as _, GuestMemoryRegion as _};
        let r = ram.mmap().find_region(GuestAddress(gpa)).unwrap();
        let off = gpa - r.start_addr().0;
        let host = r
            .get_host_address(vm_memory::MemoryRegionAddress(off))
            .unwrap();
        let mut v = [0u8; 1];
        // SAFETY: test: mincore on one page of a live mapping.
        let rc = unsafe { libc::mincore(host.cast(), 4096, v.as_mut_ptr()) };
        assert_eq!(rc, 0);
        v[0] & 1 != 0
    }

    fn pfn_list(ram: &GuestRam, at: u64, pfns: &[u32]) -> u32 {
        let bytes: Vec<u8> = pfns.iter().flat_map(|p| p.to_le_bytes()).collect();
        ram.write_slice(&bytes, GuestAddress(at)).unwrap();
        u32::try_from(bytes.len()).unwrap()
    }

    #[test]
    fn inflate_returns_pages_deflate_counts_and_bad_pfns_are_ignored() {
        let ram = test_ram(4 << 20);
        let shared = Arc::new(BalloonShared::default());
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let t = MmioTransport::new(
            "balloon".into(),
            Box::new(BalloonDevice::new(Arc::clone(&shared))),
            ram.clone(),
            irq,
        )
        .unwrap();
        let mem = ram.mmap();
        let inflate = MockSplitQueue::create(mem, GuestAddress(0x1_0000), 16);
        let deflate = MockSplitQueue::create(mem, GuestAddress(0x2_0000), 16);
        activate_with(&t, 0, &[(0, &inflate), (1, &deflate)]);
        // Guest pages 0x200..0x204 hold data.
        ram.write_slice(&[9u8; 4 * 4096], GuestAddress(0x20_0000))
            .unwrap();
        assert!(resident(&ram, 0x20_0000));
        // Inflate 0x200, 0x201, 0x203 and two PFNs outside the 4 MiB of RAM (one far out).
        let n = pfn_list(&ram, 0x3_0000, &[0x200, 0x201, 0x203, 0x400, u32::MAX]);
        inflate.add_desc_chains(&[desc(0x3_0000, n, 0)], 0).unwrap();
        let pass = process(&t, &shared, INFLATE);
        assert_eq!(
            pass,
            Pass {
                requests: 1,
                pages: 3,
                bad: 2
            }
        );
        assert_eq!(inflate.used().idx().load(), 1);
        assert!(!resident(&ram, 0x20_0000));
        assert!(!resident(&ram, 0x20_1000));
        assert!(resident(&ram, 0x20_2000), "not inflated: kept");
        assert!(!resident(&ram, 0x20_3000));
        assert_eq!(ram.read_obj::<u8>(GuestAddress(0x20_2000)).unwrap(), 9);
        assert_eq!(shared.inflated_pages.load(Ordering::SeqCst), 3);
        assert_eq!(shared.bad_pfns.load(Ordering::SeqCst), 2);
        assert_eq!(t.log().guest_errors(), 2);
        // Deflate two of them; a writable buffer and an odd length are guest mistakes, not fatal.
        let n = pfn_list(&ram, 0x3_1000, &[0x200, 0x201]);
        deflate
            .add_desc_chains(&[desc(0x3_1000, n + 2, 0), desc(0x3_2000, 8, WRITE)], 0)
            .unwrap();
        let pass = process(&t, &shared, DEFLATE);
        assert_eq!(pass.requests, 2);
        assert_eq!(pass.pages, 2);
        assert_eq!(deflate.used().idx().load(), 2);
        assert_eq!(shared.inflated_pages.load(Ordering::SeqCst), 1);
        // The guest may use a deflated page again: it reads zeros.
        assert_eq!(ram.read_obj::<u8>(GuestAddress(0x20_0000)).unwrap(), 0);
        assert!(t.log().guest_errors() >= 4);
        // A buffer outside RAM completes the request without touching anything.
        inflate
            .add_desc_chains(&[desc(0x7fff_0000, 8, 0)], 1)
            .unwrap();
        let pass = process(&t, &shared, INFLATE);
        assert_eq!((pass.requests, pass.pages), (1, 0));
        assert_eq!(inflate.used().idx().load(), 2);
    }

    #[test]
    fn nothing_is_served_before_driver_ok() {
        let ram = test_ram(1 << 20);
        let shared = Arc::new(BalloonShared::default());
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let t = MmioTransport::new(
            "balloon".into(),
            Box::new(BalloonDevice::new(Arc::clone(&shared))),
            ram,
            irq,
        )
        .unwrap();
        assert_eq!(process(&t, &shared, INFLATE), Pass::default());
        assert_eq!(t.log().guest_errors(), 1);
    }
}
