//! Output that must match xl's formats: `list`, `list -v`, `vcpu-list`, `uptime`, `info`. Pure functions
//! from API replies to text, checked by golden tests below.

use std::fmt::Write as _;

use domus_api::messages::{DomainInfo, DomainState, HostInfo, VcpuRunState};

/// `xl list`'s header line.
pub fn list_header(verbose: bool) -> String {
    let mut s =
        String::from("Name                                        ID   Mem VCPUs\tState\tTime(s)");
    if verbose {
        s.push_str("   UUID                            Reason-Code\tSecurity Label");
    }
    s
}

/// The six state letters: running, blocked, paused, shutdown, shutdown reason, dying.
pub fn state_letters(d: &DomainInfo) -> String {
    let shut = matches!(d.state, DomainState::Shutdown | DomainState::Crashed);
    let reason = if shut {
        d.shutdown_reason.map_or('-', |r| r.letter())
    } else {
        '-'
    };
    [
        if d.state == DomainState::Running {
            'r'
        } else {
            '-'
        },
        if d.state == DomainState::Blocked {
            'b'
        } else {
            '-'
        },
        if d.state == DomainState::Paused {
            'p'
        } else {
            '-'
        },
        if shut { 's' } else { '-' },
        reason,
        if d.state == DomainState::Dying {
            'd'
        } else {
            '-'
        },
    ]
    .iter()
    .collect()
}

/// One `xl list` row.
pub fn list_row(d: &DomainInfo, verbose: bool) -> String {
    #[allow(clippy::cast_precision_loss)] // seconds with one decimal: f64 is exact enough
    let secs = d.cpu_time_ns as f64 / 1e9;
    let mut s = format!(
        "{:<40} {:>5} {:>5} {:>5}     {}  {:>8.1}",
        d.name,
        d.domid,
        d.memory_mib,
        d.vcpus,
        state_letters(d),
        secs
    );
    if verbose {
        let shut = matches!(d.state, DomainState::Shutdown | DomainState::Crashed);
        let _ = write!(s, " {}", d.uuid);
        match d.shutdown_reason.filter(|_| shut) {
            Some(r) => {
                let _ = write!(s, " {:>8x}", r.code());
            }
            None => {
                let _ = write!(s, " {:>8}", "-");
            }
        }
        s.push_str("  -");
    }
    s
}

/// `xl list -l`: a JSON array, one object per domain with its config.
pub fn list_long(domains: &[DomainInfo]) -> String {
    let v: Vec<serde_json::Value> = domains
        .iter()
        .map(|d| {
            serde_json::json!({
                "domid": d.domid,
                "name": d.name,
                "uuid": d.uuid,
                "state": d.state,
                "shutdown_reason": d.shutdown_reason,
                "memory_mib": d.memory_mib,
                "maxmem_mib": d.maxmem_mib,
                "vcpus": d.vcpus,
                "cpu_time_ns": d.cpu_time_ns,
                "start_time": d.start_time,
                "config": d.config,
            })
        })
        .collect();
    serde_json::to_string_pretty(&v).unwrap_or_else(|_| "[]".into())
}

/// `xl vcpu-list`'s header.
pub fn vcpu_header() -> String {
    format!(
        "{:<32} {:>5} {:>5} {:>5} {:>5} {:>9} {}",
        "Name", "ID", "VCPU", "CPU", "State", "Time(s)", "Affinity (Hard / Soft)"
    )
}

/// CPU set in xl's range notation ("all" when every CPU).
pub fn cpu_ranges(cpus: &[u32], nr_cpus: u32) -> String {
    let mut v: Vec<u32> = cpus.to_vec();
    v.sort_unstable();
    v.dedup();
    if v.is_empty() || (v.len() == nr_cpus as usize && v.last() == Some(&(nr_cpus - 1))) {
        return "all".into();
    }
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end + 1 {
            i += 1;
            end = v[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// `xl vcpu-list` rows for one domain.
pub fn vcpu_rows(d: &DomainInfo, nr_cpus: u32) -> Vec<String> {
    d.vcpu_info
        .iter()
        .map(|v| {
            let running = if v.state == VcpuRunState::Running {
                'r'
            } else {
                '-'
            };
            let blocked = if v.state == VcpuRunState::Blocked {
                'b'
            } else {
                '-'
            };
            let paused = if v.state == VcpuRunState::Paused {
                'p'
            } else {
                '-'
            };
            // The CPU the vCPU last ran on is not tracked: the first CPU of its affinity.
            let cpu = v
                .affinity
                .as_ref()
                .and_then(|a| a.iter().min().copied())
                .unwrap_or(0);
            #[allow(clippy::cast_precision_loss)]
            let secs = v.cpu_time_ns as f64 / 1e9;
            let aff = v
                .affinity
                .as_deref()
                .map_or_else(|| "all".to_owned(), |a| cpu_ranges(a, nr_cpus));
            format!(
                "{:<32} {:>5} {:>5} {:>5} {:>3}{}{} {:>9.1}  {aff} / all",
                d.name, d.domid, v.id, cpu, running, blocked, paused, secs
            )
        })
        .collect()
}

/// xl's uptime text: `[D day(s), ]HH:MM:SS`, or without seconds in short mode.
pub fn uptime_string(secs: u64, short: bool) -> String {
    let s = secs % 60;
    let m = (secs / 60) % 60;
    let h = (secs / 3600) % 24;
    let d = secs / 86_400;
    let days = match d {
        0 => String::new(),
        1 => "1 day, ".to_owned(),
        n => format!("{n} days, "),
    };
    if short {
        format!("{days}{h:2}:{m:02}")
    } else {
        format!("{days}{h:2}:{m:02}:{s:02}")
    }
}

/// `xl uptime`'s header.
pub fn uptime_header() -> String {
    format!("{:<33} {:>4} {}", "Name", "ID", "Uptime")
}

/// One `xl uptime` row.
pub fn uptime_row(d: &DomainInfo) -> String {
    format!(
        "{:<33} {:>4} {}",
        d.name,
        d.domid,
        uptime_string(d.uptime_s as u64, false)
    )
}

/// `xl info`: `key : value` lines, keys padded as xl pads them.
pub fn info(h: &HostInfo) -> String {
    let rows: Vec<(&str, String)> = vec![
        ("host", h.host.clone()),
        ("release", h.release.clone()),
        ("version", h.version.clone()),
        ("machine", h.machine.clone()),
        ("nr_cpus", h.nr_cpus.to_string()),
        ("max_cpu_id", h.nr_cpus.saturating_sub(1).to_string()),
        ("nr_nodes", "1".into()),
        ("cpu_mhz", h.cpu_mhz.to_string()),
        ("virt_caps", h.virt_caps.clone()),
        ("total_memory", h.total_memory_mib.to_string()),
        ("free_memory", h.free_memory_mib.to_string()),
        ("nr_domains", h.nr_domains.to_string()),
        (
            "hypervisor",
            if h.kvm { "kvm".into() } else { "none".into() },
        ),
        ("domus_version", h.domus_version.clone()),
        ("xenstored_socket", h.xenstored_socket.clone()),
        ("xl_compatible", "yes".into()),
    ];
    rows.iter()
        .map(|(k, v)| format!("{k:<23}: {v}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use domus_api::messages::{ShutdownReason, VcpuInfo};

    fn dom(name: &str, domid: u32, state: DomainState) -> DomainInfo {
        DomainInfo {
            domid,
            name: name.into(),
            uuid: "6a9f1f2e-0000-4000-8000-000000000001".into(),
            state,
            shutdown_reason: None,
            stop_detail: None,
            memory_mib: 16,
            maxmem_mib: 16,
            vcpus: 1,
            cpu_time_ns: 1_250_000_000,
            start_time: 0.0,
            uptime_s: 90_061.0,
            vcpu_info: vec![VcpuInfo {
                id: 0,
                state: VcpuRunState::Blocked,
                cpu_time_ns: 1_250_000_000,
                affinity: None,
            }],
            console_path: None,
            pid: None,
            restarts: 0,
            config: None,
            boot: Vec::new(),
        }
    }

    #[test]
    fn list_matches_xl_golden() {
        assert_eq!(
            list_header(false),
            "Name                                        ID   Mem VCPUs\tState\tTime(s)"
        );
        assert_eq!(
            list_row(&dom("hello", 3, DomainState::Blocked), false),
            "hello                                        3    16     1     -b----       1.2"
        );
        let mut c = dom("web", 12, DomainState::Crashed);
        c.shutdown_reason = Some(ShutdownReason::Crash);
        assert_eq!(
            list_row(&c, false),
            "web                                         12    16     1     ---sc-       1.2"
        );
        assert_eq!(
            list_row(&c, true),
            "web                                         12    16     1     ---sc-       1.2 6a9f1f2e-0000-4000-8000-000000000001        3  -"
        );
        let r = dom("Domain-0", 0, DomainState::Running);
        assert_eq!(list_row(&r, true).split_whitespace().nth(7), Some("-"));
        assert_eq!(state_letters(&dom("p", 1, DomainState::Paused)), "--p---");
        assert_eq!(state_letters(&dom("d", 1, DomainState::Dying)), "-----d");
        let mut s = dom("s", 1, DomainState::Shutdown);
        s.shutdown_reason = Some(ShutdownReason::Poweroff);
        assert_eq!(state_letters(&s), "---s--");
    }

    #[test]
    fn uptime_matches_xl() {
        assert_eq!(uptime_string(59, false), " 0:00:59");
        assert_eq!(uptime_string(90_061, false), "1 day,  1:01:01");
        assert_eq!(
            uptime_string(3 * 86_400 + 36_000, false),
            "3 days, 10:00:00"
        );
        assert_eq!(uptime_string(3_600, true), " 1:00");
        assert_eq!(
            uptime_header(),
            "Name                                ID Uptime"
        );
        assert_eq!(
            uptime_row(&dom("hello", 3, DomainState::Running)),
            "hello                                3 1 day,  1:01:01"
        );
    }

    #[test]
    fn vcpu_list_matches_xl() {
        assert_eq!(
            vcpu_header(),
            "Name                                ID  VCPU   CPU State   Time(s) Affinity (Hard / Soft)"
        );
        let mut d = dom("hello", 3, DomainState::Blocked);
        assert_eq!(
            vcpu_rows(&d, 2),
            vec!["hello                                3     0     0   -b-       1.2  all / all"]
        );
        d.vcpu_info[0].affinity = Some(vec![1]);
        assert!(vcpu_rows(&d, 2)[0].ends_with("  1 / all"));
        assert_eq!(cpu_ranges(&[0, 1, 2, 5, 7, 8], 16), "0-2,5,7-8");
        assert_eq!(cpu_ranges(&[0, 1], 2), "all");
    }

    #[test]
    fn info_pads_keys_like_xl() {
        let h = HostInfo {
            host: "h".into(),
            release: "6.1".into(),
            version: "#1".into(),
            machine: "x86_64".into(),
            nr_cpus: 2,
            cpu_mhz: 2000,
            total_memory_mib: 24000,
            free_memory_mib: 20000,
            virt_caps: "pvh".into(),
            kvm: true,
            domus_version: "0.1.0".into(),
            nr_domains: 0,
            xenstored_socket: "/run/domus/xenstored/socket".into(),
        };
        let out = info(&h);
        assert!(out.starts_with("host                   : h\n"));
        assert!(out.contains("\ntotal_memory           : 24000\n"));
        assert!(out.contains("\nnr_cpus                : 2\n"));
    }
}
