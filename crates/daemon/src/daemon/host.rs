//! Facts about the host for `xl info` and Domain-0's row, read from /proc and uname.

use std::fs;

use domus_api::messages::HostInfo;

fn meminfo_kib(key: &str) -> u64 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let rest = l.strip_prefix(key)?.strip_prefix(':')?;
                rest.split_whitespace().next()?.parse().ok()
            })
        })
        .unwrap_or(0)
}

/// Online CPUs.
pub fn nr_cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
}

/// Total host memory, MiB.
pub fn total_memory_mib() -> u64 {
    meminfo_kib("MemTotal") / 1024
}

/// Host CPU time (all CPUs, user + system), nanoseconds: Domain-0's "Time(s)".
pub fn host_cpu_time_ns() -> u64 {
    let Ok(t) = fs::read_to_string("/proc/stat") else {
        return 0;
    };
    let Some(cpu) = t.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    // user nice system idle iowait irq softirq steal: count all but idle and iowait.
    let f: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let busy: u64 = f
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| *v)
        .sum();
    // USER_HZ is 100 on Linux x86-64.
    busy.saturating_mul(10_000_000)
}

fn cpu_mhz() -> u64 {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                if k.trim() == "cpu MHz" {
                    v.trim().parse::<f64>().ok()
                } else {
                    None
                }
            })
        })
        .map_or(0, |m| m.round() as u64)
}

/// Everything `xl info` shows.
pub fn host_info(nr_domains: u32, xenstored_socket: String) -> HostInfo {
    let u = rustix::system::uname();
    let kvm = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let pvm = std::path::Path::new("/sys/module/kvm_pvm").exists();
    let virt_caps = match (kvm, pvm) {
        (true, true) => "pvh (kvm, pvm)",
        (true, false) => "pvh (kvm)",
        (false, _) => "none (no /dev/kvm)",
    };
    HostInfo {
        host: u.nodename().to_string_lossy().into_owned(),
        release: u.release().to_string_lossy().into_owned(),
        version: u.version().to_string_lossy().into_owned(),
        machine: u.machine().to_string_lossy().into_owned(),
        nr_cpus: nr_cpus(),
        cpu_mhz: cpu_mhz(),
        total_memory_mib: total_memory_mib(),
        free_memory_mib: meminfo_kib("MemAvailable") / 1024,
        virt_caps: virt_caps.to_owned(),
        kvm,
        domus_version: env!("CARGO_PKG_VERSION").to_owned(),
        nr_domains,
        xenstored_socket,
    }
}
