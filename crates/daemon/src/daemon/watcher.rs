//! One watcher thread per running domain: polls the VMM's control socket for its state (feeding `list`)
//! and its outcome, acknowledges the outcome, reaps the process, and reports the stop to the supervisor.
//!
//! A VMM we spawned is our child: its exit status is the fallback outcome (0 poweroff, 2 reboot, 3 crash,
//! anything else a crash). A re-adopted VMM is not: its outcome comes only from the control socket, and if
//! it vanishes without one, that is a crash.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

use domusd::api::ShutdownReason;
use tracing::{debug, warn};

use super::vmm::Control;
use super::{sys, Daemon};

/// Consecutive failed polls (with the process alive) before the VMM is declared hung.
const MAX_SILENT_POLLS: u32 = 100;

fn reason_of(s: &str) -> ShutdownReason {
    match s {
        "poweroff" => ShutdownReason::Poweroff,
        "reboot" => ShutdownReason::Reboot,
        _ => ShutdownReason::Crash,
    }
}

/// Maps a VMM exit status to an outcome (contract: 0 poweroff, 2 reboot, 3 crash, 1 VMM error).
pub fn outcome_of_exit(status: ExitStatus) -> (ShutdownReason, String) {
    match (status.code(), status.signal()) {
        (Some(0), _) => (ShutdownReason::Poweroff, "domus-vmm exited 0".into()),
        (Some(2), _) => (ShutdownReason::Reboot, "domus-vmm exited 2".into()),
        (Some(3), _) => (
            ShutdownReason::Crash,
            "domus-vmm exited 3 (guest crashed)".into(),
        ),
        (Some(c), _) => (
            ShutdownReason::Crash,
            format!("domus-vmm failed (exit status {c})"),
        ),
        (None, Some(sig)) => (
            ShutdownReason::Crash,
            format!("domus-vmm killed by signal {sig}"),
        ),
        (None, None) => (ShutdownReason::Crash, "domus-vmm vanished".into()),
    }
}

/// Whether the VMM process has ended; for a child also its status.
fn exited(child: &mut Option<Child>, pid: u32) -> Option<Option<ExitStatus>> {
    match child {
        Some(c) => match c.try_wait() {
            Ok(Some(st)) => Some(Some(st)),
            Ok(None) => None,
            Err(_) => Some(None),
        },
        None => (!sys::pid_alive(pid)).then_some(None),
    }
}

/// Waits (bounded) for the process to end after it reported its outcome; kills it past the bound.
fn wait_exit(child: &mut Option<Child>, pid: u32, bound: Duration) {
    let deadline = Instant::now() + bound;
    while exited(child, pid).is_none() {
        if Instant::now() >= deadline {
            warn!(
                pid,
                "domus-vmm did not exit after reporting its outcome; killing it"
            );
            sys::kill_hard(pid);
            if let Some(c) = child {
                let _ = c.wait();
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The watcher loop; returns when the instance is gone or stopped.
pub fn run(
    daemon: &Arc<Daemon>,
    domid: u32,
    generation: u64,
    pid: u32,
    control: &Path,
    mut child: Option<Child>,
) {
    let mut ctl: Option<Control> = None;
    let mut silent = 0u32;
    loop {
        std::thread::sleep(daemon.opts.poll_interval);
        if !daemon.is_current(domid, generation) {
            // Destroyed (force-removed): still reap our child.
            wait_exit(&mut child, pid, Duration::from_secs(10));
            return;
        }
        if ctl.is_none() {
            ctl = Control::connect(control).ok();
        }
        let reply = ctl.as_mut().map(Control::state);
        match reply {
            Some(Ok(st)) => {
                silent = 0;
                if let Some(o) = st.outcome {
                    if let Some(c) = ctl.as_mut() {
                        let _ = c.simple("ack-outcome");
                    }
                    drop(ctl.take());
                    wait_exit(&mut child, pid, Duration::from_secs(10));
                    daemon.vmm_stopped(domid, generation, reason_of(&o.reason), o.detail);
                    return;
                }
                daemon.update_live(domid, generation, &st);
            }
            other => {
                if let Some(Err(e)) = other {
                    debug!(domid, error = %anyhow::Error::from(e), "control poll failed");
                }
                ctl = None;
                match exited(&mut child, pid) {
                    Some(status) => {
                        let (reason, detail) = match status {
                            Some(st) => outcome_of_exit(st),
                            None => (
                                ShutdownReason::Crash,
                                "domus-vmm exited without reporting an outcome".into(),
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
                            wait_exit(&mut child, pid, Duration::from_secs(5));
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
    fn exit_statuses_follow_the_contract() {
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
