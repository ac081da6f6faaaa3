//! The ready handshake of a live migration: the source guest is paused for the stop-and-copy only
//! once the target VMM reads the stream, so the target's start (domusd's create path, the jailed
//! VMM's spawn, its guest RAM and devices) overlaps the pre-copy instead of adding to the downtime.
//!
//! - `migrate-receive` ([`feed`]) copies the stream into the FIFO domusd and then the target VMM
//!   read. The FIFO is shrunk to one page until the first bytes after the image header are in it:
//!   it becomes writable again (`POLLOUT`) only once they were all read, i.e. by the VMM (domusd
//!   reads just the header). Then it prints [`RECEIVING`] on stdout and widens the FIFO to 64 KiB.
//! - `migrate` hands its VMM one end of a socket pair ([`stream_pair`]) and, on it, the pipe to the
//!   receiver ([`hand_over`]), which the VMM writes the stream into (a VMM predating that writes
//!   the stream into the socket and `migrate` relays it); the VMM
//!   sends the pre-copy and then waits for one byte `G` on the socket before pausing the guest
//!   (`domus_vmm::machine::migrate_ready`). [`watch_receiver`] writes it when the receiver's
//!   [`RECEIVING`] line arrives, and shuts the socket down if the receiver ends without it (the
//!   VMM then fails the migration and the guest runs on).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ChildStdout;
use std::thread::JoinHandle;

use super::migrate::READY_PREFIX;
use super::migrate_receive::phase;

/// The line `migrate-receive` prints once the target VMM reads the stream.
pub const RECEIVING: &str = "migrate-receive: the target reads the stream";

/// The stream's socket pair: (the end the relay reads, the end the VMM writes to, a handle on the
/// relay's end for the go byte).
///
/// # Errors
/// The socket pair could not be made.
pub fn stream_pair() -> std::io::Result<(OwnedFd, OwnedFd, UnixStream)> {
    let (r, w) = UnixStream::pair()?;
    let go = r.try_clone()?;
    Ok((OwnedFd::from(r), OwnedFd::from(w), go))
}

/// Writes `msg` on `s` with `fds` attached to its first bytes (SCM_RIGHTS).
///
/// # Errors
/// The socket failed.
pub fn send_with_fds(
    s: &UnixStream,
    msg: &[u8],
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> std::io::Result<()> {
    use vmm_sys_util::sock_ctrl_msg::ScmSocket;
    let raw: Vec<_> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let sent = s
        .send_with_fds(&[msg], &raw)
        .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))?;
    let mut s = s;
    s.write_all(msg.get(sent..).unwrap_or_default())
}

/// Sends `stream` (the receiver's pipe) on the relay's end `r` of the socket pair, for the VMM to
/// write the stream into directly (`migrate`'s `direct` flag): one byte `S` with the descriptor.
///
/// # Errors
/// The socket refused it.
pub fn hand_over(r: &OwnedFd, stream: &impl AsRawFd) -> std::io::Result<()> {
    use vmm_sys_util::sock_ctrl_msg::ScmSocket;
    let s = UnixStream::from(r.try_clone()?);
    s.send_with_fd(&b"S"[..], stream.as_raw_fd())
        .map(|_| ())
        .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
}

/// Takes back what [`hand_over`] sent, still queued on the VMM's end `w` (a VMM that refused the
/// direct stream never read it), so that the go byte is the first thing the VMM reads there.
///
/// # Errors
/// Nothing was queued, or the socket failed.
pub fn take_back(w: &OwnedFd) -> std::io::Result<()> {
    use vmm_sys_util::sock_ctrl_msg::ScmSocket;
    let s = UnixStream::from(w.try_clone()?);
    s.set_nonblocking(true)?;
    let mut b = [0u8; 1];
    let got = s.recv_with_fd(&mut b);
    s.set_nonblocking(false)?;
    match got {
        Ok((1, Some(_pipe))) if b[0] == b'S' => Ok(()),
        Ok(_) => Err(std::io::Error::other(
            "the stream's descriptor was not queued on the VMM's socket",
        )),
        Err(e) => Err(std::io::Error::from_raw_os_error(e.errno())),
    }
}

/// Reads the receiver's stdout: answers [`RECEIVING`] with the go byte on `go`, returns the
/// [`READY_PREFIX`] line (empty if the receiver ended without it).
///
/// Without `go` (a paused domain's one-pass stream, whose VMM never reads the socket) nothing is
/// written back: a byte left unread in the VMM's end when it closes it would reset the relay's read
/// (`ECONNRESET`) before the end of the stream.
pub fn watch_receiver(from: ChildStdout, go: Option<UnixStream>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut told = false;
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if line == RECEIVING && !told {
                phase("migrate: the target reads the stream");
                told = go.as_ref().is_none_or(|g| (&*g).write_all(b"G").is_ok());
            } else if line.starts_with(READY_PREFIX) {
                return line;
            }
        }
        // The receiver is gone: a VMM still waiting for the go byte (or writing) stops now.
        if let Some(go) = go {
            let _ = go.shutdown(std::net::Shutdown::Both);
        }
        String::new()
    })
}

/// Moves the stream from the socket `from` into the pipe `to` with splice(2), no copy through this
/// process, calling `count` with each chunk's size until the end of the stream. Returns false (nothing
/// moved) when the kernel cannot splice these descriptors: the caller then copies.
///
/// A spliced relay holds nothing itself: once the VMM's socket is drained (it waits for that before
/// pausing the guest), at most the ssh pipe and the receiver's FIFO hold pre-copy bytes.
///
/// # Errors
/// Either side failed.
pub fn splice_all(
    from: &impl AsFd,
    to: &impl AsFd,
    count: &dyn Fn(usize),
) -> std::io::Result<bool> {
    let mut moved = false;
    loop {
        match rustix::pipe::splice(
            from,
            None,
            to,
            None,
            1 << 20,
            rustix::pipe::SpliceFlags::MOVE,
        ) {
            Ok(0) => return Ok(true),
            Ok(n) => {
                moved = true;
                count(n);
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::INVAL) if !moved => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Records what a reader returned (the image header, passed on as it came).
struct Recorder<'a, R> {
    inner: &'a mut R,
    seen: Vec<u8>,
}

impl<R: Read> Read for Recorder<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen
            .extend_from_slice(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

/// Copies stdin into the FIFO at `fifo` (opening it waits for domusd), calling `receiving` once the
/// target VMM read the first bytes of its stream; returns the bytes copied.
///
/// # Errors
/// The FIFO or stdin failed.
pub fn feed(fifo: &Path, receiving: impl FnOnce()) -> std::io::Result<u64> {
    let mut out = std::fs::OpenOptions::new().write(true).open(fifo)?;
    let mut input = std::io::stdin().lock();
    let small = rustix::pipe::fcntl_setpipe_size(&out, 4096).is_ok();
    let mut rec = Recorder {
        inner: &mut input,
        seen: Vec::new(),
    };
    // A bad header goes on as it came: domusd refuses it with its own message.
    let header_ok = domus_api::image::read_header(&mut rec).is_ok();
    let head = rec.seen;
    out.write_all(&head)?;
    let mut total = head.len() as u64;
    if small && header_ok {
        let mut buf = vec![0u8; 64 << 10];
        let n = loop {
            match input.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                r => break r?,
            }
        };
        out.write_all(buf.get(..n).unwrap_or_default())?;
        total += n as u64;
        if n > 0 {
            wait_drained(&out)?;
            receiving();
        }
        // Back to a pipe's usual 64 KiB, not larger: what sits in it when the source pauses is
        // downtime.
        let _ = rustix::pipe::fcntl_setpipe_size(&out, 64 << 10);
    } else if header_ok {
        // No one-page FIFO, no telling when the VMM reads: say so at once rather than never (the
        // source then pauses as soon as its pre-copy converged).
        receiving();
    }
    Ok(total + std::io::copy(&mut input, &mut out)?)
}

/// Waits until the one-page FIFO `out` can be written again: everything in it was read.
fn wait_drained(out: &impl AsFd) -> std::io::Result<()> {
    loop {
        let mut fds = [rustix::event::PollFd::new(
            out,
            rustix::event::PollFlags::OUT,
        )];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => {
                let got = fds[0].revents();
                if got.contains(rustix::event::PollFlags::OUT)
                    && !got
                        .intersects(rustix::event::PollFlags::ERR | rustix::event::PollFlags::HUP)
                {
                    return Ok(());
                }
                return Err(std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "the target closed the migration stream",
                ));
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::process::{Command, Stdio};

    /// Runs `script` as the "receiver"; returns its confirmation line and what the VMM's end of the
    /// stream socket read afterwards.
    fn exchange(script: &str) -> (String, Vec<u8>) {
        let mut child = Command::new("/bin/sh")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (relay_end, vmm_end, go) = stream_pair().unwrap();
        let line = watch_receiver(child.stdout.take().unwrap(), Some(go))
            .join()
            .unwrap();
        child.wait().unwrap();
        drop(relay_end);
        let mut got = Vec::new();
        std::fs::File::from(vmm_end).read_to_end(&mut got).unwrap();
        (line, got)
    }

    #[test]
    fn the_receivers_pipe_goes_to_the_vmm_and_can_be_taken_back() {
        use vmm_sys_util::sock_ctrl_msg::ScmSocket;
        let (r, w, _go) = stream_pair().unwrap();
        let (pipe_r, pipe_w) = rustix::pipe::pipe().unwrap();
        hand_over(&r, &pipe_w).unwrap();
        // What the VMM receives writes into the receiver's pipe.
        let vmm = UnixStream::from(w.try_clone().unwrap());
        let mut b = [0u8; 1];
        let (n, f) = vmm.recv_with_fd(&mut b).unwrap();
        assert_eq!((n, b[0]), (1, b'S'));
        f.unwrap().write_all(b"stream").unwrap();
        drop(pipe_w);
        let mut got = Vec::new();
        std::fs::File::from(pipe_r).read_to_end(&mut got).unwrap();
        assert_eq!(got, b"stream");
        // Sent but never read (a VMM that refused `direct`): taken back, nothing left queued.
        let (p2_r, _p2_w) = rustix::pipe::pipe().unwrap();
        hand_over(&r, &p2_r).unwrap();
        take_back(&w).unwrap();
        assert!(take_back(&w).is_err());
    }

    #[test]
    fn the_go_byte_follows_the_receiving_line_only() {
        let (line, got) = exchange(&format!("echo '{RECEIVING}'; echo '{READY_PREFIX}7 (x)'"));
        assert_eq!(line, format!("{READY_PREFIX}7 (x)"));
        assert_eq!(got, b"G");
        // A receiver that ends without saying it reads: no go byte, the socket is shut down.
        let (line, got) = exchange("echo something else");
        assert_eq!(line, "");
        assert!(got.is_empty());
    }
}
