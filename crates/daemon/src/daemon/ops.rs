//! Operations on existing domains: shutdown, reboot, destroy, pause, unpause, rename, vcpu-pin, mem-max,
//! config-update. Each resolves the domain under the lock, then talks to its VMM without the lock.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use domus_api::messages::DOMAIN0_NAME;
use domus_vmm_api::{Request, VcpuRunState};
use tracing::{info, warn};

use super::domain::{is_valid_name, DomainConfig, LookupError};
use super::vmm::Control;
use super::{sys, ApiError, Daemon};

/// A running domain's VMM, as resolved for one operation.
pub(super) struct Target {
    pub(super) domid: u32,
    pub(super) generation: u64,
    pub(super) pid: u32,
    pub(super) control: PathBuf,
}

impl Daemon {
    pub(super) fn refuse_domain0(spec: &str, what: &str) -> Result<(), ApiError> {
        if spec == "0" || spec == DOMAIN0_NAME {
            return Err(ApiError::bad_request(format!(
                "cannot {what} Domain-0: it is the host itself"
            )));
        }
        Ok(())
    }

    pub(super) fn running_target(&self, spec: &str, what: &str) -> Result<Target, ApiError> {
        Self::refuse_domain0(spec, what)?;
        let t = self.lock();
        let (domid, d) = t.lookup(spec)?;
        if d.starting {
            return Err(ApiError::conflict(format!(
                "cannot {what} domain {domid} ({}): it is still starting; try again in a moment",
                d.rec.name
            )));
        }
        let Some(v) = &d.rec.vmm else {
            return Err(ApiError::conflict(format!(
                "cannot {what} domain {domid} ({}): it is not running ({:?}); `destroy` removes it",
                d.rec.name,
                d.state()
            )));
        };
        let target = Target {
            domid,
            generation: d.generation,
            pid: v.pid,
            control: v.control.clone().into(),
        };
        drop(t);
        self.make_hot(domid);
        Ok(target)
    }

    pub(super) fn send(target: &Target, req: &Request) -> Result<(), ApiError> {
        let mut c = Control::connect(&target.control).map_err(|e| {
            ApiError::internal(format!(
                "domain {}: {:#}",
                target.domid,
                anyhow::Error::from(e)
            ))
        })?;
        c.send(req).map_err(|e| {
            ApiError::internal(format!(
                "domain {}: {:#}",
                target.domid,
                anyhow::Error::from(e)
            ))
        })
    }

    /// Presses the guest's ACPI power button (a pending reboot request is withdrawn: the last request
    /// wins, as in xl).
    ///
    /// # Errors
    /// 404/409/500 as [`ApiError`].
    pub fn shutdown(self: &Arc<Self>, spec: &str) -> Result<(), ApiError> {
        if self.cancel_pending_restart(spec) {
            return Ok(());
        }
        let t = match self.running_target(spec, "shut down") {
            Ok(t) => t,
            Err(e) if e.status == 409 && self.is_restarted_and_starting(spec) => {
                // A restarted instance still starting cannot see a power button yet: in a restart
                // loop, `shutdown` must win at once, so it stops the instance.
                info!(
                    spec,
                    "shutdown of a restarted domain still starting: destroying it"
                );
                return self.destroy(spec);
            }
            Err(e) => return Err(e),
        };
        let _ = self.set_reboot_requested(&t, false);
        if let Ok((_, d)) = self.lock().lookup(spec) {
            self.restart_guard.request_stop(&d.rec.name);
        }
        info!(domid = t.domid, "power button");
        Self::send(&t, &Request::PowerButton)
    }

    /// Reboots the guest the way libvirt's ACPI reboot does: marks the domain "reboot requested" and
    /// presses the power button; when the guest then powers off, its on_reboot action applies (see
    /// `vmm_stopped`). With `force`, a hard reset instead.
    ///
    /// # Errors
    /// As [`Daemon::shutdown`].
    pub fn reboot(&self, spec: &str, force: bool) -> Result<(), ApiError> {
        let t = self.running_target(spec, "reboot")?;
        self.writable()?;
        if force {
            info!(domid = t.domid, "reset");
            return Self::send(&t, &Request::Reset);
        }
        let marked = self.set_reboot_requested(&t, true);
        info!(domid = t.domid, "power button (reboot requested)");
        let sent = Self::send(&t, &Request::PowerButton);
        if sent.is_err() && marked {
            // Undo only this request's mark: an earlier reboot request may be what the guest is
            // already acting on (its poweroff is then still a reboot).
            self.set_reboot_requested(&t, false);
        }
        sent
    }

    /// Cancels the pending restart of the domain `spec` names when no domain answers to it now (see
    /// `restart_guard`); true when one was cancelled.
    fn cancel_pending_restart(&self, spec: &str) -> bool {
        let t = self.lock();
        if t.lookup(spec).is_ok() || !self.restart_guard.cancel(spec) {
            return false;
        }
        drop(t);
        info!(spec, "pending restart cancelled");
        // The restart decision is recorded (`recovery.rs`): retire it on disk too, so a domusd killed
        // now does not finish a restart the user cancelled.
        if let Ok((recs, _)) = self.records.load_all() {
            for rec in recs {
                let Some(cfg) = &rec.restart else { continue };
                if cfg.name == spec || rec.domid.to_string() == spec {
                    self.retire_restart(rec.domid, rec.name != cfg.name);
                }
            }
        }
        true
    }

    /// Whether `spec` is an instance created by a restart that is still starting.
    fn is_restarted_and_starting(&self, spec: &str) -> bool {
        self.lock()
            .lookup(spec)
            .is_ok_and(|(_, d)| d.starting && d.rec.restarts > 0)
    }

    /// Writes an ELF core of the guest to `path` (xl dump-core); the domain keeps running (or stays
    /// paused). The VMM writes the file; the wait allows ~1 s per 50 MiB of guest memory, at least 30 s.
    ///
    /// # Errors
    /// As [`Daemon::shutdown`]; 400 for a relative path; 500 when the VMM cannot write the core.
    pub fn dump_core(&self, spec: &str, path: &str) -> Result<(), ApiError> {
        if !std::path::Path::new(path).is_absolute() {
            return Err(ApiError::bad_request(format!(
                "dump-core: {path} is not an absolute path"
            )));
        }
        let mib = self
            .lock()
            .lookup(spec)
            .map(|(_, d)| d.info().memory_mib)
            .unwrap_or(0);
        let t = self.running_target(spec, "dump the core of")?;
        info!(domid = t.domid, path, "dump-core");
        let fail = |e: super::vmm::VmmError| {
            ApiError::internal(format!("domain {}: {:#}", t.domid, anyhow::Error::from(e)))
        };
        let mut c = Control::connect(&t.control).map_err(fail)?;
        c.set_reply_timeout(Duration::from_secs((mib / 50).max(30)))
            .map_err(fail)?;
        // domusd creates the file (as root, 0600) and hands it over: a sandboxed VMM cannot create files.
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| ApiError::internal(format!("dump-core: cannot create {path}: {e}")))?
        };
        c.send_with_file(
            &Request::DumpCore {
                path: path.to_owned(),
            },
            &file,
        )
        .map_err(fail)
    }

    /// A serial line BREAK then `key` on the domain's console (xl sysrq): SysRq for a Linux guest.
    ///
    /// # Errors
    /// As [`Daemon::shutdown`]; 400 for a key that is not printable ASCII (the VMM's refusal).
    pub fn sysrq(&self, spec: &str, key: char) -> Result<(), ApiError> {
        if !key.is_ascii_graphic() {
            return Err(ApiError::bad_request(format!(
                "sysrq key {key:?} is not a printable ASCII character"
            )));
        }
        let t = self.running_target(spec, "send sysrq to")?;
        info!(domid = t.domid, key = %key, "sysrq");
        Self::send(&t, &Request::Sysrq { key })
    }

    /// xl trigger (and button-press): `power` presses the ACPI power button; `reset` and `init` reset
    /// the machine (without firmware an INIT restarts the guest, so the domain's reboot outcome
    /// applies); `nmi` injects an NMI into the vCPU (0 by default); `sleep` and `s3resume` are refused
    /// with the reason.
    ///
    /// # Errors
    /// As [`Daemon::shutdown`]; 400 for a trigger Domus cannot deliver.
    pub fn trigger(
        self: &Arc<Self>,
        spec: &str,
        trigger: &str,
        vcpu: Option<u32>,
    ) -> Result<(), ApiError> {
        match trigger {
            "power" => self.shutdown(spec),
            "reset" | "init" => {
                if vcpu.is_some_and(|v| v != 0) {
                    return Err(ApiError::bad_request(format!(
                        "trigger {trigger} resets the whole machine: a vCPU other than 0 cannot be reset alone"
                    )));
                }
                self.reboot(spec, true)
            }
            "sleep" => Err(ApiError::bad_request(
                "the domain has no ACPI sleep button: Domus machines have no sleep states (S3)",
            )),
            "s3resume" => Err(ApiError::bad_request(
                "there is nothing to resume: Domus machines have no S3 (suspend to RAM) state",
            )),
            "nmi" => {
                let t = self.running_target(spec, "send an NMI to")?;
                let vcpu = vcpu.unwrap_or(0);
                info!(domid = t.domid, vcpu, "nmi");
                Self::send(&t, &Request::Nmi { vcpu })
            }
            other => Err(ApiError::bad_request(format!(
                "unknown trigger `{other}`: expected nmi, reset, init, power, sleep or s3resume"
            ))),
        }
    }

    /// Records (persistently) whether the instance's next poweroff is a reboot; true when this changed it.
    fn set_reboot_requested(&self, target: &Target, on: bool) -> bool {
        if let Some(d) = self
            .lock()
            .get_mut(target.domid)
            .filter(|d| d.generation == target.generation && d.rec.reboot_requested != on)
        {
            d.rec.reboot_requested = on;
            self.save(d);
            return true;
        }
        false
    }

    /// Pauses or resumes the guest.
    ///
    /// # Errors
    /// As [`Daemon::shutdown`].
    pub fn set_paused(&self, spec: &str, paused: bool) -> Result<(), ApiError> {
        let t = self.running_target(spec, if paused { "pause" } else { "unpause" })?;
        Self::send(
            &t,
            &if paused {
                Request::Pause
            } else {
                Request::Resume
            },
        )?;
        if let Some(d) = self
            .lock()
            .get_mut(t.domid)
            .filter(|d| d.generation == t.generation)
        {
            d.live.paused = paused;
            for v in &mut d.live.vcpus {
                v.state = if paused {
                    VcpuRunState::Paused
                } else {
                    VcpuRunState::Running
                };
            }
        }
        Ok(())
    }

    /// Destroys a domain: asks its VMM to stop, kills it if it does not, and returns once it is gone.
    ///
    /// # Errors
    /// 404 when there is no such domain.
    pub fn destroy(self: &Arc<Self>, spec: &str) -> Result<(), ApiError> {
        self.destroy_with(spec, false)
    }

    /// [`Daemon::destroy`]; with `unlocked` (after a `save`), a VMM that confirms its guest paused and
    /// its disk locks released (`destroy-unlocked`) has its domain removed at once, its exit and the
    /// cgroup's release going on in the background (`destroy_unlocked` in `save.rs`).
    pub(super) fn destroy_with(
        self: &Arc<Self>,
        spec: &str,
        unlocked: bool,
    ) -> Result<(), ApiError> {
        Self::refuse_domain0(spec, "destroy")?;
        if self.cancel_pending_restart(spec) {
            return Ok(());
        }
        let target = {
            let mut t = self.lock();
            let (domid, d) = t.lookup_mut(spec)?;
            // The record goes first: from here on a restarted domusd finishes the destroy (it sweeps
            // the VMM and the directory no record claims), and no outcome can bring the domain back.
            if !d.dying {
                if let Err(e) = self.records.remove(domid) {
                    return Err(self.mark_degraded(&e.into()));
                }
            }
            match &d.rec.vmm {
                None if d.rec.stopped.is_some() => {
                    self.remove_locked(&mut t, domid);
                    return Ok(());
                }
                None => {
                    // Not spawned yet: the creator notices and stops.
                    self.remove_locked(&mut t, domid);
                    return Ok(());
                }
                Some(v) if d.starting => {
                    // Spawned but not answering yet: no watcher to wait for; the creator reaps it.
                    sys::kill_hard(v.pid);
                    self.remove_locked(&mut t, domid);
                    return Ok(());
                }
                Some(v) => {
                    d.dying = true;
                    Target {
                        domid,
                        generation: d.generation,
                        pid: v.pid,
                        control: v.control.clone().into(),
                    }
                }
            }
        };
        info!(domid = target.domid, "destroying domain");
        if unlocked && self.destroy_unlocked(&target) {
            return Ok(());
        }
        if let Err(e) = Self::send(&target, &Request::Destroy) {
            warn!(domid = target.domid, error = %e, "destroy request failed; killing the VMM");
            sys::kill_hard(target.pid);
        }
        if !self.wait_gone(target.domid, target.generation, self.opts.destroy_timeout) {
            warn!(
                domid = target.domid,
                pid = target.pid,
                "VMM did not stop; killing it"
            );
            sys::kill_hard(target.pid);
            if !self.wait_gone(target.domid, target.generation, Duration::from_secs(3)) {
                let mut t = self.lock();
                if t.get(target.domid)
                    .is_some_and(|d| d.generation == target.generation)
                {
                    self.remove_locked(&mut t, target.domid);
                }
            }
        }
        Ok(())
    }

    /// Waits until the domain's instance `generation` is gone; false on timeout.
    fn wait_gone(&self, domid: u32, generation: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut t = self.lock();
        loop {
            if t.get(domid).is_none_or(|d| d.generation != generation) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            t = self
                .changed
                .wait_timeout(t, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Renames a domain.
    ///
    /// # Errors
    /// 400 for a bad name, 409 when it is taken.
    pub fn rename(&self, spec: &str, new_name: &str) -> Result<(), ApiError> {
        Self::refuse_domain0(spec, "rename")?;
        if !is_valid_name(new_name) {
            return Err(ApiError::bad_request(format!(
                "invalid domain name {new_name:?}: use 1-64 bytes without '/', whitespace, control, format or bidirectional characters; not all digits, not '.' or '..', not Domain-0"
            )));
        }
        self.writable()?;
        let mut t = self.lock();
        let domid = t.resolve(spec)?;
        if t.name_in_use(new_name, Some(domid)) {
            return Err(ApiError::conflict(format!(
                "Domain with name '{new_name}' already exists."
            )));
        }
        let d = t.get_mut(domid).ok_or(LookupError::NoId(domid))?;
        info!(domid, from = %d.rec.name, to = %new_name, "rename");
        let old = d.rec.name.clone();
        d.rec.rename(new_name);
        if let Err(e) = self.persist(d) {
            d.rec.rename(&old);
            return Err(e);
        }
        self.store.update(&Self::store_view(d));
        Ok(())
    }

    /// Sets the maximum memory: the ceiling of later `mem-set`s (recorded and published; the guest
    /// keeps its current memory). The cgroup's memory limit stays what the VMM was started with: its
    /// RAM cannot grow before the next boot, and the limit bounds that RAM.
    ///
    /// # Errors
    /// 400 when below the current memory target (libxl's words) or above the largest guest memory
    /// (`domus_spec::MAX_MEMORY_MIB`).
    pub fn mem_max(&self, spec: &str, mib: u64) -> Result<(), ApiError> {
        Self::refuse_domain0(spec, "change mem-max of")?;
        if mib > domus_spec::MAX_MEMORY_MIB {
            return Err(ApiError::bad_request(format!(
                "mem-max {mib} MiB is out of range: at most {} MiB",
                domus_spec::MAX_MEMORY_MIB
            )));
        }
        self.writable()?;
        let mut t = self.lock();
        let (_, d) = t.lookup_mut(spec)?;
        let cur = d.rec.config.memory_mib;
        if mib < cur {
            return Err(ApiError::bad_request(format!(
                "memory_static_max must be greater than or equal to memory_dynamic_max: mem-max {mib} MiB is below the domain's current memory target of {cur} MiB (lower it first with mem-set)"
            )));
        }
        let old = (d.rec.maxmem_mib, d.rec.config.maxmem_mib);
        d.rec.maxmem_mib = mib;
        d.rec.config.maxmem_mib = mib;
        if let Err(e) = self.persist(d) {
            (d.rec.maxmem_mib, d.rec.config.maxmem_mib) = old;
            return Err(e);
        }
        self.store.update(&Self::store_view(d));
        Ok(())
    }

    /// Replaces the configuration used from the domain's next restart (xl config-update).
    ///
    /// # Errors
    /// 400 for a config we could not run (checked as `create` checks it).
    pub fn config_update(&self, spec: &str, mut config: DomainConfig) -> Result<(), ApiError> {
        Self::refuse_domain0(spec, "update the config of")?;
        self.writable()?;
        let mut t = self.lock();
        let (domid, d) = t.lookup_mut(spec)?;
        d.rec.name.clone_into(&mut config.name);
        d.rec.uuid.clone_into(&mut config.uuid);
        drop(t);
        // The same conversion `create` runs (its files are closed again at once).
        // Disks the running domain holds are locked now; they are checked again at the restart.
        if let Err(mut e) = domus_spec::prepare(&config, &domus_spec::HostLimits::probe()) {
            e.0.retain(|k| !matches!(k.kind, domus_spec::SpecErrorKind::DiskLocked { .. }));
            if !e.0.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "cannot use the new configuration: {e}"
                )));
            }
        }
        let mut t = self.lock();
        let (domid2, d) = t.lookup_mut(spec)?;
        if domid2 != domid {
            return Err(LookupError::NoId(domid).into());
        }
        let old = d.rec.pending_config.replace(config);
        if let Err(e) = self.persist(d) {
            d.rec.pending_config = old;
            return Err(e);
        }
        info!(domid, domname = %d.rec.name, "configuration updated; used from the next restart");
        Ok(())
    }
}
