//! How API connections are taken in, so that no client can delay another: one thread multiplexes every
//! connection that is still sending its request (non-blocking, poll(2)), each under a deadline, and hands
//! complete requests to bounded worker pools in arrival order — one pool for reads (`GET`), one for
//! changes, so slow lifecycle operations never hold up `list`. A worker writes the reply under a
//! deadline too. A client that sends half a request, or a byte now and then, or never reads its reply,
//! costs a slot in the poll set or one bounded write, never a worker's time beyond the deadline.
//!
//! A request may come with up to [`MAX_PASSED_FDS`] descriptors (SCM_RIGHTS, anywhere in what the
//! client sent): the handler gets them (`migrate-receive` passes its stream this way; routes that
//! take none drop them). More are closed by the kernel.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use domus_api::http::{self, HttpError, Request};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use tracing::{debug, warn};

/// Limits of the intake.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a client may take to send its whole request.
    pub read_deadline: Duration,
    /// How long writing a reply may take.
    pub write_deadline: Duration,
    /// Connections still sending their request, at most (the oldest is dropped for a new one).
    pub max_pending: usize,
    /// Workers for reads (`GET`).
    pub read_workers: usize,
    /// Workers for changes (create, destroy, ...).
    pub change_workers: usize,
    /// Complete requests waiting for a worker, per pool, at most (more are refused with 503).
    pub queue: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            read_deadline: Duration::from_secs(10),
            write_deadline: Duration::from_secs(5),
            max_pending: 1024,
            read_workers: 4,
            change_workers: 16,
            queue: 256,
        }
    }
}

/// Most descriptors a request may pass.
pub const MAX_PASSED_FDS: usize = 2;

/// What a worker runs for each request (with the descriptors it passed): the response status and
/// body.
pub type Handler = dyn Fn(&Request, Vec<OwnedFd>) -> (u16, Vec<u8>) + Send + Sync;

struct Pending {
    stream: UnixStream,
    buf: Vec<u8>,
    fds: Vec<OwnedFd>,
    deadline: Instant,
}

type Job = (UnixStream, Request, Vec<OwnedFd>);

/// Writes a response, giving up at the write deadline (zero: one attempt that never blocks).
fn respond(mut stream: &UnixStream, status: u16, body: &[u8], deadline: Duration) {
    let mut msg = Vec::with_capacity(body.len() + 128);
    let _ = http::write_response(&mut msg, status, body);
    if deadline.is_zero() {
        let _ = stream.set_nonblocking(true);
        let _ = stream.write(&msg);
        return;
    }
    let _ = stream.set_nonblocking(false);
    let end = Instant::now() + deadline;
    let mut off = 0;
    while off < msg.len() {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_write_timeout(Some(left)).is_err() {
            debug!("API client did not read its reply in time; dropped");
            return;
        }
        match stream.write(&msg[off..]) {
            Ok(0) => return,
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn error_body(message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "error": message })).unwrap_or_default()
}

fn pool(name: &str, n: usize, rx: Receiver<Job>, handler: &Arc<Handler>, limits: Limits) {
    let rx = Arc::new(Mutex::new(rx));
    for k in 0..n {
        let rx = Arc::clone(&rx);
        let handler = Arc::clone(handler);
        let spawned = std::thread::Builder::new()
            .name(format!("{name}-{k}"))
            .stack_size(256 * 1024)
            .spawn(move || loop {
                let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                let Ok((stream, req, fds)) = job else { return };
                super::door::log_request(&stream, &req.method, &req.path);
                let (status, body) = handler(&req, fds);
                respond(&stream, status, &body, limits.write_deadline);
            });
        if let Err(e) = spawned {
            warn!(error = %e, "cannot start an API worker");
        }
    }
}

/// What became of a pending connection after reading what it sent.
enum Progress {
    Waiting,
    Complete(Request),
    Closed,
    Bad(HttpError),
}

fn read_more(p: &mut Pending) -> Progress {
    let mut chunk = [0u8; 16 * 1024];
    let mut fresh = false;
    loop {
        match receive(p, &mut chunk) {
            Ok(0) => return if fresh { parse(p) } else { Progress::Closed },
            Ok(n) => {
                p.buf.extend_from_slice(&chunk[..n]);
                fresh = true;
                if p.buf.len() > http::MAX_HEAD_BYTES + http::MAX_BODY_BYTES {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => return Progress::Closed,
        }
    }
    if fresh {
        parse(p)
    } else {
        Progress::Waiting
    }
}

/// Reads what the client sent next into `chunk`, keeping the descriptors that came with it.
fn receive(p: &mut Pending, chunk: &mut [u8]) -> io::Result<usize> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space =
        [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_PASSED_FDS))];
    let mut anc = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        &p.stream,
        &mut [io::IoSliceMut::new(chunk)],
        &mut anc,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    for m in anc.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = m {
            for fd in fds {
                if p.fds.len() < MAX_PASSED_FDS {
                    p.fds.push(fd);
                }
            }
        }
    }
    Ok(got.bytes)
}

fn parse(p: &Pending) -> Progress {
    match http::read_request(&p.buf[..]) {
        Ok(r) => Progress::Complete(r),
        Err(HttpError::Incomplete) => Progress::Waiting,
        Err(e) => Progress::Bad(e),
    }
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

/// Serves `listener` forever: takes connections in, reads their requests, and runs `handler` for each
/// on a worker.
pub fn run(listener: &UnixListener, handler: Arc<Handler>, limits: Limits) {
    let (read_tx, read_rx) = sync_channel::<Job>(limits.queue);
    let (change_tx, change_rx) = sync_channel::<Job>(limits.queue);
    pool("api-read", limits.read_workers, read_rx, &handler, limits);
    pool(
        "api-change",
        limits.change_workers,
        change_rx,
        &handler,
        limits,
    );
    if let Err(e) = listener.set_nonblocking(true) {
        warn!(error = %e, "cannot make the API socket non-blocking");
    }
    let mut pending: VecDeque<Pending> = VecDeque::new();
    loop {
        let now = Instant::now();
        // Drop connections past their read deadline.
        pending.retain(|p| {
            let keep = p.deadline > now;
            if !keep {
                debug!("API client did not send its request in time; dropped");
                respond(
                    &p.stream,
                    408,
                    &error_body("request not received in time"),
                    Duration::ZERO,
                );
            }
            keep
        });
        let next = pending
            .iter()
            .map(|p| p.deadline)
            .min()
            .map_or(Duration::from_secs(1), |d| d.saturating_duration_since(now));
        let mut ready = vec![false; pending.len()];
        let mut accept = false;
        {
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(pending.len() + 1);
            fds.push(PollFd::new(listener, PollFlags::IN));
            fds.extend(
                pending
                    .iter()
                    .map(|p| PollFd::new(&p.stream, PollFlags::IN)),
            );
            let ts = timespec(next.min(Duration::from_secs(1)));
            match poll(&mut fds, Some(&ts)) {
                Ok(0) => {}
                Ok(_) => {
                    accept = !fds[0].revents().is_empty();
                    for (r, f) in ready.iter_mut().zip(&fds[1..]) {
                        *r = !f.revents().is_empty();
                    }
                }
                Err(e) => {
                    if e != rustix::io::Errno::INTR {
                        warn!(error = %e, "poll on API connections failed");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        }
        // Requests complete or failed leave the poll set; the rest keep their order.
        let mut kept = VecDeque::with_capacity(pending.len());
        for (mut p, r) in pending.drain(..).zip(ready) {
            if !r {
                kept.push_back(p);
                continue;
            }
            match read_more(&mut p) {
                Progress::Waiting => kept.push_back(p),
                Progress::Closed => {}
                Progress::Bad(e) => {
                    debug!(error = %e, "bad API request");
                    respond(
                        &p.stream,
                        400,
                        &error_body(&e.to_string()),
                        limits.write_deadline,
                    );
                }
                Progress::Complete(req) => {
                    let tx: &SyncSender<Job> = if req.method == "GET" {
                        &read_tx
                    } else {
                        &change_tx
                    };
                    match tx.try_send((p.stream, req, p.fds)) {
                        Ok(()) => {}
                        Err(
                            TrySendError::Full((s, _, _)) | TrySendError::Disconnected((s, _, _)),
                        ) => {
                            respond(
                                &s,
                                503,
                                &error_body("domusd is busy: too many requests waiting; try again"),
                                Duration::ZERO,
                            );
                        }
                    }
                }
            }
        }
        pending = kept;
        if accept {
            loop {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if stream.set_nonblocking(true).is_err() {
                            continue;
                        }
                        if pending.len() >= limits.max_pending {
                            // The oldest pending client makes room: new clients are never locked out.
                            pending.pop_front();
                        }
                        pending.push_back(Pending {
                            stream,
                            buf: Vec::new(),
                            fds: Vec::new(),
                            deadline: Instant::now() + limits.read_deadline,
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        std::thread::sleep(Duration::from_millis(10));
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::fd::AsFd;

    /// Sends `msg` with `fds` attached (SCM_RIGHTS), returns the reply.
    fn send(path: &std::path::Path, msg: &[u8], fds: &[std::os::fd::BorrowedFd<'_>]) -> String {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        let s = UnixStream::connect(path).unwrap();
        let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(3))];
        let mut anc = SendAncillaryBuffer::new(&mut space);
        assert!(anc.push(SendAncillaryMessage::ScmRights(fds)));
        let n = rustix::net::sendmsg(&s, &[io::IoSlice::new(msg)], &mut anc, SendFlags::empty())
            .unwrap();
        (&s).write_all(&msg[n..]).unwrap();
        let mut reply = String::new();
        std::io::Read::read_to_string(&mut &s, &mut reply).unwrap();
        reply
    }

    #[test]
    fn descriptors_passed_with_a_request_reach_the_handler() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let handler: Arc<Handler> = Arc::new(|req: &Request, fds: Vec<OwnedFd>| {
            (200, format!("{} {}", req.path, fds.len()).into_bytes())
        });
        std::thread::spawn(move || run(&listener, handler, Limits::default()));
        let (r, w) = std::io::pipe().unwrap();
        let msg = b"POST /v1/restore HTTP/1.1\r\nHost: domusd\r\nContent-Length: 2\r\n\r\n{}";
        let reply = send(&path, msg, &[r.as_fd(), w.as_fd()]);
        assert!(reply.ends_with("/v1/restore 2"), "{reply}");
        // More than MAX_PASSED_FDS: the rest are dropped.
        let reply = send(&path, msg, &[r.as_fd(), w.as_fd(), r.as_fd()]);
        assert!(reply.ends_with("/v1/restore 2"), "{reply}");
        let reply = send(&path, msg, &[]);
        assert!(reply.ends_with("/v1/restore 0"), "{reply}");
    }
}
