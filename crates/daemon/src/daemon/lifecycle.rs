//! Creating domains, re-adopting them after a domusd restart, and applying on_poweroff / on_reboot /
//! on_crash when a guest stops.

use std::sync::Arc;
use std::time::{Duration, Instant};

use domus_api::messages::{DomainInfo, ShutdownReason};
use tracing::{error, info, warn};

use super::domain::{
    now_epoch, random_uuid, Action, Domain, DomainConfig, DomainRecord, Live, StopRecord,
    VmmRecord, HOT_PERIOD,
};
use super::restart_guard::Verdict;
use super::vmm::{self, Control, VmmPaths};
use super::{sys, watcher, ApiError, Daemon};

/// Status of the internal error for a restart cancelled while pending (never sent to a client).
const RESTART_CANCELLED: u16 = 410;

/// The name a rename-restart gives the old domain: `NAME-YYYYMMDDTHHMM` (UTC), as xl's preserve does.
/// Removes a domain cgroup when a start fails after the VMM joined it.
struct CgroupGuard<'a> {
    daemon: &'a Daemon,
    domid: u32,
    leaf: Option<String>,
}

impl Drop for CgroupGuard<'_> {
    fn drop(&mut self) {
        if let Some(leaf) = self.leaf.take() {
            self.daemon.release_cgroup(self.domid, &leaf);
        }
    }
}

fn preserved_name(name: &str, epoch: f64) -> String {
    let secs = epoch.max(0.0) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{name}-{y:04}{m:02}{d:02}T{:02}{:02}",
        rem / 3600,
        (rem % 3600) / 60
    )
}

impl Daemon {
    /// Creates a domain from its configuration and starts its VMM; returns once the VMM answers.
    ///
    /// The configuration is converted to a VM specification (checked against the host, every file
    /// opened) before anything else: a refused create allocates no domid and leaves nothing behind.
    ///
    /// # Errors
    /// 400 for configs we cannot run (every problem, located), 409 for a name or uuid in use, 500 when
    /// the VMM fails to start (with its last log lines).
    pub fn create(
        self: &Arc<Self>,
        config: DomainConfig,
        paused: bool,
    ) -> Result<DomainInfo, ApiError> {
        self.create_with(config, paused, 0)
    }

    fn create_with(
        self: &Arc<Self>,
        mut config: DomainConfig,
        paused: bool,
        restarts: u32,
    ) -> Result<DomainInfo, ApiError> {
        if config.uuid.is_empty() {
            config.uuid = random_uuid();
        }
        config.uuid = config.uuid.to_lowercase();
        // `bootloader = "pygrub"` runs here, inside the conversion; the record keeps the config with
        // its bootloader, so every restart runs it again (as Xen does on reboot).
        let boot_opts = domus_spec::BootloaderOptions {
            work_base: self.opts.paths.runtime_dir.join("bootloader"),
            helper: self.opts.bootloader_exe.clone(),
        };
        let prepared =
            domus_spec::prepare_with(&config, &domus_spec::HostLimits::probe(), &boot_opts)
                .map_err(|e| {
                    if restarts > 0 {
                        // The restart ends here: nothing is pending any more.
                        self.restart_guard.take_pending(&config.name);
                    }
                    let detail = match e.0.as_slice() {
                        [one] => format!(" {one}"),
                        many => many.iter().map(|m| format!("\n  {m}")).collect(),
                    };
                    ApiError::bad_request(format!("cannot start domain '{}':{detail}", config.name))
                })?;
        let name = config.name.clone();
        let uuid = config.uuid.clone();
        let maxmem_mib = config.maxmem_mib.max(config.memory_mib);
        let vifs = config.vifs.len();
        let (affinity, soft_affinity) = Self::spec_affinity(&prepared.spec);
        let sched = super::domain::SchedParams {
            weight: prepared.spec.placement.weight,
            cap: prepared.spec.placement.cap,
        };
        let (domid, generation) = {
            let mut t = self.lock();
            // A restart that `destroy`/`shutdown` cancelled while it was pending is not done (checked
            // under the table lock, which those take too: they either find the domain or cancel).
            if restarts > 0 && !self.restart_guard.take_pending(&name) {
                return Err(ApiError {
                    status: RESTART_CANCELLED,
                    message: format!("restart of domain '{name}' cancelled"),
                });
            }
            if let Some(other) = t.iter().find(|d| d.rec.name == name) {
                return Err(ApiError::conflict(format!(
                    "Domain with name '{}' already exists (domid {}): choose another name or destroy it first.",
                    name, other.rec.domid
                )));
            }
            if t.uuid_in_use(&uuid) {
                return Err(ApiError::conflict(format!(
                    "Domain with uuid {uuid} already exists."
                )));
            }
            let domid = t
                .alloc_domid()
                .ok_or_else(|| ApiError::internal("no free domid left"))?;
            let generation = self.next_generation();
            t.insert(Domain {
                rec: DomainRecord {
                    domid,
                    name: name.clone(),
                    uuid,
                    config,
                    start_time: now_epoch(),
                    maxmem_mib,
                    vmm: None,
                    stopped: None,
                    restarts,
                    affinity,
                    soft_affinity,
                    sched,
                    pending_config: None,
                    reboot_requested: false,
                },
                live: Live {
                    paused: true,
                    ..Live::default()
                },
                dying: false,
                generation,
                hot_until: Instant::now() + HOT_PERIOD,
                starting: true,
            });
            self.save_next_domid(&t);
            (domid, generation)
        };
        info!(domid, domname = %name, "creating domain");
        if vifs > 0 {
            warn!(domid, domname = %name, vifs, "vif entries accepted, but the domain boots without network (networking is not built yet)");
        }
        let boot = prepared.boot.clone();
        for line in &boot {
            info!(domid, domname = %name, "{line}");
        }
        match self.launch(domid, generation, &name, prepared, paused) {
            Ok(mut info) => {
                info.boot = boot;
                Ok(info)
            }
            Err(e) => {
                let mut t = self.lock();
                self.remove_locked(&mut t, domid);
                error!(domid, domname = %name, error = format!("{e:#}"), "domain creation failed");
                Err(ApiError::internal(format!(
                    "cannot start domain '{name}': {e:#}"
                )))
            }
        }
    }

    /// Spawns the VMM with the prepared spec's resources, waits for its control socket, records it,
    /// publishes it in the store and starts the watcher and console logger.
    fn launch(
        self: &Arc<Self>,
        domid: u32,
        generation: u64,
        name: &str,
        prepared: domus_spec::Prepared,
        paused: bool,
    ) -> anyhow::Result<DomainInfo> {
        let paths = &self.opts.paths;
        let vp = VmmPaths::new(&paths.domain_runtime_dir(domid), paths.vmm_log(name));
        let (spec, files) = prepared.hand_over();
        let mut child = self.launcher.spawn(&spec, &files, &vp, paused)?;
        // The VMM has its copies; domusd's are closed now.
        drop(files);
        let pid = child.id();
        let kill = |child: &mut std::process::Child| {
            let _ = child.kill();
            let _ = child.wait();
        };
        // Record the VMM at once, so a destroy during start (or a domusd crash) can find and stop it.
        {
            let mut t = self.lock();
            let Some(d) = t
                .get_mut(domid)
                .filter(|d| d.generation == generation && !d.dying)
            else {
                drop(t);
                kill(&mut child);
                anyhow::bail!("domain {domid} was destroyed while it started");
            };
            d.rec.vmm = Some(VmmRecord {
                pid,
                control: vp.control.display().to_string(),
                console: vp.console.display().to_string(),
                cgroup: None,
            });
            self.save(d);
        }
        // Into its cgroup before it opens its control socket, so what the guest touches is charged there.
        // Released again if the start fails from here on (the VMM is killed first).
        let mut cgroup_guard = CgroupGuard {
            daemon: self,
            domid,
            leaf: None,
        };
        match self.attach_cgroup(domid, &spec, pid) {
            Ok(leaf) => {
                cgroup_guard.leaf.clone_from(&leaf);
                let mut t = self.lock();
                if let Some(v) = t.get_mut(domid).and_then(|d| d.rec.vmm.as_mut()) {
                    v.cgroup.clone_from(&leaf);
                }
                if let Some(d) = t.get_mut(domid) {
                    self.save(d);
                }
            }
            Err(e) => {
                kill(&mut child);
                self.release_cgroup(domid, &super::resources::cgroup_leaf(domid, &spec.uuid));
                return Err(e);
            }
        }
        let cancelled = || {
            !self
                .lock()
                .get(domid)
                .is_some_and(|d| d.generation == generation && !d.dying)
        };
        let mut ctl = match vmm::wait_ready(&mut child, &vp, self.opts.start_timeout, &cancelled) {
            Ok(c) => c,
            Err(e) => {
                kill(&mut child);
                return Err(e.into());
            }
        };
        if let Err(e) = Self::apply_hard_affinity(&mut ctl, &spec) {
            kill(&mut child);
            return Err(e.context(format!("domain {domid}")));
        }
        let st = ctl.state().ok();
        let info = {
            let mut t = self.lock();
            let d = t.get_mut(domid).filter(|d| d.generation == generation);
            let Some(d) = d.filter(|d| !d.dying) else {
                drop(t);
                kill(&mut child);
                anyhow::bail!("domain {domid} was destroyed while it started");
            };
            d.starting = false;
            d.live.paused = false;
            let info = d.info();
            self.save(d);
            self.store.publish(&Self::store_view(d));
            info
        };
        if let Some(st) = st {
            self.update_live(domid, generation, &st);
        }
        cgroup_guard.leaf = None;
        self.start_threads(domid, generation, pid, &vp, Some(child), false);
        info!(domid, domname = %name, pid, "domain running");
        self.get(&domid.to_string()).or(Ok(info))
    }

    fn start_threads(
        self: &Arc<Self>,
        domid: u32,
        generation: u64,
        pid: u32,
        vp: &VmmPaths,
        child: Option<std::process::Child>,
        reattached: bool,
    ) {
        let me = Arc::clone(self);
        let inst = watcher::Instance {
            domid,
            generation,
            pid,
            control: vp.control.clone(),
            console: vp.console.clone(),
            child,
            reattached,
        };
        let spawned = std::thread::Builder::new()
            .name(format!("watch-{domid}"))
            .stack_size(128 * 1024)
            .spawn(move || watcher::run(&me, inst));
        if let Err(e) = spawned {
            error!(domid, error = %e, "cannot start the domain's watcher thread");
        }
    }

    /// Loads the persisted records and re-adopts every VMM still running; domains whose VMM vanished
    /// while domusd was away are handled as crashed.
    pub fn recover(self: &Arc<Self>) -> anyhow::Result<()> {
        let (recs, warnings) = self.records.load_all()?;
        for w in warnings {
            warn!(record = %w, "ignoring unreadable domain record");
        }
        let mut lost = Vec::new();
        for rec in recs {
            let domid = rec.domid;
            let generation = self.next_generation();
            let adopt = rec.vmm.as_ref().and_then(|v| {
                if !sys::pid_alive(v.pid) || !sys::pid_has_arg(v.pid, &v.control) {
                    return None;
                }
                let mut c = Control::connect(std::path::Path::new(&v.control)).ok()?;
                c.state().ok()
            });
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
            match (vmm, adopt) {
                (Some(v), Some(st)) => {
                    self.update_live(domid, generation, &st);
                    let vp = VmmPaths {
                        spec: self.opts.paths.domain_runtime_dir(domid).join("spec.json"),
                        control: v.control.into(),
                        console: v.console.into(),
                        log: self.opts.paths.vmm_log(&name),
                    };
                    info!(domid, domname = %name, pid = v.pid, "re-adopted running domain");
                    self.start_threads(domid, generation, v.pid, &vp, None, true);
                }
                (Some(v), None) => {
                    warn!(domid, domname = %name, pid = v.pid, "domain's VMM is gone; handling as a crash");
                    lost.push((domid, generation));
                }
                (None, _) => info!(domid, domname = %name, "kept preserved domain"),
            }
        }
        {
            let t = self.lock();
            self.save_next_domid(&t);
        }
        for (domid, generation) in lost {
            self.vmm_stopped(
                domid,
                generation,
                ShutdownReason::Crash,
                Some("domus-vmm exited while domusd was not running".into()),
            );
        }
        Ok(())
    }

    /// A guest stopped (or its VMM died): apply the configured action.
    pub(super) fn vmm_stopped(
        self: &Arc<Self>,
        domid: u32,
        generation: u64,
        reason: ShutdownReason,
        detail: Option<String>,
    ) {
        let mut t = self.lock();
        let Some(d) = t.get_mut(domid).filter(|d| d.generation == generation) else {
            return;
        };
        if let Some(leaf) = d.rec.vmm.as_mut().and_then(|v| v.cgroup.take()) {
            self.release_cgroup(domid, &leaf);
        }
        if d.dying {
            self.remove_locked(&mut t, domid);
            return;
        }
        let reason = if reason == ShutdownReason::Poweroff && d.rec.reboot_requested {
            // `reboot` pressed the power button: this poweroff is the guest's reboot.
            info!(domid, domname = %d.rec.name, "guest powered off after a reboot request");
            ShutdownReason::Reboot
        } else {
            reason
        };
        d.rec.reboot_requested = false;
        let action = match reason {
            ShutdownReason::Reboot => d.rec.config.on_reboot,
            ShutdownReason::Crash => d.rec.config.on_crash,
            _ => d.rec.config.on_poweroff,
        };
        let name = d.rec.name.clone();
        info!(domid, domname = %name, ?reason, detail = detail.as_deref().unwrap_or(""), action = action.as_str(), "guest stopped");
        let uptime_s = (now_epoch() - d.rec.start_time).max(0.0);
        let stop = StopRecord {
            reason,
            detail,
            uptime_s,
        };
        match action {
            Action::Destroy | Action::CoredumpDestroy => self.remove_locked(&mut t, domid),
            Action::Preserve => {
                d.rec.vmm = None;
                d.rec.stopped = Some(stop);
                d.live = Live::default();
                self.save(d);
                self.changed.notify_all();
            }
            Action::Restart | Action::RenameRestart | Action::CoredumpRestart
                if reason == ShutdownReason::Poweroff
                    && self.restart_guard.take_stop_request(&name) =>
            {
                info!(domid, domname = %name, "powered off after `shutdown` while restarting in a loop: not restarted");
                self.remove_locked(&mut t, domid);
            }
            Action::Restart | Action::RenameRestart | Action::CoredumpRestart => {
                if let Verdict::Loop { count, limit } =
                    self.restart_guard.begin(&name, domid, Instant::now())
                {
                    error!(
                        domid,
                        domname = %name,
                        restarts = count,
                        limit = %limit,
                        "restart loop: {count} restarts within {} s; domain left {} instead of restarted (domusd --restart-limit); `destroy` removes it",
                        limit.window.as_secs(),
                        if reason == ShutdownReason::Crash { "crashed" } else { "shut down" }
                    );
                    d.rec.vmm = None;
                    d.rec.stopped = Some(stop);
                    d.live = Live::default();
                    self.save(d);
                    self.changed.notify_all();
                    return;
                }
                let config = d
                    .rec
                    .pending_config
                    .take()
                    .unwrap_or_else(|| d.rec.config.clone());
                let restarts = d.rec.restarts + 1;
                if action == Action::RenameRestart {
                    let base = preserved_name(&name, now_epoch());
                    let mut new_name = base.clone();
                    for k in 2.. {
                        if !t.name_in_use(&new_name, Some(domid)) {
                            break;
                        }
                        new_name = format!("{base}-{k}");
                    }
                    let Some(d) = t.get_mut(domid) else { return };
                    d.rec.rename(&new_name);
                    d.rec.uuid = random_uuid();
                    d.rec.config.uuid.clone_from(&d.rec.uuid);
                    d.rec.vmm = None;
                    d.rec.stopped = Some(stop);
                    d.live = Live::default();
                    self.save(d);
                    self.store.update(&Self::store_view(d));
                    self.changed.notify_all();
                } else {
                    self.remove_locked(&mut t, domid);
                }
                drop(t);
                if restarts > 1 && uptime_s < 1.0 {
                    // A guest that dies at once would otherwise spin; xl has the same pause.
                    std::thread::sleep(Duration::from_secs(1));
                }
                info!(domid, domname = %name, restarts, ?reason, action = action.as_str(), "restarting domain");
                let me = Arc::clone(self);
                match me.create_with(config, false, restarts) {
                    Ok(_) => {}
                    Err(e) if e.status == RESTART_CANCELLED => {
                        info!(domid, domname = %name, "restart cancelled by destroy/shutdown");
                    }
                    Err(e) => error!(domname = %name, error = %e, "restart failed"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preserved_names_carry_a_utc_timestamp() {
        assert_eq!(preserved_name("web", 0.0), "web-19700101T0000");
        assert_eq!(preserved_name("web", 1_700_000_000.0), "web-20231114T2213");
        assert_eq!(preserved_name("a", 951_782_400.0), "a-20000229T0000");
    }
}
