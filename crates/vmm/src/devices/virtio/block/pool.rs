//! The I/O workers of one disk: reads and writes run on a small thread pool so that requests in
//! flight at once (queue depth) reach the host in parallel, and a large request is split into
//! chunks that run in parallel too. The last chunk of a request writes its status and publishes the
//! used entry; [`Pool::drain`] waits until nothing is in flight (FLUSH does, before fdatasync).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use vm_memory::GuestAddress;

use super::backend::Backend;
use super::{S_IOERR, S_OK};
use crate::devices::virtio::mmio::MmioTransport;
use crate::threads::{self, ThreadKind};
use crate::vstate::memory::GuestIoVec;

/// Worker threads per disk.
pub const WORKERS: usize = 32;
/// Requests larger than this are split into chunks of this size.
pub const CHUNK: usize = 256 << 10;

/// A request whose chunks are in flight.
pub struct Pending {
    /// Chain head.
    pub head: u16,
    /// Transport generation when the chain was popped.
    pub generation: u64,
    /// Status byte address.
    pub status: GuestAddress,
    /// Used length on success.
    pub used_len: u32,
    left: AtomicUsize,
    failed: AtomicBool,
}

struct Io {
    iov: Vec<GuestIoVec>,
    offset: u64,
    write: bool,
    req: Arc<Pending>,
}

type Inflight = Arc<(Mutex<usize>, Condvar)>;

/// The pool.
pub struct Pool {
    tx: Option<Sender<Io>>,
    threads: Vec<JoinHandle<()>>,
    inflight: Inflight,
}

fn worker(
    rx: Arc<Mutex<Receiver<Io>>>,
    backend: Arc<Backend>,
    t: Arc<MmioTransport>,
    inflight: Inflight,
) {
    loop {
        let job = {
            let r = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            r.recv()
        };
        let Ok(job) = job else { return };
        let mut iov: Vec<libc::iovec> = job.iov.iter().map(GuestIoVec::as_libc).collect();
        // SAFETY: the iovecs were borrowed from guest RAM by `Request::parse` (checked to lie in one
        // RAM region), which the transport's GuestRam clone keeps mapped while the worker runs.
        if let Err(e) = unsafe { backend.transfer(job.write, &mut iov, job.offset) } {
            t.log().host_error("disk I/O", &e);
            job.req.failed.store(true, Ordering::SeqCst);
        }
        if job.req.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            let ok = !job.req.failed.load(Ordering::SeqCst);
            let status = if ok { S_OK } else { S_IOERR };
            let len = if ok { job.req.used_len } else { 1 };
            let (head, generation) = (job.req.head, job.req.generation);
            if t.ram().write_obj(status, job.req.status).is_ok() {
                t.add_used(0, head, generation, len);
            } else {
                t.add_used(0, head, generation, 0);
            }
            let (m, cv) = &*inflight;
            let mut n = m.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            *n = n.saturating_sub(1);
            cv.notify_all();
        }
    }
}

impl Pool {
    /// Starts the workers.
    ///
    /// # Errors
    /// A thread could not be started.
    pub fn new(
        name: &str,
        backend: &Arc<Backend>,
        t: &Arc<MmioTransport>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = channel::<Io>();
        let rx = Arc::new(Mutex::new(rx));
        let inflight: Inflight = Arc::new((Mutex::new(0), Condvar::new()));
        let mut threads = Vec::new();
        for i in 0..WORKERS {
            let (rx, b, t, f) = (
                Arc::clone(&rx),
                Arc::clone(backend),
                Arc::clone(t),
                Arc::clone(&inflight),
            );
            threads.push(threads::spawn(
                ThreadKind::Io,
                format!("{name}-io{i}"),
                move || worker(rx, b, t, f),
            )?);
        }
        Ok(Self {
            tx: Some(tx),
            threads,
            inflight,
        })
    }

    /// Queues a read or write of `segs` at byte `offset`, split into chunks of at most [`CHUNK`].
    pub fn submit(&self, segs: &[GuestIoVec], offset: u64, write: bool, req: Pending) {
        let total: usize = segs.iter().map(GuestIoVec::len).sum();
        let mut jobs: Vec<Vec<GuestIoVec>> = Vec::new();
        let mut cur: Vec<GuestIoVec> = Vec::new();
        let mut cur_len = 0usize;
        for seg in segs {
            let mut rest = *seg;
            while !rest.is_empty() {
                let room = if total > CHUNK {
                    CHUNK - cur_len
                } else {
                    rest.len()
                };
                let k = rest.len().min(room);
                cur.push(rest.head(k));
                rest = rest.tail(k);
                cur_len += k;
                if total > CHUNK && cur_len == CHUNK {
                    jobs.push(std::mem::take(&mut cur));
                    cur_len = 0;
                }
            }
        }
        if !cur.is_empty() {
            jobs.push(cur);
        }
        if jobs.is_empty() {
            jobs.push(Vec::new());
        }
        req.left.store(jobs.len(), Ordering::SeqCst);
        let req = Arc::new(req);
        {
            let (m, _) = &*self.inflight;
            *m.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
        }
        let mut at = offset;
        for iov in jobs {
            let n: usize = iov.iter().map(GuestIoVec::len).sum();
            let job = Io {
                iov,
                offset: at,
                write,
                req: Arc::clone(&req),
            };
            at += n as u64;
            if let Some(tx) = &self.tx {
                let _ignored = tx.send(job);
            }
        }
    }

    /// Waits until no request is in flight.
    pub fn drain(&self) {
        let (m, cv) = &*self.inflight;
        let mut n = m.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while *n > 0 {
            n = cv
                .wait(n)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

impl Pending {
    /// A request to complete at `head`.
    pub fn new(head: u16, generation: u64, status: GuestAddress, used_len: u32) -> Self {
        Self {
            head,
            generation,
            status,
            used_len,
            left: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.tx = None;
        for h in self.threads.drain(..) {
            let _ignored = h.join();
        }
    }
}
