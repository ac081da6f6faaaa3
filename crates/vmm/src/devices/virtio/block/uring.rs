//! io_uring submission of a disk's reads and writes from the device thread itself: no hand-off to
//! other threads, every request in flight at once (up to the queue size), completions reaped when the
//! ring's eventfd fires. [`Uring::drain`] waits for everything in flight (FLUSH does, before
//! fdatasync). Used when the host allows io_uring; otherwise the thread pool (`pool.rs`) serves.

use std::os::fd::{AsRawFd, RawFd};

use io_uring::{opcode, types, IoUring};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use super::backend::Backend;
use super::device::{S_IOERR, S_OK};
use super::pool::complete;
use crate::devices::virtio::mmio::MmioTransport;

struct Slot {
    iov: Vec<libc::iovec>,
    total: usize,
    offset: u64,
    write: bool,
    head: u16,
    generation: u64,
    status: GuestAddress,
    used_len: u32,
}

/// One disk's ring.
pub struct Uring {
    ring: IoUring,
    efd: EventFd,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    inflight: usize,
}

// SAFETY: the raw pointers in the slots point into guest RAM (mapped for the device's life) and into
// the slots' own iovec arrays; the ring is moved to the device thread once, before any request, and
// used only there.
unsafe impl Send for Uring {}

impl Uring {
    /// A ring of `entries` submission entries, completions signalled on an eventfd.
    ///
    /// # Errors
    /// io_uring unavailable (old kernel, seccomp, `io_uring_disabled`).
    pub fn new(entries: u32) -> std::io::Result<Self> {
        let ring = IoUring::new(entries)?;
        let efd = EventFd::new(libc::EFD_NONBLOCK)?;
        ring.submitter().register_eventfd(efd.as_raw_fd())?;
        Ok(Self {
            ring,
            efd,
            slots: Vec::new(),
            free: Vec::new(),
            inflight: 0,
        })
    }

    /// The completion eventfd.
    pub fn event_fd(&self) -> RawFd {
        self.efd.as_raw_fd()
    }

    /// Queues a readv/writev of `iov` at `offset` for the request `head`.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        t: &MmioTransport,
        b: &Backend,
        iov: Vec<libc::iovec>,
        offset: u64,
        write: bool,
        (head, generation, status, used_len): (u16, u64, GuestAddress, u32),
    ) {
        let total = iov.iter().map(|v| v.iov_len).sum();
        let slot = Slot {
            iov,
            total,
            offset,
            write,
            head,
            generation,
            status,
            used_len,
        };
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        let fd = types::Fd(b.raw_fd());
        let (ptr, n) = (
            slot.iov.as_ptr(),
            u32::try_from(slot.iov.len()).unwrap_or(0),
        );
        let entry = if write {
            opcode::Writev::new(fd, ptr, n).offset(offset).build()
        } else {
            opcode::Readv::new(fd, ptr, n).offset(offset).build()
        }
        .user_data(idx as u64);
        if let Some(s) = self.slots.get_mut(idx) {
            *s = Some(slot);
        }
        self.inflight += 1;
        for _ in 0..2 {
            // SAFETY: the iovec array lives in `self.slots[idx]` (its heap buffer does not move) until
            // the completion is reaped; the iovecs point into guest RAM resolved by `Request::parse`,
            // mapped for the life of the device.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            // Submission queue full: hand what is queued to the kernel and retry.
            self.reap(t, b);
            if let Err(e) = self.ring.submit() {
                tracing::warn!(device = %t.name(), error = %e, "io_uring submit failed");
            }
        }
        tracing::warn!(device = %t.name(), "io_uring submission queue stuck; request fails");
        if let Some(s) = self.slots.get_mut(idx).and_then(Option::take) {
            self.free.push(idx);
            self.inflight -= 1;
            finish(t, &s, false);
        }
    }

    /// Hands queued entries to the kernel.
    pub fn submit(&mut self, t: &MmioTransport) {
        if let Err(e) = self.ring.submit() {
            tracing::warn!(device = %t.name(), error = %e, "io_uring submit failed");
        }
    }

    /// Completes every finished request.
    pub fn reap(&mut self, t: &MmioTransport, b: &Backend) {
        let _ignored = self.efd.read();
        let done: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (data, res) in done {
            let idx = usize::try_from(data).unwrap_or(usize::MAX);
            let Some(mut s) = self.slots.get_mut(idx).and_then(Option::take) else {
                continue;
            };
            self.free.push(idx);
            self.inflight -= 1;
            let ok = match usize::try_from(res) {
                Ok(n) if n == s.total => true,
                Ok(n) if n > 0 => finish_short(b, &mut s, n),
                _ => {
                    let e = std::io::Error::from_raw_os_error(-res);
                    tracing::warn!(device = %t.name(), error = %e, "disk I/O failed");
                    false
                }
            };
            finish(t, &s, ok);
        }
    }

    /// Waits until nothing is in flight.
    pub fn drain(&mut self, t: &MmioTransport, b: &Backend) {
        while self.inflight > 0 {
            if let Err(e) = self.ring.submit_and_wait(1) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::warn!(device = %t.name(), error = %e, "io_uring wait failed");
                    return;
                }
            }
            self.reap(t, b);
        }
    }
}

/// A short transfer: the rest synchronously.
fn finish_short(b: &Backend, s: &mut Slot, mut n: usize) -> bool {
    let mut rest: Vec<libc::iovec> = Vec::new();
    for v in &s.iov {
        if n >= v.iov_len {
            n -= v.iov_len;
            continue;
        }
        rest.push(libc::iovec {
            iov_base: v.iov_base.cast::<u8>().wrapping_add(n).cast(),
            iov_len: v.iov_len - n,
        });
        n = 0;
    }
    let done = s.total - rest.iter().map(|v| v.iov_len).sum::<usize>();
    // SAFETY: a tail of the request's own iovecs (resolved guest RAM, see `push`).
    unsafe { b.transfer(s.write, &mut rest, s.offset + done as u64) }.is_ok()
}

fn finish(t: &MmioTransport, s: &Slot, ok: bool) {
    let status = if ok { S_OK } else { S_IOERR };
    let len = if ok { s.used_len } else { 1 };
    if t.mem().write_obj(status, s.status).is_ok() {
        complete(t, s.head, s.generation, len);
    } else {
        complete(t, s.head, s.generation, 0);
    }
}
