//! Creating domains, re-adopting them after a domusd restart, and applying on_poweroff / on_reboot /
//! on_crash when a guest stops.

use std::sync::Arc;
use std::time::{Duration, Instant};

use domus_api::messages::{DomainInfo, ShutdownReason};
use tracing::{debug, error, info, warn};

use super::domain::{
    now_epoch, random_uuid, Action, Domain, DomainConfig, DomainRecord, Live, Phase, StopRecord,
    VmmRecord, HOT_PERIOD,
};
use super::restart_guard::Verdict;
use super::vmm::{self, VmmPaths};
use super::{net, watcher, ApiError, Daemon};

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

/// A restore's image (positioned at the VMM's stream), whether it is an incoming live migration, and
/// the descriptor the VMM tells once it reads the stream (`restore_ready_fd`).
type RestoreImage = (std::fs::File, bool, Option<std::fs::File>);

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
        self.create_with(config, paused, 0, None, None)
    }

    /// [`Daemon::create`] of a domain restored from a saved image: the VMM reads the machine's
    /// state from `image` (positioned at the VMM's stream) instead of booting its kernel. With
    /// `incoming` (the receiving end of a live migration), writable disks are opened without their
    /// lock, which the VMM takes once the stream is in (`domus_spec::prepare_incoming`). `ready`
    /// gets one byte from the VMM once it reads the stream.
    ///
    /// # Errors
    /// As [`Daemon::create`]; a damaged stream makes the VMM fail to start (500), and the domain is
    /// removed again.
    pub fn create_restored(
        self: &Arc<Self>,
        config: DomainConfig,
        paused: bool,
        image: std::fs::File,
        incoming: bool,
        ready: Option<std::fs::File>,
    ) -> Result<DomainInfo, ApiError> {
        self.create_with(config, paused, 0, None, Some((image, incoming, ready)))
    }

    /// [`Daemon::create`]; `retire` names the domain whose pending restart this create is (and whether
    /// its record stays), retired in the same step that records this domain as created.
    fn create_with(
        self: &Arc<Self>,
        mut config: DomainConfig,
        paused: bool,
        restarts: u32,
        retire: Option<(u32, bool)>,
        restore: Option<RestoreImage>,
    ) -> Result<DomainInfo, ApiError> {
        if config.uuid.is_empty() {
            config.uuid = random_uuid();
        }
        config.uuid = config.uuid.to_lowercase();
        // The vifs' script, bridge and gateway device as used, kept in the record (see `net.rs`).
        if let Err(e) = net::defaults().and_then(|d| net::resolve_vifs(&mut config, &d)) {
            if restarts > 0 {
                self.restart_guard.take_pending(&config.name);
            }
            return Err(e);
        }
        // `bootloader = "pygrub"` runs here, inside the conversion; the record keeps the config with
        // its bootloader, so every restart runs it again (as Xen does on reboot).
        let boot_opts = domus_spec::BootloaderOptions {
            work_base: self.opts.paths.runtime_dir.join("bootloader"),
            helper: self.opts.bootloader_exe.clone(),
        };
        let prepare = if restore.as_ref().is_some_and(|r| r.1) {
            domus_spec::prepare_incoming
        } else {
            domus_spec::prepare_with
        };
        let prepared = prepare(&config, &domus_spec::HostLimits::probe(), &boot_opts)
            .map_err(|e| self.name_lock_holders(e))
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
        let vifs = config.vifs.clone();
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
            self.writable()?;
            self.admit(&t, &name, config.memory_mib)?;
            net::check_macs(&t, &config)?;
            let domid = t
                .alloc_domid_where(|id| self.domid_unheld(id))
                .ok_or_else(|| ApiError::internal("no free domid left"))?;
            let generation = self.next_generation();
            let d = Domain {
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
                    phase: Phase::Creating,
                    restart: None,
                },
                live: Live {
                    paused: true,
                    ..Live::default()
                },
                dying: false,
                generation,
                hot_until: Instant::now() + HOT_PERIOD,
                starting: true,
            };
            // Recorded before anything is started: a domusd killed from here on undoes this create.
            // Not synced (1-2 ms off the path of every create and of a migration's target): what
            // is started from here on (vifs, a cgroup, the VMM) does not outlive a crash of the
            // host, and the record with the VMM's pid, synced, replaces this one before a jailed
            // VMM is released to exec and before the domain is reported created (`launch`).
            self.persist_unsynced(&d)?;
            debug!(domid, "create: recorded");
            if vifs.iter().any(|v| {
                !matches!(
                    v.script.as_deref(),
                    Some("vif-bridge" | "vif-route" | "vif-nat")
                )
            }) {
                // Xen's hotplug scripts read the vif's nodes while they run.
                self.store.publish(&Self::store_view(&d));
            }
            t.insert(d);
            self.save_next_domid_unsynced(&t);
            (domid, generation)
        };
        info!(domid, domname = %name, "creating domain");
        let config = self.lock().get(domid).map(|d| d.rec.config.clone());
        let plumbed = match config.map(|c| self.net_setup(domid, &c)) {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                let mut t = self.lock();
                self.remove_locked(&mut t, domid);
                error!(domid, domname = %name, error = %e, "domain creation failed");
                return Err(e);
            }
            None => {
                return Err(ApiError::internal(format!(
                    "cannot start domain '{name}': domain {domid} was destroyed while it started"
                )))
            }
        };
        let boot = prepared.boot.clone();
        for line in &boot {
            info!(domid, domname = %name, "{line}");
        }
        match self.launch(
            domid,
            generation,
            &name,
            (prepared, &vifs, plumbed, restore),
            paused,
            retire,
        ) {
            Ok(mut info) => {
                info.boot = boot;
                Ok(info)
            }
            Err(e) => {
                let mut t = self.lock();
                self.remove_locked(&mut t, domid);
                drop(t);
                // A destroy during the start removed the domain (and its vifs) already; vifs
                // plumbed after that are removed here.
                self.net_teardown(domid, &vifs);
                error!(domid, domname = %name, error = %e, "domain creation failed");
                Err(e)
            }
        }
    }

    /// Names, in each "disk in use" refusal, the domain whose VMM holds the disk's lock.
    fn name_lock_holders(&self, mut e: domus_spec::SpecErrors) -> domus_spec::SpecErrors {
        use std::os::unix::fs::MetadataExt;
        let id = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
        let t = self.lock();
        for err in &mut e.0 {
            if let domus_spec::SpecErrorKind::DiskLocked { path, held, .. } = &mut err.kind {
                let want = id(path);
                let holder = t.iter().find(|d| {
                    d.rec.config.disks.iter().any(|k| {
                        k.target
                            .as_deref()
                            .is_some_and(|p| want.is_some() && id(std::path::Path::new(p)) == want)
                    })
                });
                if let Some(d) = holder {
                    *held = format!("held by domain {} ({})", d.rec.domid, d.rec.name);
                }
            }
        }
        e
    }

    /// Spawns the VMM with the prepared spec's resources, waits for its control socket, records it,
    /// publishes it in the store and starts the watcher and console logger.
    fn launch(
        self: &Arc<Self>,
        domid: u32,
        generation: u64,
        name: &str,
        (prepared, vifs, plumbed, restore): (
            domus_spec::Prepared,
            &[domus_config::VifConfig],
            Vec<domus_net::domain::Plumbed>,
            Option<RestoreImage>,
        ),
        paused: bool,
        retire: Option<(u32, bool)>,
    ) -> Result<DomainInfo, ApiError> {
        let failed =
            |e: anyhow::Error| ApiError::internal(format!("cannot start domain '{name}': {e:#}"));
        let paths = &self.opts.paths;
        let vp = VmmPaths::new(&paths.domain_runtime_dir(domid), paths.vmm_log(name));
        let (mut spec, mut files) = prepared.hand_over();
        net::hand_over_taps(&mut spec, &mut files, vifs, plumbed);
        // A restored VMM replays the saved console backlog: the logger skips what the log has.
        let restored = restore.is_some();
        if let Some((image, _, ready)) = restore {
            use std::os::fd::AsRawFd;
            spec.restore_fd = Some(image.as_raw_fd());
            files.push(image);
            if let Some(r) = ready {
                spec.restore_ready_fd = Some(r.as_raw_fd());
                files.push(r);
            }
        }
        let mut child = self
            .launcher
            .spawn(domid, &spec, &files, &vp, paused)
            .map_err(|e| failed(e.into()))?;
        debug!(domid, "create: VMM spawned");
        // The VMM has its copies; domusd's are closed now.
        drop(files);
        let pid = child.id();
        let kill = |child: &mut vmm::VmmChild| {
            child.kill();
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
                return Err(failed(anyhow::anyhow!(
                    "domain {domid} was destroyed while it started"
                )));
            };
            d.rec.vmm = Some(VmmRecord {
                pid,
                control: vp.control.display().to_string(),
                console: vp.console.display().to_string(),
                cgroup: None,
            });
            if let Err(e) = self.persist(d) {
                drop(t);
                kill(&mut child);
                return Err(e);
            }
        }
        debug!(domid, pid, "create: VMM recorded");
        // Into its cgroup before it opens its control socket, so what the guest touches is charged there.
        // Released again if the start fails from here on (the VMM is killed first).
        let mut cgroup_guard = CgroupGuard {
            daemon: self,
            domid,
            leaf: None,
        };
        match self.attach_cgroup(domid, &spec, pid) {
            // Without a cgroup (`--no-cgroups`, or none to manage) the record is unchanged: not
            // written again.
            Ok(None) => {}
            Ok(leaf) => {
                cgroup_guard.leaf.clone_from(&leaf);
                let mut t = self.lock();
                if let Some(v) = t.get_mut(domid).and_then(|d| d.rec.vmm.as_mut()) {
                    v.cgroup.clone_from(&leaf);
                }
                if let Some(d) = t.get_mut(domid) {
                    self.save(d);
                }
                debug!(domid, "create: cgroup recorded");
            }
            Err(e) => {
                kill(&mut child);
                self.release_cgroup(domid, &super::resources::cgroup_leaf(domid, &spec.uuid));
                return Err(failed(e));
            }
        }
        // A sandboxed VMM waited before exec until it was in its cgroup: let it run now.
        if let Err(e) = child.release(&self.opts.vmm_exe) {
            kill(&mut child);
            return Err(failed(e.into()));
        }
        debug!(domid, "create: VMM released");
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
                return Err(failed(e.into()));
            }
        };
        debug!(domid, "create: VMM ready");
        if let Err(e) = Self::apply_hard_affinity(&mut ctl, &spec) {
            kill(&mut child);
            return Err(failed(e.context(format!("domain {domid}"))));
        }
        let st = ctl.state().ok();
        let info = {
            let mut t = self.lock();
            let d = t.get_mut(domid).filter(|d| d.generation == generation);
            let Some(d) = d.filter(|d| !d.dying) else {
                drop(t);
                kill(&mut child);
                return Err(failed(anyhow::anyhow!(
                    "domain {domid} was destroyed while it started"
                )));
            };
            d.rec.phase = Phase::Running;
            // Success is reported only once it is recorded: after any restart, this domain is listed.
            if let Err(e) = self.persist(d) {
                d.rec.phase = Phase::Creating;
                drop(t);
                kill(&mut child);
                return Err(e);
            }
            d.starting = false;
            d.live.paused = false;
            let info = d.info();
            self.store.publish(&Self::store_view(d));
            if let Some((old, keep_old)) = retire {
                self.retire_restart_locked(&mut t, old, keep_old);
            }
            info
        };
        if let Some(st) = st {
            self.update_live(domid, generation, &st);
        }
        cgroup_guard.leaf = None;
        self.start_threads(domid, generation, pid, &vp, Some(child), restored);
        info!(domid, domname = %name, pid, "domain running");
        self.get(&domid.to_string()).or(Ok(info))
    }

    pub(super) fn start_threads(
        self: &Arc<Self>,
        domid: u32,
        generation: u64,
        pid: u32,
        vp: &VmmPaths,
        child: Option<vmm::VmmChild>,
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
        if !matches!(action, Action::Destroy | Action::CoredumpDestroy) {
            // The VMM is gone: so are the domain's vifs (a restart recreates them identically).
            let vifs = d.rec.config.vifs.clone();
            self.net_teardown(domid, &vifs);
        }
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
                let vifs = d.rec.config.vifs.clone();
                self.net_reconcile(&t, &vifs);
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
                let rename = action == Action::RenameRestart;
                if rename {
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
                }
                let Some(d) = t.get_mut(domid) else { return };
                let old_uuid = d.rec.uuid.clone();
                d.rec.vmm = None;
                d.rec.stopped = Some(stop);
                d.live = Live::default();
                // The decision is recorded before it is acted on: a domusd killed from here on
                // finishes the restart (see `recovery.rs`).
                d.rec.restart = Some(config.clone());
                self.save(d);
                if rename {
                    self.store.update(&Self::store_view(d));
                } else {
                    // Out of the table (its name is the new domain's); the record stays until the
                    // new domain is recorded.
                    t.remove(domid);
                    self.store.release(domid, &old_uuid);
                }
                self.changed.notify_all();
                drop(t);
                if restarts > 1 && uptime_s < 1.0 {
                    // A guest that dies at once would otherwise spin; xl has the same pause.
                    std::thread::sleep(Duration::from_secs(1));
                }
                info!(domid, domname = %name, restarts, ?reason, action = action.as_str(), "restarting domain");
                self.finish_restart(domid, config, restarts, rename);
            }
        }
    }

    /// Starts the new domain of a restart decided for domain `old` (recorded in its record's `restart`),
    /// then retires the decision: the old record goes (plain restart) or keeps its preserved domain
    /// without the pending restart (rename-restart).
    pub(super) fn finish_restart(
        self: &Arc<Self>,
        old: u32,
        config: DomainConfig,
        restarts: u32,
        keep_old: bool,
    ) {
        let name = config.name.clone();
        let me = Arc::clone(self);
        if let Err(e) = me.create_with(config, false, restarts, Some((old, keep_old)), None) {
            if e.status == RESTART_CANCELLED {
                info!(domid = old, domname = %name, "restart cancelled by destroy/shutdown");
            } else {
                error!(domname = %name, error = %e, "restart failed");
            }
            if e.status == 503 {
                // Nothing could be recorded: keep the decision for a later domusd to finish.
                return;
            }
            self.retire_restart(old, keep_old);
        }
    }

    /// Drops the pending restart of domain `old` (see [`Daemon::finish_restart`]).
    pub(super) fn retire_restart(&self, old: u32, keep_old: bool) {
        let mut t = self.lock();
        self.retire_restart_locked(&mut t, old, keep_old);
    }

    fn retire_restart_locked(&self, t: &mut super::domain::Table, old: u32, keep_old: bool) {
        if keep_old {
            if let Some(d) = t.get_mut(old) {
                d.rec.restart = None;
                self.save(d);
            }
        } else {
            if let Err(e) = self.records.remove(old) {
                warn!(domid = old, error = %anyhow::Error::from(e), "cannot remove the restarted domain's old record");
            }
            let _ = std::fs::remove_dir_all(self.opts.paths.domain_runtime_dir(old));
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
