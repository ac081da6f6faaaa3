//! A domain's share of the host: its cgroup (CPU weight and cap, memory and task limits: see
//! `domus-cgroup`), the hard and soft affinity of its vCPU threads, and the host CPU each vCPU thread
//! last ran on (read from `/proc/<vmm>/task/<tid>/stat`, so the VMM itself reads nothing at run time).
//!
//! The VMM joins its cgroup right after it is spawned, before it opens its control socket, so the
//! memory its guest touches is charged there. The hard affinity from `cpus` is in the spec: the VMM
//! pins each vCPU thread before its first guest instruction, and domusd sets it again through the
//! control socket once that answers (so a failure there fails the create instead of going unnoticed).

use std::collections::BTreeMap;

use anyhow::Context as _;
use domus_api::messages::SchedInfo;
use domus_cgroup::{Cgroups, Limits};
use domus_vmm_api::Request;
use tracing::{info, warn};

use super::domain::{SchedParams, Table};
use super::vmm::Control;
use super::{host, ApiError, Daemon};

/// Fixed VMM overhead beyond guest RAM in the memory limit, MiB (code, stacks, device buffers,
/// page cache of the kernel image and disk reads charged to the VMM).
pub const VMM_OVERHEAD_MIB: u64 = 128;

/// How long a stopped domain's cgroup removal waits for its VMM process to exit.
const RELEASE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Tasks a VMM may have beyond two per vCPU (device threads, io_uring workers).
pub const PIDS_BASE: u64 = 256;

/// The cgroup leaf of a domain: its domid and uuid, so concurrent daemons never share one.
pub fn cgroup_leaf(domid: u32, uuid: &str) -> String {
    format!("domain-{domid}-{uuid}")
}

/// What a domain's cgroup enforces: the memory limit tracks `maxmem` (a guest without a balloon
/// driver may touch all of it) plus the VMM's overhead (fixed part plus 1/16 of guest RAM for the
/// kernel's page tables and the VMM's per-page state).
pub fn limits(maxmem_mib: u64, maxvcpus: u32, sched: SchedParams) -> Limits {
    let mib = maxmem_mib
        .saturating_add(VMM_OVERHEAD_MIB)
        .saturating_add(maxmem_mib / 16);
    Limits {
        weight: sched.weight,
        cap: sched.cap,
        memory_max_bytes: mib.saturating_mul(1 << 20),
        pids_max: PIDS_BASE + 2 * u64::from(maxvcpus),
    }
}

/// The host CPU each vCPU thread of VMM `pid` last ran on, by vCPU index (threads named `vcpuN`;
/// field 39 of `/proc/<pid>/task/<tid>/stat`).
pub fn vcpu_host_cpus(pid: u32) -> BTreeMap<u32, u32> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in dir.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let Some(vcpu) = comm
            .trim()
            .strip_prefix("vcpu")
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(cpu) = std::fs::read_to_string(task.path().join("stat"))
            .ok()
            .and_then(|s| stat_processor(&s))
        {
            out.insert(vcpu, cpu);
        }
    }
    out
}

/// Field 39 (`processor`) of a proc(5) stat line; the command name may hold spaces and parentheses,
/// so fields are counted after its last `)`.
fn stat_processor(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(36)?.parse().ok()
}

/// A CPU list as a map entry: every host CPU means "no entry".
fn mask_entry(cpus: &[u32], nr: u32) -> Option<Vec<u32>> {
    let all = u32::try_from(cpus.len()).is_ok_and(|n| n >= nr);
    (!cpus.is_empty() && !all).then(|| cpus.to_vec())
}

impl Daemon {
    /// Detects the host's cgroups and makes the Domus parent `name` (logged: which hierarchy, or why
    /// none is used).
    pub(super) fn detect_cgroups(name: Option<&str>) -> Option<Cgroups> {
        let name = name?;
        match Cgroups::detect(name) {
            Ok(c) => {
                info!(version = c.version().as_str(), parent = %c.parent_dirs()[0].display(), "domain cgroups");
                Some(c)
            }
            Err(e) => {
                warn!(error = %e, "domains run without cgroups: no CPU weight/cap, memory or task limits");
                None
            }
        }
    }

    /// Puts VMM `pid` of domain `domid` into its own cgroup with the spec's limits; returns the leaf
    /// name (`None` when cgroups are not in use).
    ///
    /// # Errors
    /// When the cgroup cannot be made or written (the caller stops the VMM).
    pub(super) fn attach_cgroup(
        &self,
        domid: u32,
        spec: &domus_spec::VmSpec,
        pid: u32,
    ) -> anyhow::Result<Option<String>> {
        let Some(cg) = &self.cgroups else {
            return Ok(None);
        };
        let leaf = cgroup_leaf(domid, &spec.uuid);
        let sched = SchedParams {
            weight: spec.placement.weight,
            cap: spec.placement.cap,
        };
        let limits = limits(spec.maxmem_mib, spec.maxvcpus.max(spec.vcpus), sched);
        // This daemon's release thread may remove the parent as unused (and with it a new, still
        // empty leaf) between the mkdir and the VMM joining it: make it again.
        let mut attempt = 0;
        loop {
            let d = cg
                .domain(&leaf)
                .with_context(|| format!("domain {domid}: creating its cgroup"))?;
            match d.apply(&limits).and_then(|()| d.add_process(pid)) {
                Ok(()) => return Ok(Some(leaf)),
                Err(domus_cgroup::CgroupError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound && attempt < 2 =>
                {
                    attempt += 1;
                }
                Err(e) => {
                    return Err(anyhow::Error::from(e))
                        .with_context(|| format!("domain {domid}: setting up its cgroup"))
                }
            }
        }
    }

    /// At start, after unclaimed VMMs were killed: removes the domain cgroups no domain in `t` claims
    /// (a domusd killed while a create was undone or a cgroup was still being released leaves them
    /// behind). One that still holds processes (a held VMM child that is exiting after its parent
    /// died) is removed once they are gone, off the caller's thread, giving up after the release
    /// timeout (then it is not a VMM of ours).
    pub(super) fn cgroup_sweep(&self, t: &Table) {
        let Some(cg) = &self.cgroups else { return };
        let mut busy = Vec::new();
        for leaf in cg.leaves() {
            let claimed = t.iter().any(|d| {
                d.rec.vmm.as_ref().and_then(|v| v.cgroup.as_deref()) == Some(leaf.as_str())
                    || cgroup_leaf(d.rec.domid, &d.rec.uuid) == leaf
            });
            if claimed || !leaf.starts_with("domain-") {
                continue;
            }
            let group = cg.existing(&leaf);
            if !group.is_empty() {
                busy.push((leaf, group));
                continue;
            }
            match group.remove() {
                Ok(()) => info!(cgroup = %leaf, "removed a domain cgroup no domain claims"),
                Err(e) => {
                    warn!(cgroup = %leaf, error = %e, "cannot remove an unclaimed domain cgroup");
                }
            }
        }
        if busy.is_empty() {
            cg.remove_parent_if_unused();
            return;
        }
        let cg = cg.clone();
        let wait = move || {
            let deadline = std::time::Instant::now() + RELEASE_TIMEOUT;
            while !busy.is_empty() && std::time::Instant::now() < deadline {
                busy.retain(|(leaf, group)| {
                    if !group.is_empty() {
                        return true;
                    }
                    if group.remove().is_ok() {
                        info!(cgroup = %leaf, "removed a domain cgroup no domain claims");
                    }
                    false
                });
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            cg.remove_parent_if_unused();
        };
        if let Err(e) = std::thread::Builder::new()
            .name("cgroup-sweep".into())
            .stack_size(64 * 1024)
            .spawn(wait)
        {
            warn!(error = %e, "cannot start the thread that removes unclaimed domain cgroups");
        }
    }

    /// Removes a stopped domain's cgroup (logged, not fatal, when it cannot be removed).
    pub(super) fn release_cgroup(&self, domid: u32, leaf: &str) {
        let Some(cg) = &self.cgroups else { return };
        // The guest's outcome arrives before its VMM has exited (it waits for the acknowledgement),
        // and a cgroup with a process in it cannot be removed: retry off the caller's thread.
        let group = cg.existing(leaf);
        // Usually the process and its io_uring workers are gone within a few milliseconds.
        let quick = std::time::Instant::now() + std::time::Duration::from_millis(500);
        while std::time::Instant::now() < quick {
            if group.remove().is_ok() {
                cg.remove_parent_if_unused();
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let cg = cg.clone();
        let retry = move || {
            let deadline = std::time::Instant::now() + RELEASE_TIMEOUT;
            loop {
                match group.remove() {
                    Ok(()) => break,
                    Err(e) if std::time::Instant::now() >= deadline => {
                        warn!(domid, error = %e, "cannot remove the domain's cgroup");
                        break;
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
            // An empty Domus parent is not left behind (it is made again for the next domain).
            cg.remove_parent_if_unused();
        };
        if let Err(e) = std::thread::Builder::new()
            .name(format!("cgroup-{domid}"))
            .stack_size(64 * 1024)
            .spawn(retry)
        {
            warn!(domid, error = %e, "cannot start the thread that removes the domain's cgroup");
        }
    }

    /// Pins the running vCPUs of a just-started domain as its `cpus` says.
    ///
    /// # Errors
    /// When the VMM refuses a pin.
    pub(super) fn apply_hard_affinity(
        ctl: &mut Control,
        spec: &domus_spec::VmSpec,
    ) -> anyhow::Result<()> {
        for (vcpu, cpus) in (0..spec.vcpus).zip(&spec.placement.hard) {
            if cpus.is_empty() {
                continue;
            }
            ctl.send(&Request::VcpuPin {
                vcpu,
                cpus: cpus.clone(),
            })
            .with_context(|| format!("pinning vCPU {vcpu} to CPUs {cpus:?} (cpus)"))?;
        }
        Ok(())
    }

    /// The initial affinity maps of a domain from its spec (hard, soft).
    pub(super) fn spec_affinity(
        spec: &domus_spec::VmSpec,
    ) -> (BTreeMap<u32, Vec<u32>>, BTreeMap<u32, Vec<u32>>) {
        let nr = host::nr_cpus();
        let map = |lists: &[Vec<u32>]| {
            (0u32..)
                .zip(lists)
                .filter_map(|(k, c)| mask_entry(c, nr).map(|c| (k, c)))
                .collect()
        };
        (map(&spec.placement.hard), map(&spec.placement.soft))
    }

    /// Pins one vCPU (or all): `hard` (empty = all CPUs; `None` leaves it) and `soft` (`None` leaves it).
    ///
    /// # Errors
    /// 400 for an unknown vCPU or CPU, else as [`Daemon::shutdown`].
    pub fn vcpu_pin(
        &self,
        spec: &str,
        vcpu: Option<u32>,
        hard: Option<&[u32]>,
        soft: Option<&[u32]>,
    ) -> Result<(), ApiError> {
        let t = self.running_target(spec, "pin vCPUs of")?;
        self.writable()?;
        let nr = host::nr_cpus();
        let given = hard.into_iter().chain(soft).flatten();
        if let Some(bad) = given.into_iter().find(|c| **c >= nr) {
            return Err(ApiError::bad_request(format!(
                "CPU {bad} does not exist: this host has CPUs 0-{}",
                nr - 1
            )));
        }
        // Every possible vCPU can be pinned (xl: up to max_vcpus), online or not.
        let nvcpus = self
            .lock()
            .get(t.domid)
            .map_or(0, |d| d.rec.config.maxvcpus.max(d.rec.config.vcpus));
        let which: Vec<u32> = match vcpu {
            Some(k) if k >= nvcpus => {
                return Err(ApiError::bad_request(format!(
                    "domain {} has no vCPU {k} (it has {nvcpus})",
                    t.domid
                )))
            }
            Some(k) => vec![k],
            None => (0..nvcpus).collect(),
        };
        let all: Vec<u32> = (0..nr).collect();
        for k in which {
            if let Some(cpus) = hard {
                let set = if cpus.is_empty() { &all } else { cpus };
                Self::send(
                    &t,
                    &Request::VcpuPin {
                        vcpu: k,
                        cpus: set.to_vec(),
                    },
                )?;
            }
            if let Some(d) = self.lock().get_mut(t.domid) {
                for (mask, map) in [
                    (hard, &mut d.rec.affinity),
                    (soft, &mut d.rec.soft_affinity),
                ] {
                    match mask.map(|m| mask_entry(m, nr)) {
                        Some(Some(m)) => {
                            map.insert(k, m);
                        }
                        Some(None) => {
                            map.remove(&k);
                        }
                        None => {}
                    }
                }
                self.save(d);
            }
        }
        Ok(())
    }

    /// Sets a domain's weight and/or cap (sched-credit, sched-credit2) on its cgroup and records them.
    ///
    /// # Errors
    /// 400 for Domain-0, values out of xl's ranges, or a daemon without cgroups; 500 when the cgroup
    /// cannot be written.
    pub fn sched_credit(
        &self,
        spec: &str,
        weight: Option<u32>,
        cap: Option<u32>,
    ) -> Result<(), ApiError> {
        Self::refuse_domain0(spec, "change the scheduler parameters of")?;
        self.writable()?;
        let Some(cg) = &self.cgroups else {
            return Err(ApiError::bad_request(
                "scheduler parameters need cgroups, and domusd found no usable cgroup hierarchy (see its log)",
            ));
        };
        let mut t = self.lock();
        let (domid, d) = t.lookup_mut(spec)?;
        let new = SchedParams {
            weight: weight.unwrap_or(d.rec.sched.weight),
            cap: cap.unwrap_or(d.rec.sched.cap),
        };
        domus_cgroup::check_sched(new.weight, new.cap)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        if let Some(leaf) = d.rec.vmm.as_ref().and_then(|v| v.cgroup.as_deref()) {
            cg.existing(leaf)
                .set_cpu(new.weight, new.cap)
                .map_err(|e| ApiError::internal(format!("domain {domid}: {e:#}")))?;
        }
        info!(
            domid,
            weight = new.weight,
            cap = new.cap,
            "scheduler parameters"
        );
        d.rec.sched = new;
        self.save(d);
        Ok(())
    }
}

impl From<SchedParams> for SchedInfo {
    fn from(s: SchedParams) -> Self {
        SchedInfo {
            weight: s.weight,
            cap: s.cap,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_processor_field() {
        let stat = "1234 (vcpu 0 (x)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 1 0 0";
        assert_eq!(stat_processor(stat), Some(1));
        assert_eq!(stat_processor("garbage"), None);
    }

    #[test]
    fn limits_track_maxmem() {
        let l = limits(1024, 4, SchedParams::default());
        assert_eq!(l.memory_max_bytes, (1024 + 128 + 64) << 20);
        assert_eq!(l.pids_max, 264);
        assert_eq!((l.weight, l.cap), (256, 0));
        assert_eq!(mask_entry(&[0, 1], 2), None);
        assert_eq!(mask_entry(&[1], 2), Some(vec![1]));
        assert_eq!(mask_entry(&[], 2), None);
    }

    #[test]
    fn this_process_threads_report_a_cpu() {
        // No vcpuN threads here: nothing reported, and no panic on a live process.
        assert!(vcpu_host_cpus(std::process::id()).is_empty());
        assert!(vcpu_host_cpus(u32::MAX).is_empty());
    }
}
