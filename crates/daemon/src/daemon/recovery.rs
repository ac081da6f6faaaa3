//! A starting domusd recovers to the truth from its records, its runtime directories and the processes
//! that run, whatever instant the previous domusd was killed at:
//! - a create recorded as `creating` is undone (its VMM killed, its directory removed, its domid free);
//! - a destroy removed the record first, so its VMM and directory are swept (below);
//! - a running domain's VMM is re-adopted if it still answers; if it exited meanwhile, the outcome it
//!   kept on disk (`outcome.json`) is applied — a crash only when it kept none;
//! - a restart recorded as decided (`restart` in the old record) is finished once;
//! - every domus-vmm process started for this runtime directory that no record claims is killed, and
//!   every runtime directory no domain claims is removed;
//! - every `vifD.N` TAP no domain claims is deleted, and the nftables table and NAT network are made
//!   to match the domains (see `net.rs`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use domus_api::messages::ShutdownReason;
use tracing::{info, warn};

use super::domain::{Domain, DomainRecord, Live, Phase, HOT_PERIOD};
use super::vmm::{Control, VmmPaths};
use super::{sys, watcher, Daemon};

/// The outcome a VMM kept in `path`, if any.
pub(super) fn kept_outcome(path: &Path) -> Option<(ShutdownReason, String)> {
    let data = std::fs::read(path).ok()?;
    let o: domus_vmm_api::Outcome = serde_json::from_slice(&data).ok()?;
    Some((watcher::reason_of(o.reason), o.detail))
}

/// Kills `pid` and waits (bounded) until it is gone, so its locks and memory are free.
fn kill_and_wait(pid: u32) {
    sys::kill_hard(pid);
    let deadline = Instant::now() + Duration::from_secs(3);
    while sys::pid_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Domus-vmm processes whose control socket lies under `domains_dir`: (pid, domid).
fn vmm_processes(domains_dir: &Path) -> Vec<(u32, u32)> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let prefix = domains_dir.as_os_str().as_encoded_bytes().to_vec();
    let mut out = Vec::new();
    for e in rd.filter_map(Result::ok) {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let Some(control) = args.windows(2).find(|w| w[0] == b"--control").map(|w| w[1]) else {
            continue;
        };
        let Some(rest) = control.strip_prefix(prefix.as_slice()) else {
            continue;
        };
        let domid = rest
            .strip_prefix(b"/")
            .and_then(|r| r.strip_suffix(b"/control.sock"))
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| d.parse::<u32>().ok());
        if let Some(domid) = domid {
            out.push((pid, domid));
        }
    }
    out
}

impl Daemon {
    /// Recovers from the persisted records (see the module docs); call once, before serving.
    ///
    /// # Errors
    /// When the record directory cannot be listed.
    pub fn recover(self: &Arc<Self>) -> anyhow::Result<()> {
        let (recs, warnings) = self.records.load_all()?;
        for w in warnings {
            warn!(record = %w, "ignoring unreadable domain record");
        }
        let mut lost = Vec::new();
        let mut restarts: Vec<DomainRecord> = Vec::new();
        for rec in recs {
            let domid = rec.domid;
            // Ids recorded lately are not handed out again soon, whatever becomes of their records.
            self.lock().skip_past(domid);
            if rec.phase == Phase::Creating {
                if let Some(v) = rec.vmm.as_ref() {
                    if sys::pid_alive(v.pid) && sys::pid_has_arg(v.pid, &v.control) {
                        kill_and_wait(v.pid);
                    }
                }
                info!(domid, domname = %rec.name, "undoing a create domusd did not finish");
                self.forget(domid, &rec.uuid, &rec.config.vifs);
                continue;
            }
            if rec.restart.is_some() {
                restarts.push(rec);
                continue;
            }
            self.adopt(rec, &mut lost);
        }
        self.sweep();
        {
            let t = self.lock();
            self.save_next_domid(&t);
            // Rules and the NAT network as the re-adopted domains need them (never duplicated).
            self.net_sweep(&t);
            self.cgroup_sweep(&t);
            self.net_reconcile(&t, &[]);
        }
        for (domid, generation, reason, detail) in lost {
            self.vmm_stopped(domid, generation, reason, Some(detail));
        }
        for rec in restarts {
            self.resume_restart(rec);
        }
        Ok(())
    }

    /// Puts a recorded domain in the table and re-attaches to its VMM; a VMM that is gone is queued in
    /// `lost` with the outcome it kept (or as a crash).
    fn adopt(
        self: &Arc<Self>,
        rec: DomainRecord,
        lost: &mut Vec<(u32, u64, ShutdownReason, String)>,
    ) {
        let domid = rec.domid;
        let generation = self.next_generation();
        let alive = rec
            .vmm
            .as_ref()
            .is_some_and(|v| sys::pid_alive(v.pid) && sys::pid_has_arg(v.pid, &v.control));
        let adopt = rec.vmm.as_ref().filter(|_| alive).and_then(|v| {
            let mut c = Control::connect(Path::new(&v.control)).ok()?;
            c.state().ok()
        });
        if alive && adopt.is_none() {
            // Alive but not answering: it may be exiting after its guest stopped; give it a moment
            // to finish (and keep its outcome), else it is stopped here.
            if let Some(v) = &rec.vmm {
                let deadline = Instant::now() + Duration::from_secs(2);
                while sys::pid_alive(v.pid) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                if sys::pid_alive(v.pid) {
                    warn!(
                        domid,
                        pid = v.pid,
                        "domain's VMM does not answer; killing it"
                    );
                    kill_and_wait(v.pid);
                }
            }
        }
        let vmm = rec.vmm.clone();
        let name = rec.name.clone();
        let d = Domain {
            rec,
            live: Live::default(),
            dying: false,
            generation,
            hot_until: Instant::now() + HOT_PERIOD,
            starting: false,
        };
        self.store.publish(&Self::store_view(&d));
        self.lock().insert(d);
        let outcome_path = self
            .opts
            .paths
            .domain_runtime_dir(domid)
            .join("outcome.json");
        match (vmm, adopt) {
            (Some(v), Some(st)) => {
                self.update_live(domid, generation, &st);
                let vp = VmmPaths {
                    spec: self.opts.paths.domain_runtime_dir(domid).join("spec.json"),
                    control: v.control.into(),
                    console: v.console.into(),
                    log: self.opts.paths.vmm_log(&name),
                    outcome: outcome_path,
                };
                info!(domid, domname = %name, pid = v.pid, "re-adopted running domain");
                self.start_threads(domid, generation, v.pid, &vp, None, true);
            }
            (Some(v), None) => match kept_outcome(&outcome_path) {
                Some((reason, detail)) => {
                    info!(domid, domname = %name, pid = v.pid, ?reason, "domain's guest stopped while domusd was away; applying its outcome");
                    lost.push((domid, generation, reason, detail));
                }
                None => {
                    warn!(domid, domname = %name, pid = v.pid, "domain's VMM is gone; handling as a crash");
                    lost.push((
                        domid,
                        generation,
                        ShutdownReason::Crash,
                        "domus-vmm exited while domusd was not running".into(),
                    ));
                }
            },
            (None, _) => info!(domid, domname = %name, "kept preserved domain"),
        }
    }

    /// Kills VMMs and removes runtime directories that no domain in the table claims.
    fn sweep(&self) {
        let domains_dir = self
            .opts
            .paths
            .domain_runtime_dir(0)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        for (pid, domid) in vmm_processes(&domains_dir) {
            let claimed = self
                .lock()
                .get(domid)
                .and_then(|d| d.rec.vmm.as_ref())
                .is_some_and(|v| v.pid == pid);
            if !claimed {
                warn!(pid, domid, "killing a domus-vmm no domain record claims");
                kill_and_wait(pid);
            }
        }
        let Ok(rd) = std::fs::read_dir(&domains_dir) else {
            return;
        };
        for e in rd.filter_map(Result::ok) {
            let Some(domid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if self.lock().get(domid).is_none() && !self.records.exists(domid) {
                info!(domid, "removing a runtime directory no domain claims");
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// Finishes a restart a previous domusd decided but may not have completed.
    fn resume_restart(self: &Arc<Self>, rec: DomainRecord) {
        let Some(config) = rec.restart.clone() else {
            return;
        };
        let keep_old = rec.name != config.name;
        let old = rec.domid;
        let done = self
            .lock()
            .iter()
            .any(|d| d.rec.name == config.name && d.rec.domid != old);
        if keep_old {
            let generation = self.next_generation();
            let d = Domain {
                rec: rec.clone(),
                live: Live::default(),
                dying: false,
                generation,
                hot_until: Instant::now(),
                starting: false,
            };
            self.store.publish(&Self::store_view(&d));
            self.lock().insert(d);
        }
        if done {
            self.retire_restart(old, keep_old);
            return;
        }
        info!(domid = old, domname = %config.name, "finishing a restart domusd did not complete");
        let restarts = rec.restarts + 1;
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("restart-{old}"))
            .spawn(move || me.finish_restart(old, config, restarts, keep_old));
        if let Err(e) = spawned {
            warn!(domid = old, error = %e, "cannot start the restart thread");
        }
    }
}
