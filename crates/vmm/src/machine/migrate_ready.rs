//! Waiting for the target before the stop-and-copy: a live migration's guest must not be paused
//! before the target VMM is built and reading the stream, or the downtime would include the whole
//! target start (domusd's create path, VMM spawn, guest RAM, devices).
//!
//! When the stream's descriptor is a socket (`migrate` hands the VMM one end of a socket pair and
//! relays the other), the sender reads one byte from it before pausing the guest: `G` once the
//! target reads the stream (`migrate-receive` sees its FIFO drained and says so; the CLI writes the
//! byte). End of file instead means the receiver went away: the migration fails and the guest runs
//! on. Meanwhile the pre-copy goes on every [`ROUND_MS`], so the dirty set stays small. A pipe or a
//! file (an older CLI, `save`) is never waited on.
//!
//! With `migrate`'s `direct` flag the socket carries only the go byte: the stream's own descriptor
//! (the pipe to the receiver, which the CLI no longer relays) comes first on it ([`receive_stream`]).
//!
//! Then, still before the pause, [`drain`] waits (briefly, guest running) until the relay (or the
//! receiver, for a direct stream) has read everything sent so far: pre-copy bytes still queued in
//! the socket or pipe would otherwise be ahead of the stop-and-copy's and count as downtime.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::time::{Duration, Instant};

/// How often the pre-copy sends a round while the target is not ready yet, ms.
pub const ROUND_MS: i32 = 20;
/// Longest wait for the target.
pub const LIMIT: Duration = Duration::from_secs(120);

/// Whether `f` is a socket (the sender then waits for the go byte).
pub fn is_socket(f: &File) -> bool {
    f.metadata().is_ok_and(|m| m.file_type().is_socket())
}

/// What the wait found.
#[derive(Debug, PartialEq, Eq)]
pub enum Ready {
    /// The target reads the stream.
    Go,
    /// Nothing yet after a round's time.
    NotYet,
}

/// Waits up to [`ROUND_MS`] for the go byte on `f`.
///
/// # Errors
/// The receiver closed the connection, sent something else, or [`LIMIT`] passed since `since`.
pub fn poll(f: &File, since: Instant) -> Result<Ready, String> {
    if since.elapsed() > LIMIT {
        return Err(format!(
            "the target did not start reading the stream within {} s",
            LIMIT.as_secs()
        ));
    }
    let mut pfd = libc::pollfd {
        fd: f.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, its count 1.
    let n = unsafe { libc::poll(&mut pfd, 1, ROUND_MS) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok(Ready::NotYet);
        }
        return Err(format!("cannot wait for the target: {e}"));
    }
    if n == 0 {
        return Ok(Ready::NotYet);
    }
    let mut b = [0u8; 1];
    match std::io::Read::read(&mut &*f, &mut b) {
        Ok(1) if b[0] == b'G' => Ok(Ready::Go),
        Ok(1) => Err(format!("unexpected byte {:#04x} from the receiver", b[0])),
        Ok(_) => Err("the receiver closed the migration stream before it was ready".into()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
            ) =>
        {
            Ok(Ready::NotYet)
        }
        Err(e) => Err(format!("cannot read the receiver's answer: {e}")),
    }
}

/// How long the stream's descriptor may take to arrive on the go socket.
pub const STREAM_LIMIT: Duration = Duration::from_secs(5);

/// Receives the stream's descriptor on the go socket `go` (a direct stream: see the module docs).
///
/// # Errors
/// Nothing came within [`STREAM_LIMIT`], or something else than one descriptor with the byte `S`.
pub fn receive_stream(go: &File) -> Result<File, String> {
    use vmm_sys_util::sock_ctrl_msg::ScmSocket;
    let mut pfd = libc::pollfd {
        fd: go.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(STREAM_LIMIT.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd, its count 1.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    if n <= 0 {
        return Err(format!(
            "migrate: the stream's descriptor did not come on the go socket within {} s",
            STREAM_LIMIT.as_secs()
        ));
    }
    let sock = go
        .try_clone()
        .map(|f| std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(f)))
        .map_err(|e| format!("migrate: the go socket: {e}"))?;
    let mut b = [0u8; 1];
    match sock.recv_with_fd(&mut b) {
        Ok((1, Some(f))) if b[0] == b'S' => Ok(f),
        Ok((_, None)) => Err("migrate: no stream descriptor came on the go socket".into()),
        Ok(_) => Err(format!(
            "migrate: unexpected byte {:#04x} on the go socket instead of the stream",
            b[0]
        )),
        Err(e) => Err(format!(
            "migrate: cannot receive the stream's descriptor: {e}"
        )),
    }
}

/// Longest wait in [`drain`].
pub const DRAIN_LIMIT: Duration = Duration::from_millis(200);

/// Waits until the stream `f` has no unread bytes queued (a socket's `SIOCOUTQ`, a pipe's
/// `FIONREAD`), at most [`DRAIN_LIMIT`]; returns how long it waited.
pub fn drain(f: &File) -> Duration {
    let start = Instant::now();
    let what = if f.metadata().is_ok_and(|m| m.file_type().is_fifo()) {
        libc::FIONREAD
    } else {
        libc::TIOCOUTQ
    };
    loop {
        let mut queued: libc::c_int = 0;
        // SAFETY: SIOCOUTQ (TIOCOUTQ) on a socket and FIONREAD on a pipe write one int to `queued`.
        let rc = unsafe { libc::ioctl(f.as_raw_fd(), what, &mut queued) };
        if rc != 0 || queued <= 0 || start.elapsed() >= DRAIN_LIMIT {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}
