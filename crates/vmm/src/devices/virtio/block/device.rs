//! The virtio-blk device thread: waits on the queue's ioeventfd, pops the available requests and
//! submits reads and writes through io_uring (`uring.rs`; the thread pool `pool.rs` where io_uring is
//! unavailable); FLUSH, GET_ID, DISCARD and
//! WRITE_ZEROES (and O_DIRECT requests with unaligned buffers) run on this thread.
//!
//! FLUSH completes (status written, used entry published) only after `fdatasync` returned, so a
//! guest that saw its FLUSH complete has its earlier completed writes on stable storage.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use virtio_queue::desc::split::Descriptor;
use virtio_queue::QueueOwnedT;
use vm_memory::Bytes;
use vmm_sys_util::eventfd::EventFd;

use super::backend::{Backend, SECTOR};
use super::pool;
use super::request::{self, Request, RequestError};
use super::uring::Uring;
use crate::devices::virtio::guest_error;
use crate::devices::virtio::mmio::MmioTransport;

/// VIRTIO_BLK_S_OK.
pub const S_OK: u8 = 0;
/// VIRTIO_BLK_S_IOERR.
pub const S_IOERR: u8 = 1;
/// VIRTIO_BLK_S_UNSUPP.
pub const S_UNSUPP: u8 = 2;

/// What the device thread needs.
pub struct Worker {
    /// Transport (queue, status, interrupt).
    pub transport: Arc<MmioTransport>,
    /// Disk, absent for an empty cdrom.
    pub backend: Option<Arc<Backend>>,
    /// Its I/O workers (when io_uring is unavailable).
    pub pool: Option<pool::Pool>,
    /// Its io_uring (preferred).
    pub uring: Option<Uring>,
    /// GET_ID answer (the vdev, NUL padded).
    pub id: [u8; request::ID_BYTES],
    /// Data descriptors allowed per request.
    pub seg_max: u32,
    /// Queue notifications.
    pub notify: EventFd,
    /// Asks the thread to exit.
    pub stop: EventFd,
}

impl Worker {
    /// Runs until `stop` is signalled.
    pub fn run(mut self) {
        let mut fds = [
            libc::pollfd {
                fd: self.notify.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.stop.as_raw_fd(),
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
            // SAFETY: `fds` is a live array of three pollfds for the duration of the call.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), 3, -1) };
            if rc < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(device = %self.transport.name(), "poll failed; device stops");
                return;
            }
            if fds[1].revents != 0 {
                if let (Some(u), Some(b)) = (self.uring.as_mut(), self.backend.as_deref()) {
                    u.drain(&self.transport, b);
                }
                return;
            }
            if fds[2].revents != 0 {
                if let (Some(u), Some(b)) = (self.uring.as_mut(), self.backend.as_deref()) {
                    u.reap(&self.transport, b);
                }
            }
            if fds[0].revents != 0 {
                let _ignored = self.notify.read();
                self.process();
            }
        }
    }

    /// Drains the available ring: pops chains under the transport lock, then runs them without it.
    pub fn process(&mut self) {
        let transport = std::sync::Arc::clone(&self.transport);
        let t = &*transport;
        loop {
            let (generation, batch) = {
                let mut st = t.lock();
                if !st.live() {
                    guest_error(
                        t.name(),
                        &"queue notified before DRIVER_OK (or after NEEDS_RESET)",
                    );
                    return;
                }
                let chains = match st.queue.iter(t.mem()) {
                    Ok(it) => it.collect::<Vec<_>>(),
                    Err(e) => {
                        t.needs_reset(&mut st, &format_args!("available ring unusable: {e}"));
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
                        if descs.len() > self.seg_max as usize + 2 {
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
                    pool::complete(t, head, generation, len);
                }
            }
            if let Some(u) = self.uring.as_mut() {
                u.submit(t);
            }
        }
    }

    /// Executes one chain; returns the used length, or `None` when the pool completes it later.
    fn execute(
        &mut self,
        head: u16,
        generation: u64,
        descs: &[Descriptor],
        terminated: bool,
    ) -> Option<u32> {
        let t = &*self.transport;
        let mem = t.mem();
        let sectors = self.backend.as_ref().map_or(0, |b| b.sectors());
        let req = match Request::parse(descs, terminated, mem, sectors, self.seg_max) {
            Ok(r) => r,
            Err(e) => {
                guest_error(t.name(), &e);
                if e == RequestError::Unterminated {
                    // No trustworthy status descriptor: complete with used length 0, write nothing.
                    return Some(0);
                }
                return Some(match request::status_of(descs, mem) {
                    Some(s) if mem.write_obj(S_IOERR, s).is_ok() => 1,
                    _ => 0,
                });
            }
        };
        if let Some(b) = &self.backend {
            let rw = matches!(req.kind, request::T_IN | request::T_OUT);
            let write = req.kind == request::T_OUT;
            let aligned = req
                .data
                .iter()
                .all(|s| (s.host as usize) % 512 == 0 && s.len % 512 == 0);
            if rw && !(write && b.read_only()) && (aligned || !b.direct()) {
                let segs: Vec<(*mut u8, usize)> = req
                    .data
                    .iter()
                    .filter(|s| s.len > 0)
                    .map(|s| (s.host, s.len as usize))
                    .collect();
                let used = if write {
                    1
                } else {
                    u32::try_from(req.data_len).unwrap_or(0).saturating_add(1)
                };
                if let Some(u) = self.uring.as_mut() {
                    let iov = segs
                        .iter()
                        .map(|&(p, l)| libc::iovec {
                            iov_base: p.cast(),
                            iov_len: l,
                        })
                        .collect();
                    let info = (head, generation, req.status, used);
                    u.push(t, b, iov, req.sector * SECTOR, write, info);
                    return None;
                }
                if let Some(pool) = &self.pool {
                    let pending = pool::Pending::new(head, generation, req.status, used);
                    pool.submit(&segs, req.sector * SECTOR, write, pending);
                    return None;
                }
            }
            if req.kind == request::T_FLUSH {
                // Writes completed before this FLUSH must be durable: wait for the ones in flight.
                if let Some(u) = self.uring.as_mut() {
                    u.drain(t, b);
                }
                if let Some(pool) = &self.pool {
                    pool.drain();
                }
            }
        }
        let (status, written) = self.run_request(&req);
        if mem.write_obj(status, req.status).is_err() {
            return Some(0);
        }
        Some(written.saturating_add(1))
    }

    fn run_request(&self, req: &Request) -> (u8, u32) {
        let name = self.transport.name();
        let Some(b) = &self.backend else {
            return match req.kind {
                request::T_GET_ID => self.get_id(req),
                _ => (S_IOERR, 0),
            };
        };
        let io = |r: std::io::Result<()>, what: &str| match r {
            Ok(()) => S_OK,
            Err(e) => {
                tracing::warn!(device = %name, error = %e, "{what} failed");
                S_IOERR
            }
        };
        match req.kind {
            request::T_IN | request::T_OUT => {
                let write = req.kind == request::T_OUT;
                if write && b.read_only() {
                    guest_error(name, &"write to a read-only disk");
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
            request::T_FLUSH => (io(b.flush(), "fdatasync"), 0),
            request::T_GET_ID => self.get_id(req),
            request::T_DISCARD | request::T_WRITE_ZEROES => {
                if b.read_only() {
                    return (S_IOERR, 0);
                }
                let ranges = match req.ranges(self.transport.mem(), b.sectors()) {
                    Ok(r) => r,
                    Err(e) => {
                        guest_error(name, &e);
                        return (S_IOERR, 0);
                    }
                };
                let zero = req.kind == request::T_WRITE_ZEROES;
                for (start, num, unmap) in ranges {
                    let r = b.discard_or_zero(start * SECTOR, num * SECTOR, zero, unmap);
                    if let Err(e) = r {
                        tracing::warn!(device = %name, error = %e, "discard/write-zeroes failed");
                        return (S_IOERR, 0);
                    }
                }
                (S_OK, 0)
            }
            other => {
                guest_error(name, &format_args!("unsupported request type {other}"));
                (S_UNSUPP, 0)
            }
        }
    }

    fn get_id(&self, req: &Request) -> (u8, u32) {
        let mut left = &self.id[..];
        let mut n = 0u32;
        for s in &req.data {
            let k = left.len().min(s.len as usize);
            let (now, rest) = left.split_at(k);
            if self
                .transport
                .mem()
                .write_slice(now, vm_memory::GuestAddress(s.gpa))
                .is_err()
            {
                return (S_IOERR, 0);
            }
            n += u32::try_from(k).unwrap_or(0);
            left = rest;
        }
        (S_OK, n)
    }

    fn transfer(&self, b: &Backend, req: &Request, write: bool) -> std::io::Result<()> {
        let offset = req.sector * SECTOR;
        let aligned = req
            .data
            .iter()
            .all(|s| (s.host as usize) % 512 == 0 && s.len % 512 == 0);
        if b.direct() && !aligned {
            return self.bounce(b, req, write, offset);
        }
        let mut iov: Vec<libc::iovec> = req
            .data
            .iter()
            .filter(|s| s.len > 0)
            .map(|s| libc::iovec {
                iov_base: s.host.cast(),
                iov_len: s.len as usize,
            })
            .collect();
        // SAFETY: every segment was resolved by `Request::parse` to host memory inside one guest RAM
        // region (`host_range`), which stays mapped while the device thread runs (it holds a clone of
        // the guest memory). Concurrent guest access to its own buffers is the guest's business.
        unsafe { b.transfer(write, &mut iov, offset) }
    }

    /// O_DIRECT with unaligned guest buffers: through an aligned bounce buffer.
    fn bounce(&self, b: &Backend, req: &Request, write: bool, offset: u64) -> std::io::Result<()> {
        let len = usize::try_from(req.data_len).unwrap_or(0);
        let layout = std::alloc::Layout::from_size_align(len.max(512), 4096)
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        let mut buf = AlignedBuf::new(layout)?;
        let mem = self.transport.mem();
        if write {
            let mut at = 0usize;
            for s in &req.data {
                let dst = buf
                    .slice()
                    .get_mut(at..at + s.len as usize)
                    .unwrap_or_default();
                mem.read_slice(dst, vm_memory::GuestAddress(s.gpa))
                    .map_err(|_| std::io::Error::from_raw_os_error(libc::EFAULT))?;
                at += s.len as usize;
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
                let src = buf.slice().get(at..at + s.len as usize).unwrap_or_default();
                mem.write_slice(src, vm_memory::GuestAddress(s.gpa))
                    .map_err(|_| std::io::Error::from_raw_os_error(libc::EFAULT))?;
                at += s.len as usize;
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
