//! Starting a domus-vmm and talking to its control socket.
//!
//! A VMM is started as `domus-vmm --spec-json FILE --control PATH --console unix:PATH [--paused]` in its
//! own session, with the domain's resources (kernel, ramdisk, disks) as inherited descriptors whose
//! numbers the spec names (see `domus_spec`'s hand-off docs). Its control socket carries
//! newline-delimited JSON, one request, one reply. How a VMM is started is behind [`Launcher`], so the
//! supervisor's state machine can be tested against a fake VMM.

use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use super::jail::VmmChild;
use std::time::{Duration, Instant};

use domus_vmm_api::{Line, Progress, ReplyBody, ReplyError, Request, StateReply, MAX_REPLY_BYTES};

use super::sys;

/// VMM errors.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// Preparing files failed.
    #[error("cannot {what} {path}")]
    Io {
        /// What.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Exec failed.
    #[error("cannot start {exe}")]
    Spawn {
        /// The binary.
        exe: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The VMM exited before it answered.
    #[error("domus-vmm exited during start ({status}){tail}")]
    EarlyExit {
        /// Exit status.
        status: String,
        /// Its last log lines, preformatted.
        tail: String,
    },
    /// The domain was destroyed while its VMM started.
    #[error("the domain was destroyed while it started")]
    Cancelled,
    /// The VMM did not answer in time.
    #[error("domus-vmm did not open its control socket {path} within {secs} s")]
    Timeout {
        /// The socket.
        path: PathBuf,
        /// The bound.
        secs: u64,
    },
    /// A control request failed at the socket.
    #[error("control socket {path}")]
    Control {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The VMM answered `ok: false`.
    #[error("domus-vmm refused {cmd}: {message}")]
    Refused {
        /// The command.
        cmd: &'static str,
        /// Its message.
        message: String,
    },
}

/// Paths of one VMM instance.
#[derive(Debug, Clone)]
pub struct VmmPaths {
    /// The spec JSON file.
    pub spec: PathBuf,
    /// Control socket.
    pub control: PathBuf,
    /// Console socket.
    pub console: PathBuf,
    /// The VMM's stderr log.
    pub log: PathBuf,
    /// Where the VMM keeps its outcome once the guest stopped (read when it exited while domusd was away).
    pub outcome: PathBuf,
}

impl VmmPaths {
    /// The layout under a domain's runtime dir.
    pub fn new(domain_dir: &Path, log: PathBuf) -> Self {
        Self {
            spec: domain_dir.join("spec.json"),
            control: domain_dir.join("control.sock"),
            console: domain_dir.join("console.sock"),
            log,
            outcome: domain_dir.join("outcome.json"),
        }
    }
}

/// How a VMM process is started: the real `domus-vmm`, or a fake in tests.
pub trait Launcher: Send + Sync {
    /// Starts the VMM of domain `domid` for `spec` (its resources' descriptors are `files`, open in
    /// this process) at the paths of `p`; with `paused`, its vCPUs wait for a `resume` (`xl create -p`).
    ///
    /// # Errors
    /// [`VmmError`].
    fn spawn(
        &self,
        domid: u32,
        spec: &domus_spec::VmSpec,
        files: &[std::fs::File],
        p: &VmmPaths,
        paused: bool,
    ) -> Result<VmmChild, VmmError>;
}

/// The real VMM binary, unsandboxed (`domusd --no-sandbox`; [`super::jail::JailedVmm`] otherwise).
#[derive(Debug, Clone)]
pub struct DomusVmm {
    /// Path of `domus-vmm`.
    pub exe: PathBuf,
}

impl Launcher for DomusVmm {
    fn spawn(
        &self,
        _domid: u32,
        spec: &domus_spec::VmSpec,
        files: &[std::fs::File],
        p: &VmmPaths,
        paused: bool,
    ) -> Result<VmmChild, VmmError> {
        let log = prepare_dirs(spec, p)?;
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| VmmError::Io { what, path, source }
        };
        let log2 = log.try_clone().map_err(io("open", &p.log))?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--spec-json")
            .arg(&p.spec)
            .arg("--control")
            .arg(&p.control)
            .arg("--console")
            .arg(format!("unix:{}", p.console.display()))
            .arg("--outcome-file")
            .arg(&p.outcome)
            .args(paused.then_some("--paused"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        sys::new_session(&mut cmd);
        sys::inherit_fds(&mut cmd, files);
        cmd.spawn()
            .map(VmmChild::from)
            .map_err(|source| VmmError::Spawn {
                exe: self.exe.clone(),
                source,
            })
    }
}

/// Creates the instance's directory (without stale sockets), writes the spec and opens the log: what
/// every launcher needs before it starts a process.
///
/// # Errors
/// [`VmmError::Io`].
pub fn prepare_dirs(spec: &domus_spec::VmSpec, p: &VmmPaths) -> Result<fs::File, VmmError> {
    let dir = p.spec.parent().unwrap_or(Path::new("/"));
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| VmmError::Io { what, path, source }
    };
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io("create", dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io("restrict", dir))?;
    }
    match fs::remove_file(&p.outcome) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(io("remove stale outcome", &p.outcome)(e))
        }
        _ => {}
    }
    for s in [&p.control, &p.console] {
        match fs::remove_file(s) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io("remove stale socket", s)(e))
            }
            _ => {}
        }
    }
    let data =
        serde_json::to_vec_pretty(spec).map_err(|e| io("write", &p.spec)(io::Error::other(e)))?;
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&p.spec)
            .and_then(|mut f| f.write_all(&data))
            .map_err(io("write", &p.spec))?;
    }
    if let Some(parent) = p.log.parent() {
        fs::create_dir_all(parent).map_err(io("create", parent))?;
    }
    let mut log = std::os::unix::fs::OpenOptionsExt::mode(
        OpenOptions::new().create(true).append(true),
        0o600,
    )
    .open(&p.log)
    .map_err(io("open", &p.log))?;
    // The log grows across runs of the domain: mark where this run starts (see `log_tail`).
    writeln!(log, "{RUN_MARKER}").map_err(io("write", &p.log))?;
    Ok(log)
}

/// The line written to a VMM's log before each start of the VMM.
pub const RUN_MARKER: &str = "-- domus-vmm starting --";

/// The last `n` lines of a log file written since the last [`RUN_MARKER`] (the current run's: never
/// an earlier run's), as "\n  line" text (empty if none).
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let run = text
        .rfind(RUN_MARKER)
        .map_or(text.as_str(), |i| &text[i + RUN_MARKER.len()..]);
    let lines: Vec<&str> = run.lines().filter(|l| !l.is_empty()).collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].iter().map(|l| format!("\n  {l}")).collect()
}

/// Waits until the control socket answers `state`, or the child exits, or `timeout` passes, or
/// `cancelled` says the domain is gone.
///
/// # Errors
/// [`VmmError::EarlyExit`] with the VMM's last log lines, or [`VmmError::Timeout`].
pub fn wait_ready(
    child: &mut VmmChild,
    p: &VmmPaths,
    timeout: Duration,
    cancelled: &dyn Fn() -> bool,
) -> Result<Control, VmmError> {
    let deadline = Instant::now() + timeout;
    loop {
        if cancelled() {
            return Err(VmmError::Cancelled);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(VmmError::EarlyExit {
                status: status.to_string(),
                tail: log_tail(&p.log, 8),
            });
        }
        if let Ok(mut c) = Control::connect(&p.control) {
            if c.state().is_ok() {
                return Ok(c);
            }
        }
        if Instant::now() >= deadline {
            return Err(VmmError::Timeout {
                path: p.control.clone(),
                secs: timeout.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A connection to a VMM's control socket.
#[derive(Debug)]
pub struct Control {
    path: PathBuf,
    reader: BufReader<UnixStream>,
}

impl Control {
    /// Connects.
    ///
    /// # Errors
    /// [`VmmError::Control`].
    pub fn connect(path: &Path) -> Result<Self, VmmError> {
        let err = |source| VmmError::Control {
            path: path.to_path_buf(),
            source,
        };
        let s = UnixStream::connect(path).map_err(err)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(err)?;
        s.set_write_timeout(Some(Duration::from_secs(5)))
            .map_err(err)?;
        Ok(Self {
            path: path.to_path_buf(),
            reader: BufReader::new(s),
        })
    }

    /// How long to wait for a reply (5 s unless changed; `dump-core` of a large guest takes longer).
    ///
    /// # Errors
    /// [`VmmError::Control`] when the socket refuses the setting.
    pub fn set_reply_timeout(&mut self, timeout: Duration) -> Result<(), VmmError> {
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout))
            .map_err(|source| VmmError::Control {
                path: self.path.clone(),
                source,
            })
    }

    /// Sends one request and returns its reply body (`T` is what the request calls for: see
    /// `domus-vmm-api`).
    ///
    /// # Errors
    /// [`VmmError::Control`] on socket trouble or a malformed reply, [`VmmError::Refused`] on `ok: false`.
    pub fn request<T: ReplyBody>(&mut self, req: &Request) -> Result<T, VmmError> {
        let err = |source| VmmError::Control {
            path: self.path.clone(),
            source,
        };
        let mut line = domus_vmm_api::encode_request(req).into_bytes();
        line.push(b'\n');
        self.reader.get_mut().write_all(&line).map_err(err)?;
        self.read_reply(req)
    }

    /// Reads the reply to `req`.
    fn read_reply<T: ReplyBody>(&mut self, req: &Request) -> Result<T, VmmError> {
        let reply = self.read_line()?;
        domus_vmm_api::decode_reply(&reply).map_err(|e| self.reply_error(req, e))
    }

    /// Reads one whole line (with its newline).
    fn read_line(&mut self) -> Result<Vec<u8>, VmmError> {
        let err = |source| VmmError::Control {
            path: self.path.clone(),
            source,
        };
        let mut reply = Vec::new();
        let limit = u64::try_from(MAX_REPLY_BYTES).unwrap_or(u64::MAX);
        let n = Read::take(&mut self.reader, limit)
            .read_until(b'\n', &mut reply)
            .map_err(err)?;
        if n == 0 || reply.last() != Some(&b'\n') {
            return Err(err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "control socket closed",
            )));
        }
        Ok(reply)
    }

    fn reply_error(&self, req: &Request, e: ReplyError) -> VmmError {
        match e {
            ReplyError::Refused(message) => VmmError::Refused {
                cmd: req.name(),
                message,
            },
            ReplyError::Malformed(e) => VmmError::Control {
                path: self.path.clone(),
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            },
        }
    }

    /// Sends a request whose reply carries no data, passing `file` with it (SCM_RIGHTS): e.g. the
    /// file `dump-core` writes, which domusd creates because a sandboxed VMM cannot.
    ///
    /// # Errors
    /// As [`Control::request`].
    pub fn send_with_file(&mut self, req: &Request, file: &fs::File) -> Result<(), VmmError> {
        self.send_with_file_progress(req, file, &mut |_| {})
    }

    /// [`Control::send_with_file`] for a request that asked for progress lines (`progress_ms`):
    /// each report goes to `progress` until the reply comes.
    ///
    /// # Errors
    /// As [`Control::request`].
    pub fn send_with_file_progress(
        &mut self,
        req: &Request,
        file: &fs::File,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(), VmmError> {
        use std::os::fd::AsFd;
        let err = |source| VmmError::Control {
            path: self.path.clone(),
            source,
        };
        let mut line = domus_vmm_api::encode_request(req).into_bytes();
        line.push(b'\n');
        let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut anc = rustix::net::SendAncillaryBuffer::new(&mut space);
        let fds = [file.as_fd()];
        if !anc.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)) {
            return Err(err(io::Error::other("cannot attach the descriptor")));
        }
        let sent = rustix::net::sendmsg(
            self.reader.get_ref(),
            &[io::IoSlice::new(&line)],
            &mut anc,
            rustix::net::SendFlags::NOSIGNAL,
        )
        .map_err(|e| err(e.into()))?;
        if sent < line.len() {
            self.reader
                .get_mut()
                .write_all(&line[sent..])
                .map_err(err)?;
        }
        if req.progress_ms().is_none() {
            return self.read_reply::<domus_vmm_api::Done>(req).map(drop);
        }
        loop {
            let reply = self.read_line()?;
            match domus_vmm_api::decode_line::<domus_vmm_api::Done>(&reply) {
                Ok(Line::Progress(p)) => progress(p),
                Ok(Line::Reply(_)) => return Ok(()),
                Err(e) => return Err(self.reply_error(req, e)),
            }
        }
    }

    /// Sends a request whose reply carries no data.
    ///
    /// # Errors
    /// As [`Control::request`].
    pub fn send(&mut self, req: &Request) -> Result<(), VmmError> {
        self.request::<domus_vmm_api::Done>(req).map(drop)
    }

    /// `state`.
    ///
    /// # Errors
    /// As [`Control::request`].
    pub fn state(&mut self) -> Result<StateReply, VmmError> {
        self.request(&Request::State)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_tail_shows_only_the_last_run() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("vmm.log");
        let run = |text: &str| {
            let mut f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap();
            write!(f, "{RUN_MARKER}\n{text}").unwrap();
        };
        run("error: first attempt\nfirst detail\n");
        assert_eq!(
            log_tail(&log, 8),
            "\n  error: first attempt\n  first detail"
        );
        run("error: second attempt\n");
        assert_eq!(log_tail(&log, 8), "\n  error: second attempt");
        run("");
        assert_eq!(log_tail(&log, 8), "");
        // A log without markers (written by something else) keeps its last lines.
        fs::write(&log, "a\nb\nc\n").unwrap();
        assert_eq!(log_tail(&log, 2), "\n  b\n  c");
    }

    use super::*;
    use domus_vmm_api::{MachineState, Reply, VcpuRunState, VcpuState};
    use std::os::unix::net::UnixListener;

    /// A fake VMM control socket: for each request line it receives, checks it decodes to the next
    /// expected request and answers with the next canned line (`None`: hang up instead).
    fn fake_vmm(
        dir: &Path,
        script: Vec<(Request, Option<String>)>,
    ) -> (PathBuf, std::thread::JoinHandle<()>) {
        let path = dir.join("control.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s);
            for (want, answer) in script {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                assert_eq!(
                    domus_vmm_api::decode_request(line.trim_end().as_bytes()).unwrap(),
                    want
                );
                let Some(mut answer) = answer else { return };
                answer.push('\n');
                r.get_mut().write_all(answer.as_bytes()).unwrap();
            }
        });
        (path, t)
    }

    #[test]
    fn typed_requests_and_replies_over_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateReply {
            state: MachineState::Paused,
            outcome: None,
            pid: 99,
            vcpus: vec![VcpuState {
                id: 0,
                cpu_time_ns: 5,
                state: VcpuRunState::Paused,
            }],
            memory_mib: 16,
            uptime_ms: 3,
            disks: Vec::new(),
            nics: Vec::new(),
            balloon: None,
        };
        let pin = Request::VcpuPin {
            vcpu: 0,
            cpus: vec![1],
        };
        let (path, t) = fake_vmm(
            dir.path(),
            vec![
                (Request::State, Some(Reply::State(st.clone()).encode())),
                (pin.clone(), Some(Reply::Done.encode())),
                (
                    Request::PowerButton,
                    Some(domus_vmm_api::encode_refusal(
                        "the domain is paused: resume it first",
                    )),
                ),
                (Request::AckOutcome, Some(r#"{"ok":true,"state":7}"#.into())),
                (Request::State, Some("not json".into())),
                (Request::Destroy, None),
            ],
        );
        let mut c = Control::connect(&path).unwrap();
        assert_eq!(c.state().unwrap(), st);
        c.send(&pin).unwrap();
        match c.send(&Request::PowerButton) {
            Err(VmmError::Refused { cmd, message }) => {
                assert_eq!(cmd, "power-button");
                assert_eq!(message, "the domain is paused: resume it first");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // Extra fields in a data-less reply are tolerated.
        c.send(&Request::AckOutcome).unwrap();
        assert!(matches!(c.state(), Err(VmmError::Control { .. })));
        let err = c.send(&Request::Destroy).unwrap_err();
        assert!(
            format!("{:#}", anyhow::Error::from(err)).contains("control socket closed"),
            "hang-up not reported"
        );
        t.join().unwrap();
    }
}
