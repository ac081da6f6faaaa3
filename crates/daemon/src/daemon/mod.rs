//! The supervisor: the domain table behind one mutex, the VMM processes it runs, and what happens when a
//! guest stops. The HTTP API (`server.rs`) calls into [`Daemon`]; per-domain threads (`watcher.rs`,
//! `console_log.rs`) report back into it.
//!
//! A create runs `domus_spec::prepare` first (every check that needs the host, every file opened), so a
//! refused config allocates nothing; the domain record keeps the typed `DomainConfig`, and the VMM gets
//! the spec and the opened files as inherited descriptors (`vmm.rs`, behind the [`vmm::Launcher`] seam
//! the unit tests fill with a fake VMM).
//!
//! Threads: one intake thread reading every API connection, bounded worker pools serving complete
//! requests (`intake.rs`), and per running domain a watcher
//! (waits on the VMM's pidfd and console, polls its control socket, reaps it) and a console logger. No
//! thread holds the table lock while it waits on a process or a socket.

mod admission;
pub mod console_log;
pub mod control_watch;
pub mod dmesg;
pub mod domain;
pub mod door;
pub mod host;
mod intake;
pub mod jail;
mod lifecycle;
#[cfg(test)]
mod lifecycle_tests;
mod net;
mod ops;
pub mod records;
mod recovery;
pub mod resources;
pub mod restart_guard;
mod save;
pub mod server;
pub mod sizing;
pub mod store;
mod sys;
pub mod vbd;
pub mod vmm;
mod watcher;
mod writeback;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use domus_api::messages::{DomainInfo, DomainState, VcpuInfo, DOMAIN0_NAME};
use domus_api::paths::Paths;
use domus_vmm_api::{MachineState, StateReply};
use tracing::{info, warn};

use dmesg::DmesgRing;
use domain::{Domain, Live, Table};
use records::Records;
use store::{DomainStore, StoreDomain};

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directories.
    pub paths: Paths,
    /// The domus-vmm binary.
    pub vmm_exe: PathBuf,
    /// The domus-bootloader helper (pygrub); `None`: next to the running domusd.
    pub bootloader_exe: Option<PathBuf>,
    /// How often each watcher asks its VMM for its state while the domain is "hot".
    pub poll_interval: Duration,
    /// How often otherwise.
    pub idle_poll_interval: Duration,
    /// Console log size cap (bytes) before rotation.
    pub console_log_max_bytes: u64,
    /// How long a VMM may take to open its control socket.
    pub start_timeout: Duration,
    /// How long `destroy` waits for a VMM before killing it.
    pub destroy_timeout: Duration,
    /// Memory kept for the host (MiB): running domains' memory plus this must fit the host's memory.
    pub host_reserve_mib: u64,
    /// Admit domains beyond the host's memory (logged when it happens).
    pub overcommit: bool,
    /// The host memory admission counts against (MiB); `None` reads /proc/meminfo (MemTotal).
    pub host_memory_mib: Option<u64>,
    /// Name of the Domus parent cgroup (made inside domusd's own cgroup); `None`: no cgroups.
    pub cgroup_parent: Option<String>,
    /// The restart-loop guard's limit (`None`: off); see [`restart_guard`].
    pub restart_limit: Option<restart_guard::RestartLimit>,
    /// How VMMs are sandboxed ([`jail`]); `None`: not at all (`--no-sandbox`, for debugging).
    pub sandbox: Option<jail::SandboxSettings>,
}

/// An error for the API: an HTTP status and a message for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Message.
    pub message: String,
}

/// A failed domain lookup is a 404 with xl's wording.
impl From<domain::LookupError> for ApiError {
    fn from(e: domain::LookupError) -> Self {
        Self::not_found(e.to_string())
    }
}

impl ApiError {
    /// 400.
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: m.into(),
        }
    }
    /// 404.
    pub fn not_found(m: impl Into<String>) -> Self {
        Self {
            status: 404,
            message: m.into(),
        }
    }
    /// 503: the state directory cannot be written; nothing was changed.
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self {
            status: 503,
            message: m.into(),
        }
    }
    /// 409.
    pub fn conflict(m: impl Into<String>) -> Self {
        Self {
            status: 409,
            message: m.into(),
        }
    }
    /// 500.
    pub fn internal(m: impl Into<String>) -> Self {
        Self {
            status: 500,
            message: m.into(),
        }
    }
}

/// The supervisor.
pub struct Daemon {
    /// Options.
    pub opts: Options,
    table: Mutex<Table>,
    changed: Condvar,
    records: Records,
    store: Box<dyn DomainStore>,
    launcher: Box<dyn vmm::Launcher>,
    /// The log ring for `dmesg`.
    pub dmesg: DmesgRing,
    generations: AtomicU64,
    /// Why the state directory cannot be written, while it cannot (changes are refused meanwhile).
    degraded: Mutex<Option<String>>,
    restart_guard: restart_guard::RestartGuard,
    /// The Domus parent cgroup, when the host has usable cgroups.
    cgroups: Option<domus_cgroup::Cgroups>,
    net: net::NetState,
    /// The latest progress report of each save in progress, by domid.
    saving: save::SaveProgress,
}

impl Daemon {
    /// A daemon with no domains yet (call [`Daemon::recover`] next).
    ///
    /// # Errors
    /// When the state directory is unusable.
    pub fn new(
        opts: Options,
        store: Box<dyn DomainStore>,
        dmesg: DmesgRing,
    ) -> anyhow::Result<Arc<Self>> {
        let launcher: Box<dyn vmm::Launcher> = match &opts.sandbox {
            Some(settings) => Box::new(jail::JailedVmm {
                exe: opts.vmm_exe.clone(),
                settings: settings.clone(),
            }),
            None => Box::new(vmm::DomusVmm {
                exe: opts.vmm_exe.clone(),
            }),
        };
        Self::with_launcher(opts, store, dmesg, launcher)
    }

    /// [`Daemon::new`] with another way of starting VMMs (tests use a fake VMM).
    ///
    /// # Errors
    /// When the state directory is unusable.
    pub fn with_launcher(
        opts: Options,
        store: Box<dyn DomainStore>,
        dmesg: DmesgRing,
        launcher: Box<dyn vmm::Launcher>,
    ) -> anyhow::Result<Arc<Self>> {
        let records = Records::open(&opts.paths.state_dir)?;
        let table = Table::new(records.load_next_domid());
        let restart_guard = restart_guard::RestartGuard::new(opts.restart_limit);
        let cgroups = Self::detect_cgroups(opts.cgroup_parent.as_deref());
        Ok(Arc::new(Self {
            cgroups,
            restart_guard,
            opts,
            table: Mutex::new(table),
            changed: Condvar::new(),
            records,
            store,
            launcher,
            dmesg,
            generations: AtomicU64::new(1),
            degraded: Mutex::new(None),
            net: net::NetState::default(),
            saving: save::SaveProgress::default(),
        }))
    }

    /// Writes Domain-0's store nodes.
    pub fn publish_host(&self) {
        self.store.publish_host();
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::Relaxed)
    }

    /// Persists a domain's record; on failure the state directory is marked unwritable (changes are
    /// refused until it recovers) and the caller must not report success.
    fn persist(&self, d: &Domain) -> Result<(), ApiError> {
        if d.dying {
            // Its record is already gone (destroy removes it first); never bring it back.
            return Ok(());
        }
        self.records.save(&d.rec).map_err(|e| {
            let e = anyhow::Error::from(e);
            warn!(domid = d.rec.domid, domname = %d.rec.name, error = %format!("{e:#}"), "cannot persist domain record");
            self.mark_degraded(&e)
        })
    }

    /// [`Daemon::persist`] without the sync (`Records::save_unsynced`): a domain's "Creating"
    /// record, which the synced record of its VMM replaces before that VMM is let run.
    fn persist_unsynced(&self, d: &Domain) -> Result<(), ApiError> {
        self.records.save_unsynced(&d.rec).map_err(|e| {
            let e = anyhow::Error::from(e);
            warn!(domid = d.rec.domid, domname = %d.rec.name, error = %format!("{e:#}"), "cannot persist domain record");
            self.mark_degraded(&e)
        })
    }

    /// `Records::save_next_domid_unsynced` (next to [`Daemon::persist_unsynced`]).
    fn save_next_domid_unsynced(&self, t: &Table) {
        if let Err(e) = self.records.save_next_domid_unsynced(t.next_domid()) {
            warn!(error = %anyhow::Error::from(e), "cannot persist next domid");
        }
    }

    /// [`Daemon::persist`] where the change already happened (live facts, flags): logged, not returned.
    fn save(&self, d: &Domain) {
        let _ = self.persist(d);
    }

    fn save_next_domid(&self, t: &Table) {
        if let Err(e) = self.records.save_next_domid(t.next_domid()) {
            warn!(error = %anyhow::Error::from(e), "cannot persist next domid");
        }
    }

    /// Records that the state directory cannot be written; returns the refusal to give the client.
    fn mark_degraded(&self, e: &anyhow::Error) -> ApiError {
        let why = format!("{e:#}");
        let mut g = self.degraded.lock().unwrap_or_else(PoisonError::into_inner);
        if g.is_none() {
            warn!(error = %why, "state directory not writable: refusing creates and changes until it is");
        }
        *g = Some(why.clone());
        ApiError::unavailable(format!(
            "state directory {} cannot be written ({why}): nothing was changed; running domains are unaffected",
            self.opts.paths.state_dir.display()
        ))
    }

    /// Ok when changes can be recorded: while the state directory was found unwritable, probes it again
    /// (so the daemon recovers by itself once space returns).
    ///
    /// # Errors
    /// 503 naming why the state directory cannot be written.
    fn writable(&self) -> Result<(), ApiError> {
        let mut g = self.degraded.lock().unwrap_or_else(PoisonError::into_inner);
        if g.is_none() {
            return Ok(());
        }
        match self.records.probe() {
            Ok(()) => {
                info!("state directory writable again: accepting changes");
                *g = None;
                Ok(())
            }
            Err(e) => {
                let why = format!("{:#}", anyhow::Error::from(e));
                *g = Some(why.clone());
                Err(ApiError::unavailable(format!(
                    "state directory {} cannot be written ({why}): refusing changes until it can; running domains are unaffected",
                    self.opts.paths.state_dir.display()
                )))
            }
        }
    }

    /// Whether domid `id` is free of everything that could still hold it: a record, a runtime
    /// directory (a VMM may still run there), besides the table.
    fn domid_unheld(&self, id: u32) -> bool {
        !self.records.exists(id) && !self.opts.paths.domain_runtime_dir(id).exists()
    }

    fn store_view(d: &Domain) -> StoreDomain {
        let info = d.info();
        StoreDomain {
            domid: info.domid,
            name: info.name,
            uuid: info.uuid,
            // The target (libxl's memory/target), not what the guest holds right now.
            memory_mib: d.rec.config.memory_mib,
            maxmem_mib: info.maxmem_mib,
            vcpus: info.vcpus,
            maxvcpus: d.rec.config.maxvcpus,
            start_time: info.start_time,
            console: info.console_path,
            disks: d.rec.config.disks.clone(),
            vifs: d.rec.config.vifs.clone(),
            vifs_wired: d.rec.phase != domain::Phase::Creating,
            vmm_pid: info.pid,
            domain_type: d.rec.config.domain_type.as_str().to_owned(),
        }
    }

    /// Removes a domain from the table, its record (first: once it is gone, a restarted domusd finishes
    /// the removal), its store nodes and its runtime directory.
    fn remove_locked(&self, t: &mut Table, domid: u32) {
        if let Some(d) = t.remove(domid) {
            info!(domid, domname = %d.rec.name, "domain destroyed");
            if let Some(leaf) = d.rec.vmm.as_ref().and_then(|v| v.cgroup.as_deref()) {
                self.release_cgroup(domid, leaf);
            }
            self.forget(domid, &d.rec.uuid, &d.rec.config.vifs);
            self.net_reconcile(t, &d.rec.config.vifs);
        }
        self.changed.notify_all();
    }

    /// Removes what a domain leaves outside the table: record, vifs, store nodes, runtime directory.
    fn forget(&self, domid: u32, uuid: &str, vifs: &[domus_config::VifConfig]) {
        if let Err(e) = self.records.remove(domid) {
            warn!(domid, error = %anyhow::Error::from(e), "cannot remove domain record");
        }
        self.net_teardown(domid, vifs);
        self.store.release(domid, uuid);
        let _ = std::fs::remove_dir_all(self.opts.paths.domain_runtime_dir(domid));
    }

    /// `None` when `generation` is no longer the domain's running VMM instance, else whether it is "hot".
    fn instance_hot(&self, domid: u32, generation: u64) -> Option<bool> {
        let t = self.lock();
        let d = t
            .get(domid)
            .filter(|d| d.generation == generation && d.rec.vmm.is_some())?;
        Some(d.dying || d.hot_until > std::time::Instant::now())
    }

    /// Marks a domain "hot": its watcher polls often for a while (something is about to change).
    fn make_hot(&self, domid: u32) {
        if let Some(d) = self.lock().get_mut(domid) {
            d.hot_until = std::time::Instant::now() + domain::HOT_PERIOD;
        }
    }

    /// The console log file for the domain's current name, while `generation` is current.
    fn console_log_path(&self, domid: u32, generation: u64) -> Option<PathBuf> {
        let t = self.lock();
        let d = t.get(domid).filter(|d| d.generation == generation)?;
        Some(self.opts.paths.console_log(&d.rec.name))
    }

    /// Records what the VMM last reported.
    fn update_live(&self, domid: u32, generation: u64, st: &StateReply) {
        let mut t = self.lock();
        if let Some(d) = t.get_mut(domid).filter(|d| d.generation == generation) {
            // The pid domusd started (the host's); a sandboxed VMM reports its own namespace's (1).
            let pid = d.rec.vmm.as_ref().map_or(st.pid, |v| v.pid);
            let ran_on = resources::vcpu_host_cpus(pid);
            d.live = Live {
                paused: st.state == MachineState::Paused,
                vcpus: st
                    .vcpus
                    .iter()
                    .map(|v| VcpuInfo {
                        id: v.id,
                        state: v.state,
                        cpu_time_ns: v.cpu_time_ns,
                        affinity: None,
                        soft_affinity: None,
                        cpu: ran_on.get(&v.id).copied(),
                    })
                    .collect(),
                memory_mib: Some(st.memory_mib),
                disks: st.disks.clone(),
                nics: st.nics.clone(),
            };
        }
    }

    /// Domain-0's row: the host itself.
    fn domain0() -> DomainInfo {
        let nr = host::nr_cpus();
        DomainInfo {
            domid: 0,
            name: DOMAIN0_NAME.to_owned(),
            uuid: "00000000-0000-0000-0000-000000000000".to_owned(),
            state: DomainState::Running,
            shutdown_reason: None,
            stop_detail: None,
            memory_mib: host::total_memory_mib(),
            maxmem_mib: host::total_memory_mib(),
            vcpus: nr,
            cpu_time_ns: host::host_cpu_time_ns(),
            start_time: 0.0,
            uptime_s: std::fs::read_to_string("/proc/uptime")
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
                .unwrap_or(0.0),
            vcpu_info: Vec::new(),
            console_path: None,
            pid: None,
            restarts: 0,
            config: None,
            sched: domain::SchedParams::default().into(),
            boot: Vec::new(),
            disk_stats: Vec::new(),
            nic_stats: Vec::new(),
        }
    }

    /// Every domain, Domain-0 first.
    pub fn list(&self) -> Vec<DomainInfo> {
        let mut out = vec![Self::domain0()];
        out.extend(self.lock().iter().map(Domain::info));
        out
    }

    /// One domain by xl's domain argument.
    ///
    /// # Errors
    /// 404 with xl's wording.
    pub fn get(&self, spec: &str) -> Result<DomainInfo, ApiError> {
        if spec == "0" || spec == DOMAIN0_NAME {
            return Ok(Self::domain0());
        }
        let t = self.lock();
        let (_, d) = t.lookup(spec)?;
        Ok(d.info())
    }

    /// Host facts.
    pub fn host(&self) -> domus_api::messages::HostInfo {
        let n = u32::try_from(self.lock().len()).unwrap_or(u32::MAX);
        host::host_info(n, self.opts.paths.xenstored_socket().display().to_string())
    }
}
