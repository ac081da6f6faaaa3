//! The control socket: a unix stream socket carrying the control protocol (newline-delimited JSON, one
//! request line -> one reply line, any number of clients). The protocol itself, its requests, replies and
//! outcomes, is defined in the `domus-vmm-api` crate, shared with domusd; this module serves it.
//!
//! How this VMM answers: `pause` returns once every vCPU and device thread acknowledged its pause
//! (vCPUs outside KVM_RUN, devices with no I/O in flight); `resume` once devices, then vCPUs,
//! acknowledged. A vCPU's `state` is running when its thread used more than half of the wall time since
//! the previous `state` request (CPU time from the thread's CPU clock, not `/proc`), else blocked.
//!
//! After the guest stops, the VMM keeps this socket open until a client sends `ack-outcome` or a bounded
//! time passes (60 s by default), so a supervisor that re-attaches still learns the outcome; then it exits
//! with the outcome's status and removes the socket.
//!
//! Request lines are capped at [`MAX_REQUEST_BYTES`]; a client exceeding it gets an error and is dropped.
//!
//! A `save` or `migrate` request with `progress_ms` gets progress lines before its reply (the machine
//! reports through [`ControlTarget::handle_with_progress`]); a client that leaves one unread for 2 s
//! gets no more of them and is dropped after the reply.

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};

use vmm_sys_util::sock_ctrl_msg::ScmSocket;

pub use domus_vmm_api::{Progress, Reply, Request, MAX_REQUEST_BYTES};

/// What the control socket acts on (implemented by the machine).
pub trait ControlTarget {
    /// Handles one request.
    ///
    /// # Errors
    /// A message for the refusal (`{"ok":false,"error":...}`).
    fn handle(&self, req: &Request) -> Result<Reply, String>;

    /// Handles one request that arrived with a file descriptor (SCM_RIGHTS; e.g. the file
    /// `dump-core` writes). By default the file is closed unused.
    ///
    /// # Errors
    /// As [`ControlTarget::handle`].
    fn handle_with_file(
        &self,
        req: &Request,
        file: Option<std::fs::File>,
    ) -> Result<Reply, String> {
        drop(file);
        self.handle(req)
    }

    /// [`ControlTarget::handle_with_file`] for a request that asked for progress lines
    /// (`progress_ms`): reports go to `progress` as the work goes on. By default there are none.
    ///
    /// # Errors
    /// As [`ControlTarget::handle`].
    fn handle_with_progress(
        &self,
        req: &Request,
        file: Option<std::fs::File>,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Reply, String> {
        let _ = progress;
        self.handle_with_file(req, file)
    }
}

/// Parses a line and produces the reply line (without the newline).
pub fn reply_to(line: &[u8], target: &dyn ControlTarget) -> String {
    reply_with_file(line, target, None)
}

/// [`reply_to`] for a line that arrived with a descriptor.
pub fn reply_with_file(
    line: &[u8],
    target: &dyn ControlTarget,
    file: Option<std::fs::File>,
) -> String {
    reply_with_progress(line, target, file, &mut |_| {})
}

/// [`reply_with_file`]; a request that asked for progress reports it to `progress` meanwhile.
pub fn reply_with_progress(
    line: &[u8],
    target: &dyn ControlTarget,
    file: Option<std::fs::File>,
    progress: &mut dyn FnMut(&Progress),
) -> String {
    match domus_vmm_api::decode_request(line) {
        Err(e) => domus_vmm_api::encode_refusal(&format!("bad request: {e}")),
        Ok(req) => {
            let result = if req.progress_ms().is_some() {
                target.handle_with_progress(&req, file, progress)
            } else {
                target.handle_with_file(&req, file)
            };
            match result {
                Ok(reply) => reply.encode(),
                Err(e) => domus_vmm_api::encode_refusal(&e),
            }
        }
    }
}

/// How long a progress line may wait for a client that does not read: it then gets no more of them.
const PROGRESS_WRITE_TIMEOUT_MS: i32 = 2000;

/// Writes progress lines to `stream` (non-blocking) until one cannot be written whole within
/// [`PROGRESS_WRITE_TIMEOUT_MS`] (then `broken` is set and the rest are dropped: the client does not
/// read, or went away).
fn write_progress(stream: &UnixStream, broken: &mut bool, p: &Progress) {
    if *broken {
        return;
    }
    let mut line = domus_vmm_api::encode_progress(p);
    line.push('\n');
    let mut rest = line.as_bytes();
    let deadline = std::time::Instant::now()
        + std::time::Duration::from_millis(PROGRESS_WRITE_TIMEOUT_MS.unsigned_abs().into());
    while !rest.is_empty() {
        match (&*stream).write(rest) {
            Ok(0) => break,
            Ok(n) => rest = rest.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let ms = i32::try_from(left.as_millis()).unwrap_or(PROGRESS_WRITE_TIMEOUT_MS);
                let mut fds = [libc::pollfd {
                    fd: stream.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                }];
                if ms == 0 || !matches!(crate::sys::poll_timeout(&mut fds, ms), Ok(1..)) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    *broken = !rest.is_empty();
}

struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
    /// A descriptor that came with the bytes of the request line being read (SCM_RIGHTS).
    file: Option<std::fs::File>,
}

/// The listening socket and its clients (driven by the machine's main loop).
pub struct ControlServer {
    listener: UnixListener,
    clients: HashMap<u64, Client>,
    next_id: u64,
}

impl ControlServer {
    /// Wraps a bound listener (made non-blocking).
    ///
    /// # Errors
    /// fcntl failed.
    pub fn new(listener: UnixListener) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        Ok(Self {
            listener,
            clients: HashMap::new(),
            next_id: 0,
        })
    }

    /// The listener (to register with epoll).
    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// Accepts pending connections; returns (id, fd to watch). The fd stays owned by the server and is
    /// closed (which also removes it from any epoll set) when the client goes away.
    pub fn accept(&mut self) -> Vec<(u64, RawFd)> {
        let mut out = Vec::new();
        while let Ok((stream, _)) = self.listener.accept() {
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            out.push((id, stream.as_raw_fd()));
            self.clients.insert(
                id,
                Client {
                    stream,
                    buf: Vec::new(),
                    file: None,
                },
            );
        }
        out
    }

    /// Reads from client `id` and answers every complete line; returns `false` when the client is gone.
    pub fn service(&mut self, id: u64, target: &dyn ControlTarget) -> bool {
        let Some(c) = self.clients.get_mut(&id) else {
            return false;
        };
        let mut chunk = [0u8; 4096];
        let alive = loop {
            match c.stream.recv_with_fd(&mut chunk) {
                Ok((0, _)) => break false,
                Ok((n, file)) => {
                    c.buf.extend_from_slice(&chunk[..n]);
                    if file.is_some() {
                        c.file = file;
                    }
                }
                Err(e) if e.errno() == libc::EAGAIN => break true,
                Err(e) if e.errno() == libc::EINTR => {}
                Err(_) => break false,
            }
            if c.buf.len() > MAX_REQUEST_BYTES && !c.buf.contains(&b'\n') {
                let mut refusal = domus_vmm_api::encode_refusal(&format!(
                    "request line longer than {MAX_REQUEST_BYTES} bytes"
                ));
                refusal.push('\n');
                let _ignored = c.stream.write_all(refusal.as_bytes());
                self.clients.remove(&id);
                return false;
            }
        };
        while let Some(pos) = c.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = c.buf.drain(..=pos).collect();
            let line = line.strip_suffix(b"\n").unwrap_or(&line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let mut broken = false;
            let stream = &c.stream;
            let mut reply = reply_with_progress(line, target, c.file.take(), &mut |p| {
                write_progress(stream, &mut broken, p);
            });
            reply.push('\n');
            // Replies are small; a client that does not read them is dropped (so is one whose
            // progress line could not be written whole).
            if broken
                || c.stream.set_nonblocking(false).is_err()
                || c.stream.write_all(reply.as_bytes()).is_err()
            {
                self.clients.remove(&id);
                return false;
            }
            let _ignored = c.stream.set_nonblocking(true);
        }
        if !alive {
            self.clients.remove(&id);
        }
        alive
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domus_vmm_api::{MachineState, StateReply};
    use serde_json::Value;
    use std::io::Read;

    struct Echo;
    impl ControlTarget for Echo {
        fn handle(&self, req: &Request) -> Result<Reply, String> {
            match req {
                Request::State => Ok(Reply::State(StateReply {
                    state: MachineState::Running,
                    outcome: None,
                    pid: 1,
                    vcpus: Vec::new(),
                    memory_mib: 16,
                    uptime_ms: 0,
                    disks: Vec::new(),
                    nics: Vec::new(),
                    balloon: None,
                })),
                Request::VcpuPin { vcpu, .. } if *vcpu > 0 => Err(format!("no vCPU {vcpu}")),
                _ => Ok(Reply::Done),
            }
        }
    }

    #[test]
    fn requests_parse_and_reply() {
        assert_eq!(reply_to(br#"{"cmd":"pause"}"#, &Echo), r#"{"ok":true}"#);
        let v: Value = serde_json::from_str(&reply_to(br#"{"cmd":"state"}"#, &Echo)).unwrap();
        assert_eq!(v["ok"], true);
        assert_eq!(v["state"], "running");
        let v: Value = serde_json::from_str(&reply_to(
            br#"{"cmd":"vcpu-pin","vcpu":3,"cpus":[0]}"#,
            &Echo,
        ))
        .unwrap();
        assert_eq!(v["ok"], false);
        assert_eq!(v["error"], "no vCPU 3");
        for bad in [&b"{"[..], br#"{"cmd":"explode"}"#, b"\xff"] {
            let v: Value = serde_json::from_str(&reply_to(bad, &Echo)).unwrap();
            assert_eq!(v["ok"], false, "{bad:?}");
        }
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"power-button"}"#).unwrap(),
            Request::PowerButton
        );
    }

    #[test]
    fn server_answers_lines() {
        let dir = std::env::temp_dir().join(format!("domus-vmm-ctl-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let mut server = ControlServer::new(UnixListener::bind(&dir).unwrap()).unwrap();
        let mut client = UnixStream::connect(&dir).unwrap();
        client
            .write_all(b"{\"cmd\":\"state\"}\n{\"cmd\":\"pause\"}\n")
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let accepted = server.accept();
        assert_eq!(accepted.len(), 1);
        assert!(server.service(accepted[0].0, &Echo));
        let mut buf = vec![0u8; 256];
        let n = client.read(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert_eq!(text.lines().count(), 2, "{text}");
        std::fs::remove_file(&dir).unwrap();
    }

    /// Reports two progress stages for any request that asks for them.
    struct Chatty;
    impl ControlTarget for Chatty {
        fn handle(&self, _req: &Request) -> Result<Reply, String> {
            Ok(Reply::Done)
        }
        fn handle_with_progress(
            &self,
            _req: &Request,
            _file: Option<std::fs::File>,
            progress: &mut dyn FnMut(&Progress),
        ) -> Result<Reply, String> {
            for round in 1..=2 {
                progress(&Progress {
                    phase: domus_vmm_api::Phase::PreCopy,
                    round,
                    bytes: u64::from(round) * 100,
                    dirty_pages: 0,
                    pages: 1,
                    elapsed_ms: 0,
                });
            }
            Ok(Reply::Done)
        }
    }

    #[test]
    fn progress_lines_come_before_the_reply_only_when_asked_for() {
        use domus_vmm_api::{decode_line, Done, Line};
        let path =
            std::env::temp_dir().join(format!("domus-vmm-ctl-p-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut server = ControlServer::new(UnixListener::bind(&path).unwrap()).unwrap();
        let mut client = UnixStream::connect(&path).unwrap();
        client
            .write_all(b"{\"cmd\":\"save\",\"progress_ms\":100}\n{\"cmd\":\"save\"}\n")
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let accepted = server.accept();
        assert!(server.service(accepted[0].0, &Chatty));
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut text = String::new();
        let mut buf = [0u8; 1024];
        while text.lines().count() < 4 {
            let n = client.read(&mut buf).unwrap();
            assert!(n > 0, "{text}");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        let lines: Vec<Line<Done>> = text
            .lines()
            .map(|l| decode_line(l.as_bytes()).unwrap())
            .collect();
        let bytes: Vec<_> = lines
            .iter()
            .map(|l| match l {
                Line::Progress(p) => Some(p.bytes),
                Line::Reply(_) => None,
            })
            .collect();
        // Two reports and the reply for the first request, the bare reply for the second.
        assert_eq!(bytes, [Some(100), Some(200), None, None], "{text}");
        std::fs::remove_file(&path).unwrap();
    }
}
