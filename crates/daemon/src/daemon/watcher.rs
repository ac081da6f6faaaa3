//! One watcher thread per running domain: logs its console, polls the VMM's control socket for its state
//! (feeding `list`) and its outcome, acknowledges the outcome, reaps the process, and reports the stop to
//! the supervisor. Polls come every `poll_interval` while the domain is "hot" (just created, or a lifecycle
//! operation was asked for), every `idle_poll_interval` otherwise, so idle domains cost domusd little.
//!
//! The watcher learns that its VMM exited through a pidfd (pidfd_open(2)): the descriptor becomes readable
//! when the process ends, and the watcher's one poll(2) waits on it together with the console socket, so
//! an exit is noticed at once rather than at the next control poll. A VMM we spawned is our child: its
//! exit status is the fallback outcome (0 poweroff, 2 reboot, 3 crash, anything else a crash). A
//! re-adopted VMM is not: its outcome comes only from the control socket, and if it vanishes without one,
//! that is a crash.

use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;

use super::vmm::VmmChild as Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use domus_api::messages::ShutdownReason;
use domus_vmm_api::{Reason, Request};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use tracing::{debug, warn};

use super::console_log::ConsoleLogger;
use super::vmm::Control;
use super::{sys, Daemon};

/// Consecutive failed polls (with the process alive) before the VMM is declared hung.
const MAX_SILENT_POLLS: u32 = 100;

pub(super) fn reason_of(r: Reason) -> ShutdownReason {
    match r {
        Reason::Poweroff => ShutdownReason::Poweroff,
        Reason::Reboot => ShutdownReason::Reboot,
        Reason::Crash => ShutdownReason::Crash,
    }
}

/// Maps a VMM exit status to an outcome ([`Reason::from_exit_code`]: 0 poweroff, 2 reboot, 3 crash; 1 is
/// a VMM error, reported as a crash like any other status).
pub fn outcome_of_exit(status: ExitStatus) -> (ShutdownReason, String) {
    let reason = status.code().and_then(Reason::from_exit_code);
    match (status.code(), status.signal(), reason) {
        (Some(c), _, Some(Reason::Crash)) => (
            ShutdownReason::Crash,
            format!("domus-vmm exited {c} (guest crashed)"),
        ),
        (Some(c), _, Some(r)) => (reason_of(r), format!("domus-vmm exited {c}")),
        (Some(c), _, None) => (
            ShutdownReason::Crash,
            format!("domus-vmm failed (exit status {c})"),
        ),
        (None, Some(sig), _) if sig == libc::SIGSYS => (
            ShutdownReason::Crash,
            format!(
                "domus-vmm killed by signal {sig} (SIGSYS: a system call its seccomp filter denies)"
            ),
        ),
        (None, Some(sig), _) => (
            ShutdownReason::Crash,
            format!("domus-vmm killed by signal {sig}"),
        ),
        (None, None, _) => (ShutdownReason::Crash, "domus-vmm vanished".into()),
    }
}

/// The VMM process a watcher waits on: our child (when we spawned it) and a pidfd that becomes readable
/// when it ends.
struct Process {
    pid: u32,
    child: Option<Child>,
    pidfd: Option<OwnedFd>,
}

impl Process {
    fn new(pid: u32, child: Option<Child>) -> Self {
        let pidfd = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .and_then(|p| {
                rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())
                    .map_err(|e| debug!(pid, error = %e, "pidfd_open failed; watching by pid"))
                    .ok()
            });
        Self { pid, child, pidfd }
    }

    /// Whether the pidfd says the process ended, waiting up to `timeout`.
    fn pidfd_ended(&self, timeout: Duration) -> Option<bool> {
        let fd = self.pidfd.as_ref()?;
        let ts = timespec(timeout);
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        Some(matches!(poll(&mut fds, Some(&ts)), Ok(n) if n > 0))
    }

    /// Whether the process has ended; for a child also its status.
    fn exited(&mut self) -> Option<Option<ExitStatus>> {
        match &mut self.child {
            Some(c) => match c.try_wait() {
                Ok(Some(st)) => Some(Some(st)),
                Ok(None) => None,
                Err(_) => Some(None),
            },
            None => match self.pidfd_ended(Duration::ZERO) {
                Some(ended) => ended.then_some(None),
                None => (!sys::pid_alive(self.pid)).then_some(None),
            },
        }
    }

    /// Waits (bounded) for the process to end after it reported its outcome; kills it past the bound.
    fn wait_exit(&mut self, bound: Duration) {
        let deadline = Instant::now() + bound;
        while self.exited().is_none() {
            let now = Instant::now();
            if now >= deadline {
                warn!(
                    pid = self.pid,
                    "domus-vmm did not exit after reporting its outcome; killing it"
                );
                sys::kill_hard(self.pid);
                if let Some(c) = &mut self.child {
                    let _ = c.wait();
                }
                return;
            }
            let step = (deadline - now).min(Duration::from_millis(50));
            if self.pidfd_ended(step).is_none() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

/// The console side of a watcher: connects (retrying while the VMM starts) and logs what arrives.
struct Console {
    path: PathBuf,
    stream: Option<UnixStream>,
    closed: bool,
    give_up: Instant,
    logger: ConsoleLogger,
}

impl Console {
    /// Waits up to `timeout` for console bytes (logging them) or for `exit` (a pidfd) to become
    /// readable; returns whether it did.
    fn pump(&mut self, domid: u32, timeout: Duration, exit: Option<&OwnedFd>) -> bool {
        if self.stream.is_none() && !self.closed {
            match UnixStream::connect(&self.path) {
                Ok(s) => self.stream = Some(s),
                Err(e) if Instant::now() >= self.give_up => {
                    warn!(domid, error = %e, path = %self.path.display(), "console socket unreachable; console not logged");
                    self.closed = true;
                }
                Err(_) => {}
            }
        }
        let ts = timespec(timeout);
        let Some(stream) = self.stream.as_mut() else {
            self.logger.idle();
            match exit {
                Some(fd) => {
                    let mut fds = [PollFd::new(fd, PollFlags::IN)];
                    return matches!(poll(&mut fds, Some(&ts)), Ok(n) if n > 0);
                }
                None => std::thread::sleep(timeout),
            }
            return false;
        };
        let mut fds: Vec<PollFd<'_>> = vec![PollFd::new(&*stream, PollFlags::IN)];
        if let Some(fd) = exit {
            fds.push(PollFd::new(fd, PollFlags::IN));
        }
        match poll(&mut fds, Some(&ts)) {
            Ok(0) | Err(_) => {
                self.logger.idle();
                return false;
            }
            Ok(_) => {}
        }
        let ended = fds.get(1).is_some_and(|f| !f.revents().is_empty());
        if fds[0].revents().is_empty() {
            return ended;
        }
        let mut buf = [0u8; 16 * 1024];
        match stream.read(&mut buf) {
            Ok(0) => {
                self.stream = None;
                self.closed = true;
            }
            Ok(n) => self.logger.write(&buf[..n]),
            Err(e)
                if e.kind() == io::ErrorKind::Interrupted
                    || e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                debug!(domid, error = %e, "console read failed");
                self.stream = None;
                self.closed = true;
            }
        }
        ended
    }
}

/// One domain instance's VMM, as its watcher needs it.
pub struct Instance {
    /// Domain id.
    pub domid: u32,
    /// The instance's generation.
    pub generation: u64,
    /// The VMM's pid.
    pub pid: u32,
    /// Its control socket.
    pub control: PathBuf,
    /// Its console socket.
    pub console: PathBuf,
    /// The process, when domusd spawned it (not for re-adopted VMMs).
    pub child: Option<Child>,
    /// Re-adopted after a domusd restart.
    pub reattached: bool,
}

/// The watcher loop: logs the console as it arrives, polls the control socket (often while the domain is
/// "hot" after a lifecycle operation, rarely otherwise) and returns once the instance is gone or stopped.
pub fn run(daemon: &Arc<Daemon>, inst: Instance) {
    let Instance {
        domid,
        generation,
        pid,
        control,
        console,
        child,
        reattached,
    } = inst;
    let mut process = Process::new(pid, child);
    let mut console = Console {
        path: console,
        stream: None,
        closed: false,
        give_up: Instant::now() + Duration::from_secs(30),
        logger: ConsoleLogger::new(Arc::clone(daemon), domid, generation, reattached),
    };
    let mut ctl: Option<Control> = None;
    let mut silent = 0u32;
    let mut next_poll = Instant::now() + daemon.opts.poll_interval;
    loop {
        let now = Instant::now();
        if now < next_poll {
            let wait = (next_poll - now).min(daemon.opts.poll_interval);
            if console.pump(domid, wait, process.pidfd.as_ref()) {
                // The VMM ended: look at its control socket and status now.
                next_poll = Instant::now();
            }
            continue;
        }
        let Some(hot) = daemon.instance_hot(domid, generation) else {
            // Destroyed (force-removed): still reap our child.
            process.wait_exit(Duration::from_secs(10));
            return;
        };
        next_poll = Instant::now()
            + if hot {
                daemon.opts.poll_interval
            } else {
                daemon.opts.idle_poll_interval
            };
        if ctl.is_none() {
            ctl = Control::connect(&control).ok();
        }
        let reply = ctl.as_mut().map(Control::state);
        match reply {
            Some(Ok(st)) => {
                silent = 0;
                if let Some(o) = st.outcome {
                    if let Some(c) = ctl.as_mut() {
                        let _ = c.send(&Request::AckOutcome);
                    }
                    drop(ctl.take());
                    // Log what the guest printed last before its VMM goes away.
                    console.pump(domid, Duration::from_millis(20), None);
                    process.wait_exit(Duration::from_secs(10));
                    daemon.vmm_stopped(domid, generation, reason_of(o.reason), Some(o.detail));
                    return;
                }
                daemon.update_live(domid, generation, &st);
            }
            other => {
                if let Some(Err(e)) = other {
                    debug!(domid, error = %anyhow::Error::from(e), "control poll failed");
                }
                ctl = None;
                next_poll = Instant::now() + daemon.opts.poll_interval;
                match process.exited() {
                    Some(status) => {
                        let kept = super::recovery::kept_outcome(
                            &daemon
                                .opts
                                .paths
                                .domain_runtime_dir(domid)
                                .join("outcome.json"),
                        );
                        let (reason, detail) = match (kept, status) {
                            (Some(k), _) => k,
                            (None, Some(st)) => outcome_of_exit(st),
                            (None, None) => (
                                ShutdownReason::Crash,
                                "domus-vmm died without an outcome (a re-adopted VMM: its exit status, e.g. SIGSYS from its seccomp filter, is not visible to this domusd)".into(),
                            ),
                        };
                        daemon.vmm_stopped(domid, generation, reason, Some(detail));
                        return;
                    }
                    None => {
                        silent += 1;
                        if silent >= MAX_SILENT_POLLS {
                            warn!(
                                domid,
                                pid,
                                "domus-vmm stopped answering on its control socket; killing it"
                            );
                            sys::kill_hard(pid);
                            process.wait_exit(Duration::from_secs(5));
                            daemon.vmm_stopped(
                                domid,
                                generation,
                                ShutdownReason::Crash,
                                Some("domus-vmm stopped answering on its control socket".into()),
                            );
                            return;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_map_to_outcomes() {
        let st = |code: i32| ExitStatus::from_raw(code << 8);
        assert_eq!(outcome_of_exit(st(0)).0, ShutdownReason::Poweroff);
        assert_eq!(outcome_of_exit(st(2)).0, ShutdownReason::Reboot);
        assert_eq!(outcome_of_exit(st(3)).0, ShutdownReason::Crash);
        assert_eq!(outcome_of_exit(st(1)).1, "domus-vmm failed (exit status 1)");
        assert_eq!(
            outcome_of_exit(ExitStatus::from_raw(9)).1,
            "domus-vmm killed by signal 9"
        );
    }
}
