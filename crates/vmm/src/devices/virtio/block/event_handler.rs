//! The virtio-blk device thread: waits on the queue's ioeventfd, pops the available requests and
//! submits reads and writes through io_uring (`uring.rs`; the thread pool `pool.rs` where io_uring is
//! unavailable); FLUSH, GET_ID, DISCARD and WRITE_ZEROES (and O_DIRECT requests with unaligned
//! buffers) run on this thread.
//!
//! FLUSH completes (status written, used entry published) only after `fdatasync` returned, so a
//! guest that saw its FLUSH complete has its earlier completed writes on stable storage.
//!
//! Control events ([`crate::threads`]): `Pause` completes everything in flight before it is
//! acknowledged and leaves notifications pending until `Resume`; `Stop` completes what is in flight
//! and ends the thread; `SaveState` answers the device model's save-state hook.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use virtio_bindings::virtio_blk as vb;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::QueueOwnedT;
use vmm_sys_util::eventfd::EventFd;

use super::backend::{Backend, SECTOR};
use super::pool;
use super::request::{self, Request, RequestError};
use super::uring::Uring;
use super::{S_IOERR, S_OK, S_UNSUPP};
use crate::devices::virtio::mmio::MmioTransport;
use crate::threads::{ThreadAck, ThreadEvent, ThreadMailbox};
use crate::vstate::memory::GuestIoVec;

/// What the device thread needs (moved into it).
pub struct Worker {
    /// Transport (queue, status, interrupt).
    pub transport: Arc<MmioTransport>,
    /// Disk, absent for an empty cdrom.
    pub backend: Option<Arc<Backend>>,
    /// Try io_uring first (else the thread pool).
    pub use_uring: bool,
    /// GET_ID answer (the vdev, NUL padded).
    pub id: [u8; request::ID_BYTES],
    /// Data descriptors allowed per request.
    pub seg_max: u32,
    /// Queue notifications.
    pub notify: EventFd,
    /// Control events.
    pub events: ThreadMailbox,
    /// Thread name (prefix of the I/O threads' names).
    pub thread_name: String,
    /// Request counters (reported by the control socket).
    pub stats: Arc<super::BlockStats>,
}

/// The running thread's state: the worker plus its I/O engine, made on the thread itself.
struct Runner {
    w: Worker,
    pool: Option<pool::Pool>,
    uring: Option<Uring>,
}

impl Worker {
    /// Runs until a `Stop` event (or the owner going away); acknowledges `Stop` last.
    pub fn run(self) {
        let uring = match &self.backend {
            Some(_) if self.use_uring => match Uring::new(u32::from(super::QUEUE_SIZE)) {
                Ok(u) => Some(u),
                Err(e) => {
                    tracing::info!(dev = %self.transport.name(), error = %e, "io_uring unavailable: using I/O threads");
                    None
                }
            },
            _ => None,
        };
        let pool = match &self.backend {
            Some(b) if uring.is_none() => {
                match pool::Pool::new(&self.thread_name, b, &self.transport) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        tracing::error!(dev = %self.transport.name(), error = %e, "cannot start the I/O threads: disk I/O runs on the device thread");
                        None
                    }
                }
            }
            _ => None,
        };
        let mut r = Runner {
            w: self,
            pool,
            uring,
        };
        r.serve();
        r.drain();
        r.w.events.ack(ThreadAck::Stopped);
    }
}

impl Runner {
    fn serve(&mut self) {
        let mut fds = [
            libc::pollfd {
                fd: self.w.notify.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.w.events.fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                // A negative fd is ignored by poll(2).
                fd: self.uring.as_ref().map_or(-1, Uring::event_fd),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        loop {
            if crate::sys::poll(&mut fds).is_err() {
                tracing::error!(dev = %self.w.transport.name(), "poll failed; device stops");
                return;
            }
            if fds[1].revents != 0 && !self.control() {
                return;
            }
            if fds[2].revents != 0 {
                self.reap();
            }
            if fds[0].revents != 0 {
                let _ignored = self.w.notify.read();
                self.process();
            }
        }
    }

    /// Serves the waiting control events; `false` when the thread must end.
    fn control(&mut self) -> bool {
        while let Some(ev) = self.w.events.try_next() {
            match ev {
                ThreadEvent::Pause => {
                    self.drain();
                    self.w.events.ack(ThreadAck::Paused);
                    let t = Arc::clone(&self.w.transport);
                    if !self.w.events.stay_paused(|| t.save_state()) {
                        return false;
                    }
                }
                ThreadEvent::Resume => self.w.events.ack(ThreadAck::Resumed),
                ThreadEvent::SaveState => {
                    let state = self.w.transport.save_state();
                    self.w.events.ack(ThreadAck::State(state));
                }
                ThreadEvent::Stop => return false,
            }
        }
        true
    }

    /// Completes everything in flight.
    fn drain(&mut self) {
        if let (Some(u), Some(b)) = (self.uring.as_mut(), self.w.backend.as_deref()) {
            u.drain(&self.w.transport, b);
        }
        if let Some(p) = &self.pool {
            p.drain();
        }
    }

    fn reap(&mut self) {
        if let (Some(u), Some(b)) = (self.uring.as_mut(), self.w.backend.as_deref()) {
            u.reap(&self.w.transport, b);
        }
    }

    /// Drains the available ring: pops chains under the transport lock, then runs them without it.
    fn process(&mut self) {
        let transport = Arc::clone(&self.w.transport);
        let t = &*transport;
        let seg_max = usize::try_from(self.w.seg_max).unwrap_or(usize::MAX);
        loop {
            let (generation, batch) = {
                let mut st = t.lock();
                if !st.live() {
                    t.log()
                        .guest_error(&"queue notified before DRIVER_OK (or after NEEDS_RESET)");
                    return;
                }
                let st = &mut *st;
                let Some(queue) = st.queues.get_mut(0) else {
                    return;
                };
                let chains = match queue.iter(t.ram().mmap()) {
                    Ok(it) => it.collect::<Vec<_>>(),
                    Err(e) => {
                        t.needs_reset(st, &format_args!("available ring unusable: {e}"));
                        return;
                    }
                };
                let mut batch = Vec::with_capacity(chains.len());
                for chain in chains {
                    let head = chain.head_index();
                    let mut descs: Vec<Descriptor> = Vec::new();
                    let mut terminated = false;
                    for d in chain {
                        terminated = !d.has_next();
                        descs.push(d);
                        if descs.len() > seg_max.saturating_add(2) {
                            break;
                        }
                    }
                    batch.push((head, descs, terminated));
                }
                (st.generation, batch)
            };
            if batch.is_empty() {
                return;
            }
            for (head, descs, terminated) in batch {
                if let Some(len) = self.execute(head, generation, &descs, terminated) {
                    t.add_used(0, head, generation, len);
                }
            }
            if let Some(u) = self.uring.as_mut() {
                u.submit(t);
            }
        }
    }

    /// Executes one chain; returns the used length, or `None` when io_uring or the pool completes it
    /// later.
    fn execute(
        &mut self,
        head: u16,
        generation: u64,
        descs: &[Descriptor],
        terminated: bool,
    ) -> Option<u32> {
        let t = Arc::clone(&self.w.transport);
        let ram = t.ram();
        let sectors = self.w.backend.as_ref().map_or(0, |b| b.sectors());
        let req = match Request::parse(descs, terminated, ram, sectors, self.w.seg_max) {
            Ok(r) => r,
            Err(e) => {
                t.log().guest_error(&e);
                if e == RequestError::Unterminated {
                    // No trustworthy status descriptor: complete with used length 0, write nothing.
                    return Some(0);
                }
                return Some(match request::status_of(descs, ram) {
                    Some(s) if ram.write_obj(S_IOERR, s).is_ok() => 1,
                    _ => 0,
                });
            }
        };
        if let Some(b) = self.w.backend.clone() {
            let rw = matches!(req.kind, vb::VIRTIO_BLK_T_IN | vb::VIRTIO_BLK_T_OUT);
            let write = req.kind == vb::VIRTIO_BLK_T_OUT;
            if rw {
                self.w.stats.count(write, req.data_len);
            }
            let aligned = req.data.iter().all(|s| s.is_aligned(512));
            if rw && !(write && b.read_only()) && (aligned || !b.direct()) {
                let segs: Vec<GuestIoVec> =
                    req.data.iter().filter(|s| !s.is_empty()).copied().collect();
                let used = if write {
                    1
                } else {
                    u32::try_from(req.data_len).unwrap_or(0).saturating_add(1)
                };
                if let Some(u) = self.uring.as_mut() {
                    let info = (head, generation, req.status, used);
                    u.push(&t, &b, segs, req.sector * SECTOR, write, info);
                    return None;
                }
                if let Some(pool) = &self.pool {
                    let pending = pool::Pending::new(head, generation, req.status, used);
                    pool.submit(&segs, req.sector * SECTOR, write, pending);
                    return None;
                }
            }
            if req.kind == vb::VIRTIO_BLK_T_FLUSH {
                // Writes completed before this FLUSH must be durable: wait for the ones in flight.
                self.drain();
            }
        }
        let (status, written) = self.run_request(&req);
        if ram.write_obj(status, req.status).is_err() {
            return Some(0);
        }
        Some(written.saturating_add(1))
    }

    fn run_request(&self, req: &Request) -> (u8, u32) {
        let log = self.w.transport.log();
        let Some(b) = &self.w.backend else {
            return match req.kind {
                vb::VIRTIO_BLK_T_GET_ID => self.get_id(req),
                _ => (S_IOERR, 0),
            };
        };
        let io = |r: std::io::Result<()>, what: &str| match r {
            Ok(()) => S_OK,
            Err(e) => {
                log.host_error(what, &e);
                S_IOERR
            }
        };
        match req.kind {
            vb::VIRTIO_BLK_T_IN | vb::VIRTIO_BLK_T_OUT => {
                let write = req.kind == vb::VIRTIO_BLK_T_OUT;
                if write && b.read_only() {
                    log.guest_error(&"write to a read-only disk");
                    return (S_IOERR, 0);
                }
                let s = io(self.transfer(b, req, write), "disk I/O");
                let n = if write || s != S_OK {
                    0
                } else {
                    u32::try_from(req.data_len).unwrap_or(0)
                };
                (s, n)
            }
            vb::VIRTIO_BLK_T_FLUSH => (io(b.flush(), "fdatasync"), 0),
            vb::VIRTIO_BLK_T_GET_ID => self.get_id(req),
            vb::VIRTIO_BLK_T_DISCARD | vb::VIRTIO_BLK_T_WRITE_ZEROES => {
                if b.read_only() {
                    return (S_IOERR, 0);
                }
                let ranges = match req.ranges(self.w.transport.ram(), b.sectors()) {
                    Ok(r) => r,
                    Err(e) => {
                        log.guest_error(&e);
                        return (S_IOERR, 0);
                    }
                };
                let zero = req.kind == vb::VIRTIO_BLK_T_WRITE_ZEROES;
                for (start, num, unmap) in ranges {
                    let r = b.discard_or_zero(start * SECTOR, num * SECTOR, zero, unmap);
                    if let Err(e) = r {
                        log.host_error("discard/write-zeroes", &e);
                        return (S_IOERR, 0);
                    }
                }
                (S_OK, 0)
            }
            other => {
                log.guest_error(&format_args!("unsupported request type {other}"));
                (S_UNSUPP, 0)
            }
        }
    }

    fn get_id(&self, req: &Request) -> (u8, u32) {
        let mut left = &self.w.id[..];
        let mut n = 0u32;
        for s in &req.data {
            let k = left.len().min(s.len());
            let (now, rest) = left.split_at(k);
            if self.w.transport.ram().write_slice(now, s.gpa()).is_err() {
                return (S_IOERR, 0);
            }
            n += u32::try_from(k).unwrap_or(0);
            left = rest;
        }
        (S_OK, n)
    }

    fn transfer(&self, b: &Backend, req: &Request, write: bool) -> std::io::Result<()> {
        let offset = req.sector * SECTOR;
        let aligned = req.data.iter().all(|s| s.is_aligned(512));
        if b.direct() && !aligned {
            return self.bounce(b, req, write, offset);
        }
        let mut iov: Vec<libc::iovec> = req
            .data
            .iter()
            .filter(|s| !s.is_empty())
            .map(GuestIoVec::as_libc)
            .collect();
        // SAFETY: every iovec was borrowed from guest RAM by `Request::parse` (checked to lie in one
        // RAM region), which stays mapped while the device thread runs (the transport holds a
        // GuestRam clone). Concurrent guest access to its own buffers is the guest's business.
        unsafe { b.transfer(write, &mut iov, offset) }
    }

    /// O_DIRECT with unaligned guest buffers: through an aligned bounce buffer.
    fn bounce(&self, b: &Backend, req: &Request, write: bool, offset: u64) -> std::io::Result<()> {
        let len = usize::try_from(req.data_len).unwrap_or(0);
        let layout = std::alloc::Layout::from_size_align(len.max(512), 4096)
            .map_err(|_layout| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        let mut buf = AlignedBuf::new(layout)?;
        let ram = self.w.transport.ram();
        let efault = |_e| std::io::Error::from_raw_os_error(libc::EFAULT);
        if write {
            let mut at = 0usize;
            for s in &req.data {
                let dst = buf.slice().get_mut(at..at + s.len()).unwrap_or_default();
                ram.read_slice(dst, s.gpa()).map_err(efault)?;
                at += s.len();
            }
        }
        let mut iov = [libc::iovec {
            iov_base: buf.ptr.cast(),
            iov_len: len,
        }];
        // SAFETY: `buf` is a live allocation of at least `len` bytes.
        unsafe { b.transfer(write, &mut iov, offset) }?;
        if !write {
            let mut at = 0usize;
            for s in &req.data {
                let src = buf.slice().get(at..at + s.len()).unwrap_or_default();
                ram.write_slice(src, s.gpa()).map_err(efault)?;
                at += s.len();
            }
        }
        Ok(())
    }
}

struct AlignedBuf {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl AlignedBuf {
    fn new(layout: std::alloc::Layout) -> std::io::Result<Self> {
        // SAFETY: `layout` has a non-zero size (at least 512).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(std::io::Error::from_raw_os_error(libc::ENOMEM));
        }
        Ok(Self { ptr, layout })
    }

    fn slice(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` is a live allocation of `layout.size()` bytes owned by `self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::block::device::BlockDevice;
    use crate::devices::virtio::test_utils::{activate_with, test_ram};
    use crate::threads::control_channel;
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestAddress;

    const NEXT: u16 = 1;
    const WRITE: u16 = 2;

    fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
    }

    fn runner(t: &Arc<MmioTransport>, backend: Option<Backend>) -> Runner {
        let (_control, events) = control_channel("blk-test").unwrap();
        Runner {
            w: Worker {
                transport: Arc::clone(t),
                backend: backend.map(Arc::new),
                use_uring: false,
                id: super::super::id_bytes("xvdz"),
                seg_max: super::super::SEG_MAX,
                notify: EventFd::new(libc::EFD_NONBLOCK).unwrap(),
                events,
                thread_name: "blk-test".into(),
                stats: Arc::default(),
            },
            pool: None,
            uring: None,
        }
    }

    fn header(ram: &crate::vstate::memory::GuestRam, at: u64, kind: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&kind.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        ram.write_slice(&h, GuestAddress(at)).unwrap();
    }

    /// Requests through the queue, executed on the device thread's path (no io_uring, no pool):
    /// GET_ID, a read from the disk image, a read past its end, and an unknown request type.
    #[test]
    fn requests_from_the_queue_complete_with_status_and_length() {
        let dir = std::env::temp_dir().join(format!("domus-blk-eh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("d.img");
        let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&img, &data).unwrap();
        let backend = Backend::open(&img, false, false).unwrap();
        let ram = test_ram(1 << 20);
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let model = BlockDevice::new(0, backend.sectors());
        let t =
            Arc::new(MmioTransport::new("blk".into(), Box::new(model), ram.clone(), irq).unwrap());
        let mock = MockSplitQueue::create(ram.mmap(), GuestAddress(0x1_0000), 16);
        activate_with(&t, 0, &[(0, &mock)]);
        header(&ram, 0x2_0000, vb::VIRTIO_BLK_T_GET_ID, 0);
        header(&ram, 0x2_0100, vb::VIRTIO_BLK_T_IN, 2);
        header(&ram, 0x2_0200, vb::VIRTIO_BLK_T_IN, 8);
        header(&ram, 0x2_0300, 99, 0);
        mock.add_desc_chains(
            &[
                desc(0x2_0000, 16, NEXT, 1),
                desc(0x3_0000, 20, NEXT | WRITE, 2),
                desc(0x4_0000, 1, WRITE, 0),
                desc(0x2_0100, 16, NEXT, 4),
                desc(0x3_1000, 1024, NEXT | WRITE, 5),
                desc(0x4_0001, 1, WRITE, 0),
                desc(0x2_0200, 16, NEXT, 7),
                desc(0x3_2000, 512, NEXT | WRITE, 8),
                desc(0x4_0002, 1, WRITE, 0),
                desc(0x2_0300, 16, NEXT, 10),
                desc(0x4_0003, 1, WRITE, 0),
            ],
            0,
        )
        .unwrap();
        let mut r = runner(&t, Some(backend));
        r.process();
        let used = mock.used();
        assert_eq!(used.idx().load(), 4);
        let lens: Vec<(u32, u32)> = (0..4)
            .map(|i| used.ring().ref_at(i).unwrap().load())
            .map(|e| (e.id(), e.len()))
            .collect();
        assert_eq!(lens, [(0, 21), (3, 1025), (6, 1), (9, 1)]);
        let mut status = [0u8; 4];
        ram.read_slice(&mut status, GuestAddress(0x4_0000)).unwrap();
        assert_eq!(status, [S_OK, S_OK, S_IOERR, S_UNSUPP]);
        // Only the read that parsed counts (the one past the end never reached the disk).
        let st = r.w.stats.snapshot();
        assert_eq!(
            (st.rd_reqs, st.rd_sectors, st.wr_reqs, st.wr_sectors),
            (1, 2, 0, 0)
        );
        let mut id = [0u8; 20];
        ram.read_slice(&mut id, GuestAddress(0x3_0000)).unwrap();
        assert_eq!(&id[..5], b"xvdz\0");
        let mut got = vec![0u8; 1024];
        ram.read_slice(&mut got, GuestAddress(0x3_1000)).unwrap();
        assert_eq!(got, data[1024..2048]);
        // The out-of-range read and the unknown type are guest errors, counted by the device's log.
        assert_eq!(t.log().guest_errors(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
