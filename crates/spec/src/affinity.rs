//! Where each vCPU may run: `cpus` and `cpus_soft` (xl.cfg(5)) resolved against the host's CPUs and
//! NUMA nodes into one CPU list per possible vCPU, and the scheduler's weight and cap with xl's
//! defaults filled in.

use serde::{Deserialize, Serialize};

use domus_config::{CpusConfig, CpusError};

/// xl's default credit weight.
pub const DEFAULT_WEIGHT: u32 = 256;

/// The vCPUs' placement and share of the host.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// Hard affinity per vCPU index (`maxvcpus` entries; an empty list = any host CPU).
    #[serde(default)]
    pub hard: Vec<Vec<u32>>,
    /// Soft affinity per vCPU index, stored and reported only (same shape as `hard`).
    #[serde(default)]
    pub soft: Vec<Vec<u32>>,
    /// Credit weight (1-65535; 256 = the default share).
    pub weight: u32,
    /// Cap, percent of one CPU (0 = none).
    #[serde(default)]
    pub cap: u32,
}

/// A vCPU whose spec selects no host CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmptyMask {
    /// The vCPU.
    pub vcpu: u32,
    /// The spec as written.
    pub spec: String,
}

/// Why a `cpus`/`cpus_soft` value cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacementError {
    /// The text does not parse (only from hand-written JSON: config files are checked earlier).
    Malformed(CpusError),
    /// It selects no CPU of this host.
    Empty(EmptyMask),
}

/// The CPU lists of `cfg` for `maxvcpus` vCPUs on a host with `host_cpus` CPUs, `node_cpus(n)` giving
/// the CPUs of NUMA node `n`. All host CPUs come out as an empty list (= unpinned).
///
/// # Errors
/// The first vCPU whose spec is malformed or selects no CPU.
pub fn resolve(
    cfg: Option<&CpusConfig>,
    maxvcpus: u32,
    host_cpus: u32,
    node_cpus: &dyn Fn(u32) -> Vec<u32>,
) -> Result<Vec<Vec<u32>>, PlacementError> {
    let Some(cfg) = cfg else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for vcpu in 0..maxvcpus {
        let Some(spec) = cfg.for_vcpu(vcpu).map_err(PlacementError::Malformed)? else {
            out.push(Vec::new());
            continue;
        };
        let cpus = spec.resolve_with_nodes(host_cpus, node_cpus);
        if cpus.is_empty() {
            return Err(PlacementError::Empty(EmptyMask {
                vcpu,
                spec: spec.to_string(),
            }));
        }
        let all = u32::try_from(cpus.len()).is_ok_and(|n| n == host_cpus);
        out.push(if all { Vec::new() } else { cpus });
    }
    if out.iter().all(Vec::is_empty) {
        out.clear();
    }
    Ok(out)
}

/// The CPUs of host NUMA node `n` (`/sys/devices/system/node/nodeN/cpulist`; empty when the host has
/// no such node). A host without NUMA information counts as one node 0 holding every CPU.
pub fn host_node_cpus(n: u32, host_cpus: u32) -> Vec<u32> {
    let base = std::path::Path::new("/sys/devices/system/node");
    if !base.exists() {
        return if n == 0 {
            (0..host_cpus).collect()
        } else {
            Vec::new()
        };
    }
    std::fs::read_to_string(base.join(format!("node{n}/cpulist")))
        .ok()
        .and_then(|t| t.trim().parse::<domus_config::CpusSpec>().ok())
        .map_or_else(Vec::new, |s| s.resolve(host_cpus))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(n: u32) -> Vec<u32> {
        match n {
            0 => vec![0, 1],
            1 => vec![2, 3],
            _ => Vec::new(),
        }
    }

    #[test]
    fn forms_resolve_per_vcpu() {
        let all = CpusConfig::All("2-3".into());
        assert_eq!(
            resolve(Some(&all), 2, 4, &topo).unwrap(),
            [vec![2, 3], vec![2, 3]]
        );
        let list = CpusConfig::PerVcpu(vec!["1".into(), "node:1".into()]);
        assert_eq!(
            resolve(Some(&list), 3, 4, &topo).unwrap(),
            [vec![1], vec![2, 3], vec![]]
        );
        // Every CPU is "unpinned".
        let every = CpusConfig::All("nodes:0-1".into());
        assert!(resolve(Some(&every), 2, 4, &topo).unwrap().is_empty());
        assert!(resolve(None, 2, 4, &topo).unwrap().is_empty());
        let none = CpusConfig::All("node:7".into());
        assert_eq!(
            resolve(Some(&none), 1, 4, &topo).unwrap_err(),
            PlacementError::Empty(EmptyMask {
                vcpu: 0,
                spec: "nodes:7".into()
            })
        );
    }

    #[test]
    fn this_host_has_node_zero() {
        // The build machines have one NUMA node holding every CPU.
        let n = u32::try_from(std::thread::available_parallelism().unwrap().get()).unwrap();
        assert_eq!(host_node_cpus(0, n), (0..n).collect::<Vec<_>>());
        assert!(host_node_cpus(4000, n).is_empty());
    }
}
