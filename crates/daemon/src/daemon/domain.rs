//! The domain table: domid allocation, unique names, per-domain records and the state each domain is in.
//!
//! Owns no processes and does no i/o: `lifecycle.rs` drives it, `records.rs` persists [`DomainRecord`]s.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a domain stays "hot" (polled often) after creation or a lifecycle operation.
pub const HOT_PERIOD: Duration = Duration::from_secs(10);

use domus_api::messages::{DomainInfo, DomainState, ShutdownReason, VcpuInfo, VcpuRunState};
use serde::{Deserialize, Serialize};

/// First domid Xen reserves (DOMID_FIRST_RESERVED); ours wrap below it.
pub const DOMID_LIMIT: u32 = 0x7ff0;

/// An `on_poweroff`/`on_reboot`/`on_crash` action (xl.cfg(5)): domus-config's type.
pub use domus_config::Action;
/// The typed domain configuration the record holds.
pub use domus_config::DomainConfig;
/// Domain names: the spec crate's rule, shared with `create`'s checks.
pub use domus_spec::is_valid_name;

/// The VMM process of a running domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmmRecord {
    /// Its pid.
    pub pid: u32,
    /// Control socket.
    pub control: String,
    /// Console socket.
    pub console: String,
    /// Its cgroup's leaf name under domusd's cgroup parent, when cgroups are in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
}

/// A domain's scheduler parameters, in xl's credit-scheduler terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedParams {
    /// Weight (1-65535; 256 = the default share).
    pub weight: u32,
    /// Cap, percent of one CPU (0 = none).
    pub cap: u32,
}

impl Default for SchedParams {
    fn default() -> Self {
        Self {
            weight: domus_spec::affinity::DEFAULT_WEIGHT,
            cap: 0,
        }
    }
}

/// How a domain's guest stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopRecord {
    /// Why.
    pub reason: ShutdownReason,
    /// The VMM's detail.
    pub detail: Option<String>,
    /// Uptime when it stopped, seconds.
    pub uptime_s: f64,
}

/// Where a domain is in its life, as recorded before each step is acted on (destroying is recorded by
/// removing the record, before the VMM is stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Domid allocated, VMM being started: a domusd that restarts in this phase undoes the create.
    Creating,
    /// Created (running, or stopped and preserved).
    #[default]
    Running,
}

/// What is persisted about a domain (`$DOMUS_STATE_DIR/domains/<domid>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainRecord {
    /// Domain id.
    pub domid: u32,
    /// Name.
    pub name: String,
    /// UUID.
    pub uuid: String,
    /// The configuration (name and uuid kept in sync with `name` and `uuid`).
    pub config: DomainConfig,
    /// Start time, seconds since the epoch.
    pub start_time: f64,
    /// Maximum memory, MiB.
    pub maxmem_mib: u64,
    /// The VMM while one runs.
    pub vmm: Option<VmmRecord>,
    /// Set once the guest stopped and the domain is preserved.
    pub stopped: Option<StopRecord>,
    /// Restarts under this name so far.
    #[serde(default)]
    pub restarts: u32,
    /// vCPU pinning, by vCPU.
    #[serde(default)]
    pub affinity: BTreeMap<u32, Vec<u32>>,
    /// Soft affinity (`cpus_soft`, vcpu-pin's SOFT), by vCPU: stored and reported.
    #[serde(default)]
    pub soft_affinity: BTreeMap<u32, Vec<u32>>,
    /// Scheduler weight and cap (sched-credit).
    #[serde(default)]
    pub sched: SchedParams,
    /// A configuration given by `config-update`, used from the next restart.
    #[serde(default)]
    pub pending_config: Option<DomainConfig>,
    /// `reboot` pressed the power button: when the guest now powers off, on_reboot applies instead of
    /// on_poweroff (libvirt's ACPI reboot).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reboot_requested: bool,
    /// The lifecycle phase.
    #[serde(default)]
    pub phase: Phase,
    /// A restart decided on (on_reboot/on_crash/on_poweroff) and not yet completed: the configuration to
    /// start. Kept until the new domain is recorded as created, so a domusd killed meanwhile finishes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<DomainConfig>,
}

impl DomainRecord {
    /// Renames the domain, in the record and its configuration.
    pub fn rename(&mut self, name: &str) {
        name.clone_into(&mut self.name);
        name.clone_into(&mut self.config.name);
    }
}

/// Live facts from the VMM's last `state` reply.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// The VMM said "paused".
    pub paused: bool,
    /// Per-vCPU detail.
    pub vcpus: Vec<VcpuInfo>,
    /// Memory the VMM reported.
    pub memory_mib: Option<u64>,
    /// Per-disk I/O counters the VMM reported, in the config's order.
    pub disks: Vec<domus_api::messages::DiskStats>,
    /// Per-NIC traffic counters the VMM reported, in the config's order.
    pub nics: Vec<domus_api::messages::NicStats>,
}

/// One domain in the table.
#[derive(Debug, Clone)]
pub struct Domain {
    /// The persisted part.
    pub rec: DomainRecord,
    /// What the VMM last reported.
    pub live: Live,
    /// Being destroyed.
    pub dying: bool,
    /// Increments with each VMM instance, so stale watchers recognise they are stale.
    pub generation: u64,
    /// Until when its watcher polls the VMM often (after creation and lifecycle operations).
    pub hot_until: Instant,
    /// Its VMM is starting (not answering yet; no watcher yet).
    pub starting: bool,
}

/// Seconds since the epoch, now.
pub fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Domain {
    /// The state xl would show.
    pub fn state(&self) -> DomainState {
        if self.dying {
            return DomainState::Dying;
        }
        if let Some(s) = &self.rec.stopped {
            return if s.reason == ShutdownReason::Crash {
                DomainState::Crashed
            } else {
                DomainState::Shutdown
            };
        }
        if self.live.paused {
            return DomainState::Paused;
        }
        if !self.live.vcpus.is_empty()
            && self
                .live
                .vcpus
                .iter()
                .filter(|v| v.state != VcpuRunState::Offline)
                .all(|v| v.state == VcpuRunState::Blocked)
        {
            return DomainState::Blocked;
        }
        DomainState::Running
    }

    /// The API view.
    pub fn info(&self) -> DomainInfo {
        // Online vCPUs as the VMM last reported them (vcpu-set changes them), else the config's.
        let online = self
            .live
            .vcpus
            .iter()
            .filter(|v| v.state != VcpuRunState::Offline)
            .count();
        let vcpus = match u32::try_from(online) {
            Ok(n) if n > 0 => n,
            _ => self.rec.config.vcpus,
        };
        let memory_mib = self.live.memory_mib.unwrap_or(self.rec.config.memory_mib);
        let uptime_s = match &self.rec.stopped {
            Some(s) => s.uptime_s,
            None => (now_epoch() - self.rec.start_time).max(0.0),
        };
        let mut vcpu_info = self.live.vcpus.clone();
        for v in &mut vcpu_info {
            v.affinity = self.rec.affinity.get(&v.id).cloned();
            v.soft_affinity = self.rec.soft_affinity.get(&v.id).cloned();
        }
        DomainInfo {
            domid: self.rec.domid,
            name: self.rec.name.clone(),
            uuid: self.rec.uuid.clone(),
            state: self.state(),
            shutdown_reason: self.rec.stopped.as_ref().map(|s| s.reason),
            stop_detail: self.rec.stopped.as_ref().and_then(|s| s.detail.clone()),
            memory_mib,
            maxmem_mib: self.rec.maxmem_mib,
            vcpus,
            cpu_time_ns: self.live.vcpus.iter().map(|v| v.cpu_time_ns).sum(),
            start_time: self.rec.start_time,
            uptime_s,
            vcpu_info,
            console_path: self.rec.vmm.as_ref().map(|v| v.console.clone()),
            pid: self.rec.vmm.as_ref().map(|v| v.pid),
            restarts: self.rec.restarts,
            config: Some(self.rec.config.clone()),
            sched: self.rec.sched.into(),
            boot: Vec::new(),
            disk_stats: self.live.disks.clone(),
            nic_stats: self.live.nics.clone(),
        }
    }
}

/// Lookup failures, worded as xl words them.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LookupError {
    /// No domain has this name.
    #[error("Can't get domid of domain name '{0}', maybe this domain does not exist.")]
    NoName(String),
    /// No domain has this id.
    #[error("Domain {0} does not exist.")]
    NoId(u32),
}

/// All domains domusd supervises (Domain-0 is not in the table).
#[derive(Debug)]
pub struct Table {
    domains: BTreeMap<u32, Domain>,
    next_domid: u32,
}

impl Table {
    /// An empty table whose next domid is `next_domid` (1 if 0 or out of range).
    pub fn new(next_domid: u32) -> Self {
        let next_domid = if (1..DOMID_LIMIT).contains(&next_domid) {
            next_domid
        } else {
            1
        };
        Self {
            domains: BTreeMap::new(),
            next_domid,
        }
    }

    /// The next domid to try (persisted so ids are not reused soon after a restart).
    pub fn next_domid(&self) -> u32 {
        self.next_domid
    }

    /// Allocates a domid not in use; `None` when every id is taken.
    #[cfg(test)]
    pub fn alloc_domid(&mut self) -> Option<u32> {
        self.alloc_domid_where(|_| true)
    }

    /// Allocates a domid not in the table for which `free` also holds (no record, directory or process
    /// still holds it); `None` when every id is taken.
    pub fn alloc_domid_where(&mut self, free: impl Fn(u32) -> bool) -> Option<u32> {
        for _ in 1..DOMID_LIMIT {
            let id = self.next_domid;
            self.next_domid = if id + 1 >= DOMID_LIMIT { 1 } else { id + 1 };
            if !self.domains.contains_key(&id) && free(id) {
                return Some(id);
            }
        }
        None
    }

    /// Resolves xl's "domain" argument: all digits = domid, else a name.
    ///
    /// # Errors
    /// [`LookupError`] with xl's wording.
    pub fn resolve(&self, spec: &str) -> Result<u32, LookupError> {
        if !spec.is_empty() && spec.bytes().all(|b| b.is_ascii_digit()) {
            let id: u32 = spec
                .parse()
                .map_err(|_| LookupError::NoName(spec.to_owned()))?;
            return if self.domains.contains_key(&id) {
                Ok(id)
            } else {
                Err(LookupError::NoId(id))
            };
        }
        self.domains
            .values()
            .find(|d| d.rec.name == spec)
            .map(|d| d.rec.domid)
            .ok_or_else(|| LookupError::NoName(spec.to_owned()))
    }

    /// Resolves xl's "domain" argument (see [`Table::resolve`]) to the domain itself.
    ///
    /// # Errors
    /// [`LookupError`] with xl's wording.
    pub fn lookup(&self, spec: &str) -> Result<(u32, &Domain), LookupError> {
        let domid = self.resolve(spec)?;
        let d = self.get(domid).ok_or(LookupError::NoId(domid))?;
        Ok((domid, d))
    }

    /// [`Table::lookup`], mutable.
    ///
    /// # Errors
    /// [`LookupError`] with xl's wording.
    pub fn lookup_mut(&mut self, spec: &str) -> Result<(u32, &mut Domain), LookupError> {
        let domid = self.resolve(spec)?;
        let d = self.get_mut(domid).ok_or(LookupError::NoId(domid))?;
        Ok((domid, d))
    }

    /// Whether another domain (not `except`) already uses `name`.
    pub fn name_in_use(&self, name: &str, except: Option<u32>) -> bool {
        self.domains
            .values()
            .any(|d| d.rec.name == name && Some(d.rec.domid) != except)
    }

    /// Whether a domain already uses `uuid`.
    pub fn uuid_in_use(&self, uuid: &str) -> bool {
        self.domains
            .values()
            .any(|d| d.rec.uuid.eq_ignore_ascii_case(uuid))
    }

    /// Inserts a domain (its domid must come from [`Table::alloc_domid_where`] or a record).
    pub fn insert(&mut self, d: Domain) {
        self.skip_past(d.rec.domid);
        self.domains.insert(d.rec.domid, d);
    }

    /// Moves the next domid past `domid` (held by a record outside the table).
    pub fn skip_past(&mut self, domid: u32) {
        if domid >= self.next_domid && domid + 1 < DOMID_LIMIT {
            self.next_domid = domid + 1;
        }
    }

    /// Removes a domain.
    pub fn remove(&mut self, domid: u32) -> Option<Domain> {
        self.domains.remove(&domid)
    }

    /// A domain by id.
    pub fn get(&self, domid: u32) -> Option<&Domain> {
        self.domains.get(&domid)
    }

    /// A domain by id, mutable.
    pub fn get_mut(&mut self, domid: u32) -> Option<&mut Domain> {
        self.domains.get_mut(&domid)
    }

    /// All domains by domid.
    pub fn iter(&self) -> impl Iterator<Item = &Domain> {
        self.domains.values()
    }

    /// How many domains.
    pub fn len(&self) -> usize {
        self.domains.len()
    }
}

/// A random (version 4) UUID.
pub fn random_uuid() -> String {
    let a = fastrand::u64(..);
    let b = fastrand::u64(..);
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x4000;
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom(domid: u32, name: &str) -> Domain {
        let mut config = DomainConfig::with_defaults(name);
        config.memory_mib = 16;
        config.kernel = Some("/k".into());
        Domain {
            rec: DomainRecord {
                domid,
                name: name.into(),
                uuid: random_uuid(),
                config,
                start_time: now_epoch(),
                maxmem_mib: 16,
                vmm: None,
                stopped: None,
                restarts: 0,
                affinity: BTreeMap::new(),
                soft_affinity: BTreeMap::new(),
                sched: SchedParams::default(),
                pending_config: None,
                reboot_requested: false,
                phase: Phase::Running,
                restart: None,
            },
            live: Live::default(),
            dying: false,
            generation: 1,
            hot_until: Instant::now(),
            starting: false,
        }
    }

    #[test]
    fn domids_are_not_reused_while_in_use() {
        let mut t = Table::new(0);
        let a = t.alloc_domid().unwrap();
        t.insert(dom(a, "a"));
        let b = t.alloc_domid().unwrap();
        t.insert(dom(b, "b"));
        assert_eq!((a, b), (1, 2));
        t.remove(a);
        assert_eq!(
            t.alloc_domid(),
            Some(3),
            "freed ids are not reused right away"
        );
        let mut w = Table::new(DOMID_LIMIT - 1);
        assert_eq!(w.alloc_domid(), Some(DOMID_LIMIT - 1));
        assert_eq!(w.alloc_domid(), Some(1), "wraps below the reserved range");
    }

    #[test]
    fn resolve_uses_xl_words() {
        let mut t = Table::new(1);
        t.insert(dom(5, "web"));
        assert_eq!(t.resolve("web"), Ok(5));
        assert_eq!(t.resolve("5"), Ok(5));
        assert_eq!(
            t.resolve("x").unwrap_err().to_string(),
            "Can't get domid of domain name 'x', maybe this domain does not exist."
        );
        assert_eq!(t.resolve("9"), Err(LookupError::NoId(9)));
        assert!(t.name_in_use("web", None));
        assert!(!t.name_in_use("web", Some(5)));
    }

    #[test]
    fn state_follows_live_and_stop() {
        let mut d = dom(1, "a");
        assert_eq!(d.state(), DomainState::Running);
        d.live.vcpus = vec![VcpuInfo {
            id: 0,
            state: VcpuRunState::Blocked,
            cpu_time_ns: 5,
            affinity: None,
            soft_affinity: None,
            cpu: None,
        }];
        assert_eq!(d.state(), DomainState::Blocked);
        d.live.paused = true;
        assert_eq!(d.state(), DomainState::Paused);
        d.rec.stopped = Some(StopRecord {
            reason: ShutdownReason::Crash,
            detail: None,
            uptime_s: 1.0,
        });
        assert_eq!(d.state(), DomainState::Crashed);
        assert_eq!(d.info().uptime_s, 1.0);
        d.dying = true;
        assert_eq!(d.state(), DomainState::Dying);
    }

    #[test]
    fn uuids_look_like_uuids() {
        let u = random_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, random_uuid());
    }
}
