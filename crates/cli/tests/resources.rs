//! End-to-end tests of a domain's share of the host (issue 16): its cgroup (weight, cap, memory and
//! task limits, on this machine's cgroup v1 controllers), `sched-credit`, `cpus`/`cpus_soft` in their
//! xl.cfg forms as the VMM's vCPU threads carry them, `vcpu-pin` with a soft mask and `vcpu-list`.
#![allow(clippy::unwrap_used)]

mod support;

use std::fs;
use std::path::PathBuf;

use support::guest_lines::vcpu_masks;
use support::{wait_for, Host, TIMEOUT};

/// The directory of `pid`'s cgroup in v1 controller `ctrl` (these machines mount v1 controllers).
fn cgroup_dir(pid: u32, ctrl: &str) -> PathBuf {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = text
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            ctrls.split(',').any(|c| c == ctrl).then(|| path.to_owned())
        })
        .unwrap_or_else(|| panic!("no v1 {ctrl} controller in /proc/{pid}/cgroup:\n{text}"));
    PathBuf::from(format!("/sys/fs/cgroup/{ctrl}{path}"))
}

fn read(p: &std::path::Path, file: &str) -> String {
    fs::read_to_string(p.join(file)).unwrap().trim().to_owned()
}

fn host_cpus() -> u32 {
    u32::try_from(std::thread::available_parallelism().unwrap().get()).unwrap()
}

#[test]
fn cgroup_holds_the_configured_limits_and_sched_credit_round_trips() {
    let h = Host::start();
    h.probe_cfg(
        "w.cfg",
        "weighted",
        "idle",
        "maxmem = 64\ncpu_weight = 512\ncpu_cap = 25\n",
    );
    h.ok(&["create", "w.cfg"]);
    let pid = h.vmm_pid("weighted").unwrap();
    let cpu = cgroup_dir(pid, "cpu");
    let mem = cgroup_dir(pid, "memory");
    let pids = cgroup_dir(pid, "pids");
    for d in [&cpu, &mem, &pids] {
        assert!(
            d.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("domain-"),
            "the VMM is not in a domain cgroup: {}",
            d.display()
        );
        assert_eq!(
            d.parent().unwrap().file_name().unwrap().to_str(),
            Some(h.cgroup_parent.as_str())
        );
    }
    // Every thread of the VMM is in it (v1 moves the whole process).
    let procs = read(&cpu, "cgroup.procs");
    assert_eq!(procs, pid.to_string());
    assert_eq!(
        read(&cpu, "cpu.shares"),
        "2048",
        "weight 512 = twice the default 1024"
    );
    assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "25000");
    assert_eq!(read(&cpu, "cpu.cfs_period_us"), "100000");
    // maxmem 64 MiB + 128 MiB fixed overhead + 64/16 MiB.
    assert_eq!(
        read(&mem, "memory.limit_in_bytes"),
        ((64u64 + 128 + 4) << 20).to_string()
    );
    assert_eq!(read(&pids, "pids.max"), "258");

    // sched-credit in xl's format, for one domain and for all.
    let one = h.ok(&["sched-credit", "-d", "weighted"]);
    assert_eq!(
        one,
        format!(
            "Name                                ID Weight  Cap\n{:<33} {:>4}    512   25\n",
            "weighted",
            h.row("weighted").unwrap().domid
        )
    );
    h.ok(&["sched-credit", "-d", "weighted", "-w", "256", "-c", "0"]);
    assert_eq!(read(&cpu, "cpu.shares"), "1024");
    assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "-1");
    h.ok(&["sched-credit2", "-d", "weighted", "-w", "1024"]);
    assert_eq!(read(&cpu, "cpu.shares"), "4096");
    let all = h.ok(&["sched-credit"]);
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines[0], "Cpupool Pool-0: [sched params unavailable]");
    assert_eq!(
        lines[1],
        "Name                                ID Weight  Cap"
    );
    assert!(
        lines[2].starts_with("Domain-0") && lines[2].ends_with("   256    0"),
        "{all}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("weighted") && l.ends_with("  1024    0")),
        "{all}"
    );

    // Refusals, worded as xl words them where xl has words.
    assert!(h
        .fails(&["sched-credit", "-w", "5"])
        .contains("Must specify a domain."));
    assert!(h
        .fails(&["sched-credit", "-d", "weighted", "-w", "0"])
        .contains("weight 0 is out of range: expected 1-65535"));
    assert!(h
        .fails(&["sched-credit", "-d", "weighted", "-c", "70000"])
        .contains("cap 70000 is out of range"));
    assert!(h
        .fails(&["sched-credit", "-p", "other"])
        .contains("unknown cpupool 'other'"));
    assert!(h
        .fails(&["sched-credit", "-d", "0", "-w", "300"])
        .contains("it is the host itself"));
    assert!(h
        .fails(&["sched-rtds", "-d", "weighted", "-p", "10000", "-b", "5000"])
        .contains("sched-rtds is not supported"));

    h.ok(&["destroy", "weighted"]);
    for d in [&cpu, &mem, &pids] {
        wait_for("the domain's cgroup to be removed", TIMEOUT, || {
            (!d.exists()).then_some(())
        });
    }
}

#[test]
fn cpus_forms_pin_the_vcpu_threads_and_vcpu_list_shows_both_masks() {
    let h = Host::start();
    assert!(host_cpus() >= 2, "these tests need two host CPUs");
    // A per-vCPU list (xl.cfg(5)): vCPU 0 on CPU 1, vCPU 1 on CPU 0; soft affinity is stored.
    h.probe_cfg(
        "p.cfg",
        "pinned",
        "idle",
        "vcpus = 2\ncpus = [\"1\", \"0\"]\ncpus_soft = \"all,^1\"\n",
    );
    // `nodes:` resolves through the host's NUMA topology: this machine has one node (node 0 holds
    // every CPU), so "nodes:0,^0" leaves CPU 1 only.
    h.probe_cfg("n.cfg", "noded", "idle", "cpus = \"nodes:0,^0\"\n");
    h.ok(&["create", "p.cfg"]);
    h.ok(&["create", "n.cfg"]);
    let pid = h.vmm_pid("pinned").unwrap();
    assert_eq!(vcpu_masks(pid), [(0, "1".to_owned()), (1, "0".to_owned())]);
    assert_eq!(
        vcpu_masks(h.vmm_pid("noded").unwrap()),
        [(0, "1".to_owned())]
    );

    let out = h.ok(&["vcpu-list", "pinned"]);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    // Name ID VCPU CPU State Time(s) Hard / Soft
    assert_eq!(rows[0][2], "0");
    assert_eq!(&rows[0][6..], ["1", "/", "0"], "{out}");
    assert_eq!(&rows[1][6..], ["0", "/", "0"], "{out}");
    // The CPU column is where the thread last ran: within its hard affinity.
    wait_for("vcpu-list to show vCPU 0 on CPU 1", TIMEOUT, || {
        let out = h.ok(&["vcpu-list", "pinned"]);
        let row: Vec<String> = out
            .lines()
            .nth(1)?
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        (row[3] == "1").then_some(())
    });

    // vcpu-pin: hard left alone with `-`, soft set; then hard changed, soft left alone.
    h.ok(&["vcpu-pin", "pinned", "0", "-", "1"]);
    assert_eq!(vcpu_masks(pid)[0].1, "1");
    let row0 = |h: &Host| {
        h.ok(&["vcpu-list", "pinned"])
            .lines()
            .nth(1)
            .unwrap()
            .to_owned()
    };
    assert!(row0(&h).ends_with("  1 / 1"), "{}", row0(&h));
    h.ok(&["vcpu-pin", "pinned", "0", "all"]);
    assert_eq!(vcpu_masks(pid)[0].1, "0-1");
    assert!(row0(&h).ends_with("  all / 1"), "{}", row0(&h));

    // A spec that selects no CPU of this host is refused before anything starts.
    h.probe_cfg("bad.cfg", "nocpu", "idle", "cpus = \"node:7\"\n");
    let err = h.fails(&["create", "bad.cfg"]);
    assert!(
        err.contains("cpus: `nodes:7` selects no CPU of this host for vCPU 0"),
        "{err}"
    );
    h.ok(&["destroy", "pinned"]);
    h.ok(&["destroy", "noded"]);
}

#[test]
fn mem_set_and_vcpu_set_are_checked_as_xl_checks_them() {
    let h = Host::start();
    h.probe_cfg(
        "m.cfg",
        "sized",
        "idle",
        "memory = 32\nmaxmem = 64\nvcpus = 1\nmaxvcpus = 2\n",
    );
    h.ok(&["create", "m.cfg"]);
    let id = h.row("sized").unwrap().domid;
    // One availability node per possible vCPU.
    let read = |p: &str| h.xenstore("xenstore-read", &[p]).trim().to_owned();
    assert_eq!(
        read(&format!("/local/domain/{id}/cpu/0/availability")),
        "online"
    );
    assert_eq!(
        read(&format!("/local/domain/{id}/cpu/1/availability")),
        "offline"
    );

    let err = h.fails(&["mem-set", "sized", "65"]);
    assert!(
        err.contains("memory_dynamic_max must be less than or equal to memory_static_max"),
        "{err}"
    );
    assert!(
        err.ends_with(&format!(
            "cannot set domid {id} dynamic max memory to : 65\n"
        )),
        "{err}"
    );
    assert!(h
        .fails(&["mem-set", "sized", "8"])
        .contains("below the minimum threshold of 16 MiB"));
    assert!(h
        .fails(&["mem-set", "sized", "12q"])
        .contains("invalid memory size: 12q"));
    h.ok(&["mem-set", "sized", "32"]);
    // The balloon follows (issue 16's memory half: tests/balloon.rs covers it in depth).
    h.ok(&["mem-set", "sized", "48"]);

    let over = host_cpus() + 1;
    let err = h.fails(&["vcpu-set", "sized", &over.to_string()]);
    assert!(
        err.contains(&format!(
            "You are overcommmitting! You have {} physical CPUs and want {over} vCPUs!",
            host_cpus()
        )),
        "{err}"
    );
    let err = h.fails(&["vcpu-set", "-i", "sized", "3"]);
    assert!(
        err.contains(&format!(
            "Domain {id}:Requested 3 VCPUs, however maxcpus is 2!"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "libxl_set_vcpuonline failed domid={id} max_vcpus=3"
        )),
        "{err}"
    );
    assert!(h
        .fails(&["vcpu-set", "sized", "x"])
        .contains("Error: Invalid argument x as VCPU."));
    h.ok(&["vcpu-set", "sized", "1"]);
    // ACPI CPU hotplug (tests/vcpu_hotplug.rs has the whole round trip).
    h.ok(&["vcpu-set", "sized", "2"]);
    h.ok(&["destroy", "sized"]);
}
