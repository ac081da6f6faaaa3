//! xentop's text formats (tools/xentop/xentop.c of Xen 4.17): the summary lines of the live view, the
//! column header and one row per domain, as `xentop -b` prints them for scripts. Pure functions from API
//! replies (two samples, for CPU %) to text, checked by golden tests below.
//!
//! The network and block counters come from the domain's VMM (its virtio-net and virtio-blk devices
//! count frames, bytes, requests and sectors); NETTX is what the guest sent, as in xentop. While no
//! VMM reports them (a stopped domain, a VMM that does not count) a domain with disks shows `-`, xentop's
//! mark for statistics it could not read; VBD_OO is always 0 (requests never wait for a free slot).

use std::fmt::Write as _;

use domus_api::messages::{DiskStats, DomainInfo, DomainState};

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
    let tx_kib: u64 = d.nic_stats.iter().map(|n| n.tx_bytes).sum::<u64>() / 1024;
    let rx_kib: u64 = d.nic_stats.iter().map(|n| n.rx_bytes).sum::<u64>() / 1024;
    // Totals over the disks; '-' when the VMM reported none for a domain that has disks.
    let total = |f: fn(&DiskStats) -> u64, w: usize| {
        if vbds != 0 && d.disk_stats.is_empty() {
            format!("{:>w$}", '-')
        } else {
            format!("{:>w$}", d.disk_stats.iter().map(f).sum::<u64>())
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
        tx_kib,
        rx_kib,
        vbds,
        total(|_| 0, 8),
        total(|s| s.rd_reqs, 8),
        total(|s| s.wr_reqs, 8),
        total(|s| s.rd_sectors, 10),
        total(|s| s.wr_sectors, 10),
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

/// `-v`: the online vCPUs' CPU seconds, five per line (xentop's `do_vcpu`).
pub fn vcpu_lines(d: &DomainInfo) -> String {
    let mut s = String::from("VCPUs(sec): ");
    let online = d
        .vcpu_info
        .iter()
        .filter(|v| v.state != domus_api::messages::VcpuRunState::Offline);
    for (i, v) in online.enumerate() {
        if i != 0 && i % 5 == 0 {
            s.push_str("\n        ");
        }
        let _ = write!(s, " {:>2}: {:>10}s", v.id, v.cpu_time_ns / 1_000_000_000);
    }
    s.push('\n');
    s
}

/// `-x`: one line per virtual block device (xentop's `do_vbd`); its counters `-` while the VMM
/// reports none.
pub fn vbd_lines(d: &DomainInfo) -> String {
    let mut s = String::new();
    for (i, disk) in devices(d).0.iter().enumerate() {
        let dev = disk.devnum;
        let st = d.disk_stats.get(i);
        let num = |f: fn(&DiskStats) -> u64, w: usize| {
            st.map_or_else(|| format!("{:>w$}", '-'), |s| format!("{:>w$}", f(s)))
        };
        let _ = writeln!(
            s,
            "VBD BlkBack {dev:>4} [{:>2x}:{:>2x}]  OO: {}   RD: {}   WR: {}   RSECT: {}   WSECT: {}",
            dev >> 8,
            dev & 0xff,
            num(|_| 0, 8),
            num(|s| s.rd_reqs, 8),
            num(|s| s.wr_reqs, 8),
            num(|s| s.rd_sectors, 10),
            num(|s| s.wr_sectors, 10)
        );
    }
    s
}

/// `-n`: one line per network interface (xentop's `do_network`): what the guest received, then what it
/// sent; errors and drops are not counted separately (0). Interfaces the VMM reports no counters for
/// show 0.
pub fn net_lines(d: &DomainInfo) -> String {
    let mut s = String::new();
    for i in 0..devices(d).1 {
        let n = d.nic_stats.get(i).copied().unwrap_or_default();
        let _ = writeln!(
            s,
            "Net{i} RX: {:>8}bytes {:>8}pkts {:>8}err {:>8}drop  TX: {:>8}bytes {:>8}pkts {:>8}err {:>8}drop",
            n.rx_bytes, n.rx_packets, 0, 0, n.tx_bytes, n.tx_packets, 0, 0
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
            disk_stats: Vec::new(),
            nic_stats: Vec::new(),
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
    fn counters_from_the_vmm_fill_the_columns_and_detail_lines() {
        let mut d = dom("io", DomainState::Running, 2);
        d.disk_stats = vec![
            DiskStats {
                rd_reqs: 3,
                wr_reqs: 2,
                rd_sectors: 24,
                wr_sectors: 2048,
            },
            DiskStats {
                rd_reqs: 1,
                wr_reqs: 0,
                rd_sectors: 8,
                wr_sectors: 0,
            },
        ];
        let mut cfg = d.config.take().unwrap();
        cfg.vifs = vec![domus_config::VifConfig::resolve(
            &domus_config::VifSpec::default(),
            0,
        )];
        d.config = Some(cfg);
        d.nic_stats = vec![domus_api::messages::NicStats {
            tx_bytes: 5 * 1024 + 100,
            tx_packets: 4,
            rx_bytes: 2048,
            rx_packets: 2,
        }];
        let s = Sample {
            dom: &d,
            prev_cpu_ns: None,
            elapsed_us: 0.0,
        };
        let r = row(&s, 1_048_576);
        assert_eq!(r.len(), header().len(), "{r}");
        assert!(
            r.ends_with("    2    1        5        2    2        0        4        2         32       2048    0"),
            "{r}"
        );
        assert_eq!(
            vbd_lines(&d),
            "VBD BlkBack 51712 [ca: 0]  OO:        0   RD:        3   WR:        2   RSECT:         24   WSECT:       2048\n\
             VBD BlkBack 51712 [ca: 0]  OO:        0   RD:        1   WR:        0   RSECT:          8   WSECT:          0\n"
        );
        assert_eq!(
            net_lines(&d),
            "Net0 RX:     2048bytes        2pkts        0err        0drop  TX:     5220bytes        4pkts        0err        0drop\n"
        );
        // Without counters from a VMM: '-' per disk, 0 per interface.
        d.disk_stats.clear();
        d.nic_stats.clear();
        assert!(vbd_lines(&d).contains("RD:        -"));
        assert!(net_lines(&d).starts_with("Net0 RX:        0bytes"));
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
