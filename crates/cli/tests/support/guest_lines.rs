//! Reading what the probe guest and its VMM show: mem-soak epochs on the console, the vCPU threads'
//! CPU masks in /proc.

use std::fs;
use std::time::Duration;

use super::{wait_for, Host};

/// The last `PROBE mem-soak epoch=E ok` in `text`.
pub fn last_epoch(text: &str) -> Option<u64> {
    text.lines()
        .rev()
        .filter_map(|l| l.trim().strip_prefix("PROBE mem-soak epoch="))
        .filter_map(|l| l.strip_suffix(" ok"))
        .find_map(|n| n.parse().ok())
}

/// Waits until `name`'s console log shows a mem-soak epoch above `above`; returns it.
pub fn wait_epoch_above(h: &Host, name: &str, above: u64) -> u64 {
    wait_for(
        &format!("{name}: mem-soak epoch above {above}"),
        Duration::from_secs(60),
        || last_epoch(&h.console_log(name)).filter(|&e| e > above),
    )
}

/// `Cpus_allowed_list` of each vCPU thread (named `vcpuN`) of VMM `pid`, by vCPU index.
pub fn vcpu_masks(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for t in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let comm = fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let Some(id) = comm
            .trim()
            .strip_prefix("vcpu")
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        let status = fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let mask = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        out.push((id, mask));
    }
    out.sort();
    out
}
