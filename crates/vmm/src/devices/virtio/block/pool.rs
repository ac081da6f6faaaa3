//! The I/O workers of one disk: reads and writes run on a small thread pool so that requests in
//! flight at once (queue depth) reach the host in parallel, and a large request is split into
//! chunks that run in parallel too. The last chunk of a request writes its status and publishes the
//! used entry; [`Pool::drain`] waits until nothing is in flight (FLUSH does, before fdatasync).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use vm_memory::{Bytes, GuestAddress};

use super::backend::Backend;
use super::device::{S_IOERR, S_OK};
use crate::devices::virtio::mmio::{MmioTransport, INT_VRING};

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
    iov: Vec<libc::iovec>,
    offset: u64,
    write: bool,
    req: Arc<Pending>,
}

// SAFETY: the iovecs point into the guest RAM mapping, which the transport's `GuestMem` clone keeps
// mapped for as long as any worker runs (workers are joined before the transport is dropped); they
// are only used by the one worker that receives the job.
unsafe impl Send for Io {}

type Inflight = Arc<(Mutex<usize>, Condvar)>;

/// The pool.
pub struct Pool {
    tx: Option<Sender<Io>>,
    threads: Vec<JoinHandle<()>>,
    inflight: Inflight,
}

/// Publishes a used entry (unless the device was reset since the chain was popped) and interrupts
/// unless the driver asked for none.
pub fn complete(t: &MmioTransport, head: u16, generation: u64, len: u32) {
    use virtio_queue::QueueT;
    let mem = t.mem();
    let mut st = t.lock();
    if st.generation != generation || !st.live() {
        return;
    }
    if let Err(e) = st.queue.add_used(mem, head, len) {
        t.needs_reset(&mut st, &format_args!("used ring unusable: {e}"));
        return;
    }
    // VIRTQ_AVAIL_F_NO_INTERRUPT (virtio-queue leaves this flag to the device).
    let flags: u16 = mem
        .read_obj(GuestAddress(st.queue.avail_ring()))
        .unwrap_or(0);
    if flags & 1 == 0 && st.queue.needs_notification(mem).unwrap_or(true) {
        t.interrupt(&mut st, INT_VRING);
    }
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
        let Ok(mut job) = job else { return };
        // SAFETY: see `impl Send for Io`: the iovecs are resolved guest RAM (checked by
        // `Request::parse`), valid while the worker runs.
        if let Err(e) = unsafe { backend.transfer(job.write, &mut job.iov, job.offset) } {
            tracing::warn!(device = %t.name(), error = %e, "disk I/O failed");
            job.req.failed.store(true, Ordering::SeqCst);
        }
        if job.req.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            let ok = !job.req.failed.load(Ordering::SeqCst);
            let status = if ok { S_OK } else { S_IOERR };
            let len = if ok { job.req.used_len } else { 1 };
            if t.mem().write_obj(status, job.req.status).is_ok() {
                complete(&t, job.req.head, job.req.generation, len);
            } else {
                complete(&t, job.req.head, job.req.generation, 0);
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
            threads.push(
                std::thread::Builder::new()
                    .name(format!("{name}-io{i}"))
                    .spawn(move || worker(rx, b, t, f))?,
            );
        }
        Ok(Self {
            tx: Some(tx),
            threads,
            inflight,
        })
    }

    /// Queues a read or write of `segs` (host pointer, length) at byte `offset`, split into chunks.
    pub fn submit(&self, segs: &[(*mut u8, usize)], offset: u64, write: bool, req: Pending) {
        let total: usize = segs.iter().map(|s| s.1).sum();
        let mut jobs: Vec<Vec<libc::iovec>> = Vec::new();
        let mut cur: Vec<libc::iovec> = Vec::new();
        let mut cur_len = 0usize;
        for &(mut p, mut len) in segs {
            while len > 0 {
                let room = if total > CHUNK { CHUNK - cur_len } else { len };
                let k = len.min(room);
                cur.push(libc::iovec {
                    iov_base: p.cast(),
                    iov_len: k,
                });
                p = p.wrapping_add(k);
                len -= k;
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
            let n: usize = iov.iter().map(|v| v.iov_len).sum();
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
