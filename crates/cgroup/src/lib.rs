//! Domus's cgroups: one cgroup per domain under a Domus parent, holding that domain's `domus-vmm`
//! process (all its threads), with the domain's CPU weight and cap, a memory limit and a task limit.
//!
//! Hosts differ. The unified cgroup v2 hierarchy (Debian 12, most current systems) has one tree with
//! `cpu.weight`, `cpu.max`, `memory.max` and `pids.max`; hosts with the v1 controllers mounted (the
//! build machines here) have one tree per controller with `cpu.shares`, `cpu.cfs_quota_us`,
//! `memory.limit_in_bytes` and `pids.max`. [`Cgroups::detect`] finds out which at start (a v2 mount
//! counts only when it offers the `cpu`, `memory` and `pids` controllers) and everything after that
//! goes through one interface, [`DomainCgroup`].
//!
//! The Domus parent is made inside domusd's own cgroup (read from `/proc/self/cgroup`), never at the
//! root of a hierarchy, so whatever placed domusd (a service manager, a container) keeps accounting
//! for its domains. On v2, enabling controllers for children requires that domusd's own cgroup holds
//! no process: domusd then moves itself into a `supervisor` leaf beside the Domus parent, the usual
//! arrangement for a delegated subtree.
//!
//! xl's scheduler numbers map as the credit scheduler defines them: the weight's default 256 is the
//! cgroup default (v1 `cpu.shares` 1024, v2 `cpu.weight` 100), proportionally and clamped to the
//! controller's range; the cap (percent of one CPU, 0 = none) is a CFS quota over a 100 ms period.
//!
//! Why not the `cgroups-rs` crate: Domus needs five files in three controllers and a mount table
//! lookup; cgroups-rs brings a general hierarchy model (and its own dependencies) for every
//! controller, and still leaves the placement rule above to us. This crate is that small part only.
//!
//! This crate only touches files under the cgroup mounts it is given; it reads no environment and
//! logs nothing (errors name the file that failed).
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod detect;
mod group;

pub use detect::{parse_mounts, parse_self_cgroup, Mounts};
pub use group::{Cgroups, DomainCgroup};

use std::io;
use std::path::PathBuf;

/// xl's default credit weight.
pub const DEFAULT_WEIGHT: u32 = 256;
/// Largest credit weight xl accepts.
pub const MAX_WEIGHT: u32 = 65535;
/// The CFS period the cap's quota is measured against, microseconds (100 ms).
pub const CAP_PERIOD_US: u64 = 100_000;

/// Which cgroup hierarchy the host offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// One mount per controller (`cpu`, `memory`, `pids`).
    V1,
    /// The unified hierarchy.
    V2,
}

impl Version {
    /// `"v1"` or `"v2"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }
}

/// A cgroup operation that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CgroupError {
    /// No usable hierarchy.
    #[error("no usable cgroup hierarchy: {why}")]
    Unavailable {
        /// What was missing.
        why: String,
    },
    /// A file or directory operation failed.
    #[error("cannot {what} {path}")]
    Io {
        /// What was tried.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A value is out of range.
    #[error("{what} {value} is out of range: expected {expected}")]
    Range {
        /// Which value.
        what: &'static str,
        /// The value given.
        value: u64,
        /// The accepted range.
        expected: &'static str,
    },
}

/// What a domain's cgroup enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// xl credit weight (1-65535; 256 = the default share).
    pub weight: u32,
    /// xl cap: percent of one CPU (0 = no cap).
    pub cap: u32,
    /// Memory limit of the whole VMM process, bytes.
    pub memory_max_bytes: u64,
    /// Tasks (threads) limit.
    pub pids_max: u64,
}

/// xl weight → v1 `cpu.shares` (256 → 1024), clamped to the kernel's 2-262144.
pub fn v1_shares(weight: u32) -> u64 {
    (u64::from(weight) * 4).clamp(2, 262_144)
}

/// xl weight → v2 `cpu.weight` (256 → 100), rounded, clamped to the kernel's 1-10000.
pub fn v2_weight(weight: u32) -> u64 {
    ((u64::from(weight) * 100 + 128) / 256).clamp(1, 10_000)
}

/// xl cap (percent of one CPU) → CFS quota in microseconds per [`CAP_PERIOD_US`]; `None` = no cap.
pub fn cap_quota_us(cap: u32) -> Option<u64> {
    (cap > 0).then(|| u64::from(cap) * CAP_PERIOD_US / 100)
}

/// Checks a weight and cap as xl's credit scheduler accepts them.
///
/// # Errors
/// [`CgroupError::Range`].
pub fn check_sched(weight: u32, cap: u32) -> Result<(), CgroupError> {
    if !(1..=MAX_WEIGHT).contains(&weight) {
        return Err(CgroupError::Range {
            what: "weight",
            value: weight.into(),
            expected: "1-65535",
        });
    }
    if cap > 65535 {
        return Err(CgroupError::Range {
            what: "cap",
            value: cap.into(),
            expected: "0-65535 (percent of one CPU; 0 = no cap)",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_and_cap_mapping() {
        assert_eq!(v1_shares(256), 1024);
        assert_eq!(v1_shares(512), 2048);
        assert_eq!(v1_shares(65535), 262_140);
        assert_eq!(v2_weight(256), 100);
        assert_eq!(v2_weight(512), 200);
        assert_eq!(v2_weight(1), 1);
        assert_eq!(v2_weight(65535), 10_000);
        assert_eq!(cap_quota_us(25), Some(25_000));
        assert_eq!(cap_quota_us(150), Some(150_000));
        assert_eq!(cap_quota_us(0), None);
        assert!(check_sched(256, 0).is_ok());
        assert!(check_sched(0, 0).is_err());
        assert!(check_sched(70000, 0).is_err());
        assert!(check_sched(256, 70000).is_err());
    }
}
