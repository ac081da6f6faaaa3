//! xentop's text formats (tools/xentop/xentop.c of Xen 4.17): the summary lines of the live view, the
//! column header and one row per domain, as `xentop -b` prints them for scripts. Pure functions from API
//! replies (two samples, for CPU %) to text, checked by golden tests below.
//!
//! What Domus cannot measure is shown as xentop shows missing figures: network counters are 0 (guests
//! boot without network until networking lands) and per-disk request counters are `-` (xentop's mark
//! for statistics it could not read) — the VMM does not count block requests yet.

use std::fmt::Write as _;

use domus_api::messages::{DomainInfo, DomainState};

/// Columns in xentop's order: header text and default width.
const FIELDS: [(&str, usize); 19] = [
    ("NAME", 10),
    ("STATE", 6),
    ("CPU(sec)", 10),
    ("CPU(%)", 6),
    ("MEM(k)", 10),
    ("MEM(%)", 6),
    ("MAXMEM(k)", 10),
    ("MAXMEM(%)", 9),
    ("VCPUS", 5),
    ("NETS", 4),
    ("NETTX(k)", 8),
    ("NETRX(k)", 8),
    ("VBDS", 4),
    ("VBD_OO", 8),
    ("VBD_RD", 8),
    ("VBD_WR", 8),
    ("VBD_RSECT", 10),
    ("VBD_WSECT", 10),
    ("SSID", 4),
];

/// One domain as sampled for the view.
#[derive(Debug, Clone)]
pub struct Sample<'a> {
    /// The domain.
    pub dom: &'a DomainInfo,
    /// Its CPU time at the previous sample (same domid), for CPU(%); `None` on the first.
    pub prev_cpu_ns: Option<u64>,
    /// Microseconds between the two samples.
    pub elapsed_us: f64,
}

/// The header line (xentop's `do_header`, without curses attributes).
pub fn header() -> String {
    FIELDS
        .iter()
        .map(|(h, w)| format!("{h:>w$}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// xentop's six state letters, in its order: dying, shutdown, blocked, crashed, paused, running.
pub fn state_letters(d: &DomainInfo) -> String {
    let on = |cond: bool, c: char| if cond { c } else { '-' };
    [
        on(d.state == DomainState::Dying, 'd'),
        on(d.state == DomainState::Shutdown, 's'),
        on(d.state == DomainState::Blocked, 'b'),
        on(d.state == DomainState::Crashed, 'c'),
        on(d.state == DomainState::Paused, 'p'),
        on(d.state == DomainState::Running, 'r'),
    ]
    .iter()
    .collect()
}

/// The domain's disks and network interfaces (none for Domain-0).
fn devices(d: &DomainInfo) -> (&[domus_config::DiskConfig], usize) {
    d.config
        .as_ref()
        .map_or((&[][..], 0), |c| (c.disks.as_slice(), c.vifs.len()))
}

/// CPU(%) as xentop computes it: CPU ns used between the samples over the wall time elapsed.
#[allow(clippy::cast_precision_loss)] // percentages: f64 is exact enough
pub fn cpu_pct(s: &Sample<'_>) -> f64 {
    match s.prev_cpu_ns {
        Some(prev) if s.elapsed_us > 0.0 => {
            (s.dom.cpu_time_ns.saturating_sub(prev) as f64 / 10.0) / s.elapsed_us
        }
        _ => 0.0,
    }
}

/// One row (xentop's `do_domain`); `total_kib` is the host's memory for the percentages.
#[allow(clippy::cast_precision_loss)]
pub fn row(s: &Sample<'_>, total_kib: u64) -> String {
    let d = s.dom;
    let mem_kib = d.memory_mib * 1024;
    let max_kib = d.maxmem_mib * 1024;
    let pct = |k: u64| {
        if total_kib == 0 {
            0.0
        } else {
            k as f64 / total_kib as f64 * 100.0
        }
    };
    let (disks, nets) = devices(d);
    let vbds = disks.len();
    // Without per-disk counters xentop prints '-'; with no disk at all its totals are 0.
    let vbd = |w: usize| {
        if vbds == 0 {
            format!("{:>w$}", 0)
        } else {
            format!("{:>w$}", '-')
        }
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>10.10} {} {:>10} {:>6.1} {:>10} {:>6.1} {:>10} {:>9.1} {:>5} {:>4} {:>8} {:>8} {:>4} {} {} {} {} {} {:>4}",
        d.name,
        state_letters(d),
        d.cpu_time_ns / 1_000_000_000,
        cpu_pct(s),
        mem_kib,
        pct(mem_kib),
        max_kib,
        pct(max_kib),
        d.vcpus,
        nets,
        0,
        0,
        vbds,
        vbd(8),
        vbd(8),
        vbd(8),
        vbd(10),
        vbd(10),
        0
    );
    out
}

/// The summary of the interactive view (xentop's `do_summary`): time, domain counts by state, memory
/// and CPUs.
pub fn summary(
    time_hms: &str,
    version: &str,
    domains: &[DomainInfo],
    total_kib: u64,
    free_kib: u64,
    nr_cpus: u32,
    cpu_mhz: u64,
) -> String {
    let count = |st: DomainState| domains.iter().filter(|d| d.state == st).count();
    format!(
        "xentop - {time_hms}   Xen {version}\n\
         {} domains: {} running, {} blocked, {} paused, {} crashed, {} dying, {} shutdown \n\
         Mem: {total_kib}k total, {}k used, {free_kib}k free    CPUs: {nr_cpus} @ {cpu_mhz}MHz\n",
        domains.len(),
        count(DomainState::Running),
        count(DomainState::Blocked),
        count(DomainState::Paused),
        count(DomainState::Crashed),
        count(DomainState::Dying),
        count(DomainState::Shutdown),
        total_kib.saturating_sub(free_kib),
    )
}

/// `-v`: the vCPUs' CPU seconds, five per line (xentop's `do_vcpu`).
pub fn vcpu_lines(d: &DomainInfo) -> String {
    let mut s = String::from("VCPUs(sec): ");
    for (i, v) in d.vcpu_info.iter().enumerate() {
        if i != 0 && i % 5 == 0 {
            s.push_str("\n        ");
        }
        let _ = write!(s, " {:>2}: {:>10}s", v.id, v.cpu_time_ns / 1_000_000_000);
    }
    s.push('\n');
    s
}

/// `-x`: one line per virtual block device (xentop's `do_vbd`), its counters `-` (not measured yet).
pub fn vbd_lines(d: &DomainInfo) -> String {
    let mut s = String::new();
    for disk in devices(d).0 {
        let dev = disk.devnum;
        let _ = writeln!(
            s,
            "VBD BlkBack {dev:>4} [{:>2x}:{:>2x}]  OO: {:>8}   RD: {:>8}   WR: {:>8}   RSECT: {:>10}   WSECT: {:>10}",
            dev >> 8,
            dev & 0xff,
            '-',
            '-',
            '-',
            '-',
            '-'
        );
    }
    s
}

/// xentop's order: by name, case-insensitively (its default sort field).
pub fn sort(domains: &mut [DomainInfo]) {
    domains.sort_by_key(|d| d.name.to_lowercase());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom(name: &str, state: DomainState, disks: usize) -> DomainInfo {
        DomainInfo {
            domid: 3,
            name: name.into(),
            uuid: String::new(),
            state,
            shutdown_reason: None,
            stop_detail: None,
            memory_mib: 16,
            maxmem_mib: 32,
            vcpus: 2,
            cpu_time_ns: 7_500_000_000,
            start_time: 0.0,
            uptime_s: 1.0,
            vcpu_info: vec![],
            console_path: None,
            pid: None,
            restarts: 0,
            sched: domus_api::messages::SchedInfo {
                weight: 256,
                cap: 0,
            },
            boot: Vec::new(),
            config: Some(domus_config::DomainConfig {
                disks: vec![
                    domus_config::DiskConfig::try_from(
                        &"/img,raw,xvda,rw"
                            .parse::<domus_config::DiskSpec>()
                            .unwrap()
                    )
                    .unwrap();
                    disks
                ],
                ..domus_config::DomainConfig::with_defaults(name)
            }),
        }
    }

    #[test]
    fn header_matches_xentop() {
        assert_eq!(
            header(),
            "      NAME  STATE   CPU(sec) CPU(%)     MEM(k) MEM(%)  MAXMEM(k) MAXMEM(%) VCPUS NETS NETTX(k) NETRX(k) VBDS   VBD_OO   VBD_RD   VBD_WR  VBD_RSECT  VBD_WSECT SSID"
        );
    }

    #[test]
    fn rows_line_up_with_the_header() {
        let d = dom("a-very-long-domain-name", DomainState::Blocked, 1);
        let s = Sample {
            dom: &d,
            prev_cpu_ns: Some(7_000_000_000),
            elapsed_us: 1_000_000.0,
        };
        let r = row(&s, 1_048_576);
        assert_eq!(r.len(), header().len(), "{r}");
        assert_eq!(
            r,
            "a-very-lon --b---          7   50.0      16384    1.6      32768       3.1     2    0        0        0    1        -        -        -          -          -    0"
        );
        let none = dom("x", DomainState::Running, 0);
        let first = Sample {
            dom: &none,
            prev_cpu_ns: None,
            elapsed_us: 0.0,
        };
        let r = row(&first, 1_048_576);
        assert!(r.starts_with("         x -----r          7    0.0"), "{r}");
        assert!(r.ends_with("    0        0        0        0          0          0    0"));
    }

    #[test]
    fn summary_counts_states() {
        let ds = vec![
            dom("a", DomainState::Running, 0),
            dom("b", DomainState::Blocked, 0),
            dom("c", DomainState::Crashed, 0),
        ];
        let s = summary("10:00:00", "domus", &ds, 2048, 1024, 2, 2000);
        assert_eq!(
            s,
            "xentop - 10:00:00   Xen domus\n3 domains: 1 running, 1 blocked, 0 paused, 1 crashed, 0 dying, 0 shutdown \nMem: 2048k total, 1024k used, 1024k free    CPUs: 2 @ 2000MHz\n"
        );
    }
}
