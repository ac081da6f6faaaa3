//! io_uring submission of a disk's reads and writes from the device thread itself: no hand-off to
//! other threads, every request in flight at once (up to the queue size), completions reaped when the
//! ring's eventfd fires. [`Uring::drain`] waits for everything in flight (FLUSH does, before
//! fdatasync). Used when the host allows io_uring; otherwise the thread pool (`pool.rs`) serves.
//!
//! The ring is created on the device thread and never leaves it (its slots hold the iovec arrays the
//! kernel reads, so it is deliberately not `Send`).

use std::os::fd::{AsRawFd, RawFd};

use io_uring::{opcode, types, IoUring};
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::EventFd;

use super::backend::Backend;
use super::{S_IOERR, S_OK};
use crate::devices::virtio::mmio::MmioTransport;
use crate::vstate::memory::GuestIoVec;

struct Slot {
    /// The borrowed guest ranges (kept so a short transfer can finish from them).
    segs: Vec<GuestIoVec>,
    /// What the kernel reads: `segs` as `struct iovec`s (this heap buffer does not move).
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

impl Uring {
    /// A ring of `entries` submission entries, completions signalled on an eventfd.
    ///
    /// # Errors
    /// io_uring unavailable (old kernel, seccomp, `io_uring_disabled`).
    pub fn new(entries: u32) -> std::io::Result<Self> {
        // io_uring submissions are not system calls, so no seccomp filter sees them: the ring is
        // created disabled and restricted to the two operations this device submits (readv and
        // writev, no SQE flags) and to no further io_uring_register calls, then enabled.
        let ring = IoUring::builder().setup_r_disabled().build(entries)?;
        let efd = EventFd::new(libc::EFD_NONBLOCK)?;
        ring.submitter().register_eventfd(efd.as_raw_fd())?;
        let mut allowed = [
            io_uring::register::Restriction::sqe_op(opcode::Readv::CODE),
            io_uring::register::Restriction::sqe_op(opcode::Writev::CODE),
        ];
        ring.submitter().register_restrictions(&mut allowed)?;
        ring.submitter().register_enable_rings()?;
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

    /// Queues a readv/writev of `segs` at `offset` for the request `head`.
    pub fn push(
        &mut self,
        t: &MmioTransport,
        b: &Backend,
        segs: Vec<GuestIoVec>,
        offset: u64,
        write: bool,
        (head, generation, status, used_len): (u16, u64, GuestAddress, u32),
    ) {
        let total = segs.iter().map(GuestIoVec::len).sum();
        let iov = segs.iter().map(GuestIoVec::as_libc).collect();
        let slot = Slot {
            segs,
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
        .user_data(u64::try_from(idx).unwrap_or(u64::MAX));
        if let Some(s) = self.slots.get_mut(idx) {
            *s = Some(slot);
        }
        self.inflight += 1;
        for _ in 0..2 {
            // SAFETY: the iovec array lives in `self.slots[idx]` (its heap buffer does not move) until
            // the completion is reaped; the iovecs are guest RAM borrowed by `Request::parse`, mapped
            // while the transport's GuestRam lives.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            // Submission queue full: hand what is queued to the kernel and retry.
            self.reap(t, b);
            if let Err(e) = self.ring.submit() {
                t.log().host_error("io_uring submit", &e);
            }
        }
        t.log().host_error(
            "io_uring submission",
            &"submission queue stuck; request fails",
        );
        if let Some(s) = self.slots.get_mut(idx).and_then(Option::take) {
            self.free.push(idx);
            self.inflight -= 1;
            finish(t, &s, false);
        }
    }

    /// Hands queued entries to the kernel.
    pub fn submit(&mut self, t: &MmioTransport) {
        if let Err(e) = self.ring.submit() {
            t.log().host_error("io_uring submit", &e);
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
            let Some(s) = self.slots.get_mut(idx).and_then(Option::take) else {
                continue;
            };
            self.free.push(idx);
            self.inflight -= 1;
            let ok = match usize::try_from(res) {
                Ok(n) if n == s.total => true,
                Ok(n) if n > 0 => finish_short(b, &s, n),
                _ => {
                    let e = std::io::Error::from_raw_os_error(res.saturating_neg());
                    t.log().host_error("disk I/O", &e);
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
                    t.log().host_error("io_uring wait", &e);
                    return;
                }
            }
            self.reap(t, b);
        }
    }
}

/// A short transfer: the rest synchronously.
fn finish_short(b: &Backend, s: &Slot, n: usize) -> bool {
    let mut skip = n;
    let mut rest: Vec<libc::iovec> = Vec::new();
    for seg in &s.segs {
        if skip >= seg.len() {
            skip -= seg.len();
            continue;
        }
        rest.push(seg.tail(skip).as_libc());
        skip = 0;
    }
    let done = s.total - rest.iter().map(|v| v.iov_len).sum::<usize>();
    // SAFETY: tails of the request's own borrowed guest ranges (see `push`).
    unsafe { b.transfer(s.write, &mut rest, s.offset + done as u64) }.is_ok()
}

fn finish(t: &MmioTransport, s: &Slot, ok: bool) {
    let status = if ok { S_OK } else { S_IOERR };
    let len = if ok { s.used_len } else { 1 };
    if t.ram().write_obj(status, s.status).is_ok() {
        t.add_used(0, s.head, s.generation, len);
    } else {
        t.add_used(0, s.head, s.generation, 0);
    }
}
