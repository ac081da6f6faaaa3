//! The main thread's loop: console input (stdin, pty, unix clients), console client flushing, the control
//! socket, and the wake-up when the guest stops; then the bounded linger for `ack-outcome`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::control_target::Ctl;
use super::shared::Shared;
use super::vcpus::Vcpus;
use crate::console::ConsoleHub;
use crate::control::ControlServer;
use crate::devices::virtio::manager::DeviceManager;
use crate::devices::Devices;
use crate::outcome::Outcome;

const TOKEN_WAKE: u64 = 1;
const TOKEN_STDIN: u64 = 2;
const TOKEN_PTY: u64 = 3;
const TOKEN_CONSOLE_LISTENER: u64 = 4;
const TOKEN_CONTROL_LISTENER: u64 = 5;
const TOKEN_SIGNAL: u64 = 6;
const CONSOLE_CLIENT: u64 = 1 << 32;
const CONTROL_CLIENT: u64 = 2 << 32;
const CLIENT_MASK: u64 = (1 << 32) - 1;

/// What the loop works with.
pub struct LoopContext<'a> {
    /// Shared machine state.
    pub shared: &'a Arc<Shared>,
    /// Devices (console input, power button).
    pub devices: &'a Arc<Devices>,
    /// Console hub.
    pub hub: &'a ConsoleHub,
    /// vCPU threads (pause, resume, CPU time).
    pub vcpus: &'a RefCell<Vcpus>,
    /// Virtio devices (their threads pause and resume with the vCPUs).
    pub virtio: &'a RefCell<DeviceManager>,
    /// Guest RAM for `state`.
    pub memory_mib: u64,
    /// The VM (for `save`).
    pub vm: &'a crate::vstate::vm::Vm,
    /// Guest RAM (for `migrate`'s dirty tracking).
    pub ram: &'a crate::vstate::memory::GuestRam,
    /// The disks (for `migrate`'s lock hand-over).
    pub disks: &'a [crate::config::VmDisk],
    /// vCPU creation for `set-vcpus`.
    pub hotplug: &'a super::hotplug::VcpuFactory<'a>,
    /// Guest memory (for `dump-core`).
    pub mem: &'a crate::vstate::memory::GuestMem,
    /// Console listener.
    pub console_listener: Option<UnixListener>,
    /// Control listener.
    pub control_listener: Option<UnixListener>,
    /// Pty master.
    pub pty: Option<File>,
    /// Read console input from stdin.
    pub stdin: bool,
    /// signalfd for SIGTERM/SIGINT/SIGHUP.
    pub signals: File,
    /// Linger after the stop, waiting for ack-outcome.
    pub linger: Duration,
    /// Where to keep the outcome once the guest stopped, so a supervisor that was away when this VMM
    /// exited still learns it.
    pub outcome_file: Option<OutcomeFile>,
}

/// Where the outcome is kept.
#[derive(Debug)]
pub enum OutcomeFile {
    /// A path this VMM writes (temporary file and rename).
    Path(std::path::PathBuf),
    /// A file its supervisor opened for it (a sandboxed VMM cannot create files).
    Open(std::fs::File),
}

impl OutcomeFile {
    fn keep(&self, outcome: &Outcome) -> io::Result<()> {
        match self {
            Self::Path(p) => keep_outcome(p, outcome),
            Self::Open(f) => {
                use std::os::unix::fs::FileExt;
                let data = serde_json::to_vec(outcome).map_err(io::Error::other)?;
                f.set_len(0)?;
                f.write_all_at(&data, 0)?;
                f.sync_all()
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Path(p) => p.display().to_string(),
            Self::Open(_) => "the outcome descriptor".into(),
        }
    }
}

/// Writes the outcome to `path` durably (temporary file, fsync, rename, directory fsync), mode 0600.
fn keep_outcome(path: &std::path::Path, outcome: &Outcome) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    let data = serde_json::to_vec(outcome).map_err(io::Error::other)?;
    f.write_all(&data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn add(epoll: &Epoll, fd: i32, token: u64) -> io::Result<()> {
    epoll.ctl(
        ControlOperation::Add,
        fd,
        EpollEvent::new(EventSet::IN, token),
    )
}

/// Runs until the guest stopped (and, with a control socket, the outcome was acknowledged or the linger
/// expired); returns the outcome.
///
/// # Errors
/// epoll failures.
pub fn run(mut ctx: LoopContext<'_>) -> io::Result<Outcome> {
    let epoll = Epoll::new()?;
    add(&epoll, ctx.shared.wake.as_raw_fd(), TOKEN_WAKE)?;
    add(&epoll, ctx.signals.as_raw_fd(), TOKEN_SIGNAL)?;
    if ctx.stdin {
        // A regular file or /dev/null cannot be polled; then there is simply no console input.
        let _ignored = add(&epoll, libc::STDIN_FILENO, TOKEN_STDIN);
    }
    if let Some(p) = &ctx.pty {
        add(&epoll, p.as_raw_fd(), TOKEN_PTY)?;
    }
    if let Some(l) = &ctx.console_listener {
        l.set_nonblocking(true)?;
        add(&epoll, l.as_raw_fd(), TOKEN_CONSOLE_LISTENER)?;
    }
    let mut control = match ctx.control_listener {
        Some(l) => {
            let s = ControlServer::new(l)?;
            add(&epoll, s.listener().as_raw_fd(), TOKEN_CONTROL_LISTENER)?;
            Some(s)
        }
        None => None,
    };
    let ctl = Ctl::new(
        ctx.shared,
        ctx.devices,
        ctx.vcpus,
        ctx.virtio,
        ctx.memory_mib,
        ctx.mem,
    )
    .with_save(super::save::SaveSources {
        vm: ctx.vm,
        hub: ctx.hub,
        ram: ctx.ram,
        shared: ctx.shared,
        disks: ctx.disks,
    })
    .with_hotplug(ctx.hotplug);
    let mut console_clients: HashMap<u64, UnixStream> = HashMap::new();
    let mut events = vec![EpollEvent::default(); 32];
    let mut deadline: Option<Instant> = None;
    let mut buf = [0u8; 4096];
    loop {
        if ctx.shared.should_stop() {
            let now = Instant::now();
            if deadline.is_none() {
                if let (Some(file), Some(o)) = (&ctx.outcome_file, ctx.shared.outcome()) {
                    if let Err(e) = file.keep(&o) {
                        tracing::warn!(path = %file.describe(), error = %e, "cannot keep the outcome on disk");
                    }
                }
            }
            let d = *deadline.get_or_insert(now + ctx.linger);
            if control.is_none() || ctl.is_acked() || now >= d {
                break;
            }
        }
        let timeout_ms = if ctx.hub.flush_clients() { 10 } else { 200 };
        let n = match epoll.wait(timeout_ms, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for ev in events.iter().take(n) {
            let token = ev.data();
            match token {
                TOKEN_WAKE => {
                    let _ignored = ctx.shared.wake.read();
                }
                TOKEN_SIGNAL => {
                    if let Some(sig) = crate::sys::read_signal(&mut ctx.signals) {
                        let name = match i32::try_from(sig).unwrap_or(0) {
                            libc::SIGINT => "SIGINT",
                            libc::SIGHUP => "SIGHUP",
                            _ => "SIGTERM",
                        };
                        // Like `destroy`: the host asked for the domain to go away.
                        ctx.shared.finish(Outcome::new(
                            crate::outcome::Reason::Poweroff,
                            format!("destroyed by {name}"),
                        ));
                        // Nobody will acknowledge the outcome: do not linger.
                        deadline = Some(Instant::now());
                    }
                }
                TOKEN_STDIN => match io::stdin().lock().read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ignored = epoll.ctl(
                            ControlOperation::Delete,
                            libc::STDIN_FILENO,
                            EpollEvent::default(),
                        );
                    }
                    Ok(k) => ctx.devices.console_input(&buf[..k]),
                },
                TOKEN_PTY => {
                    if let Some(k) = ctx.hub.read_pty(&mut buf).filter(|k| *k > 0) {
                        ctx.devices.console_input(&buf[..k]);
                    }
                }
                TOKEN_CONSOLE_LISTENER => {
                    if let Some(l) = &ctx.console_listener {
                        while let Ok((stream, _)) = l.accept() {
                            let Ok(id) = ctx.hub.add_client(stream) else {
                                continue;
                            };
                            if let Some(s) = ctx.hub.client_stream(id) {
                                if add(&epoll, s.as_raw_fd(), CONSOLE_CLIENT | id).is_ok() {
                                    console_clients.insert(id, s);
                                }
                            }
                        }
                    }
                }
                TOKEN_CONTROL_LISTENER => {
                    if let Some(c) = &mut control {
                        for (id, fd) in c.accept() {
                            let _ignored = add(&epoll, fd, CONTROL_CLIENT | id);
                        }
                    }
                }
                t if t & !CLIENT_MASK == CONSOLE_CLIENT => {
                    let id = t & CLIENT_MASK;
                    let gone = match console_clients.get_mut(&id).map(|s| s.read(&mut buf)) {
                        Some(Ok(0)) | None => true,
                        Some(Ok(k)) => {
                            ctx.devices.console_input(&buf[..k]);
                            false
                        }
                        Some(Err(e)) => e.kind() != io::ErrorKind::WouldBlock,
                    };
                    if gone {
                        if let Some(s) = console_clients.remove(&id) {
                            let _ignored = epoll.ctl(
                                ControlOperation::Delete,
                                s.as_raw_fd(),
                                EpollEvent::default(),
                            );
                        }
                        ctx.hub.remove_client(id);
                    }
                }
                t if t & !CLIENT_MASK == CONTROL_CLIENT => {
                    if let Some(c) = &mut control {
                        c.service(t & CLIENT_MASK, &ctl);
                    }
                }
                _ => {}
            }
        }
    }
    ctx.hub.flush_clients();
    Ok(ctx.shared.outcome().unwrap_or_else(|| {
        Outcome::new(
            crate::outcome::Reason::Crash,
            "vCPUs stopped without an outcome",
        )
    }))
}
