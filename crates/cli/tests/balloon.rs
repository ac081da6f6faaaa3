//! End-to-end tests of `mem-set` and `mem-max` through the virtio-balloon (issue 16, memory): the probe
//! guest's balloon driver follows the target (`PROBE balloon target_mib=N actual_mib=M`), the VMM gives
//! inflated pages back to the host (its VmRSS follows, within a tolerance), `list`'s Mem column, the
//! JSON view and the store's `memory/target` and `memory/static-max` follow, and the refusals use xl's
//! words. The probe runs `touch_mib=` so it writes all its free memory: what the host holds is what
//! the guest keeps, and inflated pages stay untouched.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::{wait_for, Host, TIMEOUT};

/// The VMM's resident memory, MiB.
fn rss_mib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib / 1024
}

/// How far the VMM's RSS may be from the guest's target: the guest leaves up to ~10 MiB below its
/// page pool untouched (its image, stacks and rings use part of it) and the 4 MiB NIC hole; the VMM
/// itself (a debug build) holds a few MiB.
const RSS_BELOW: u64 = 12;
const RSS_ABOVE: u64 = 8;

/// Waits until the VMM's RSS is within the tolerance of `target_mib`.
fn rss_follows(pid: u32, target_mib: u64) -> u64 {
    let mut last = 0;
    let found = wait_for_opt(Duration::from_secs(10), || {
        last = rss_mib(pid);
        (last + RSS_BELOW >= target_mib && last <= target_mib + RSS_ABOVE).then_some(last)
    });
    eprintln!("VmRSS {last} MiB for a target of {target_mib} MiB");
    found
        .unwrap_or_else(|| panic!("VmRSS {last} MiB did not follow the target of {target_mib} MiB"))
}

fn wait_for_opt<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn balloon_line(target: u64) -> String {
    format!("PROBE balloon target_mib={target} actual_mib={target}\r\n")
}

/// Waits until `list`'s Mem column shows `mib` for `name`.
fn mem_column(h: &Host, name: &str, mib: u64) {
    wait_for(&format!("Mem {mib} for {name}"), TIMEOUT, || {
        (h.row(name).unwrap().mem == mib).then_some(())
    });
}

#[test]
fn mem_set_moves_the_balloon_and_the_vmm_rss_follows() {
    let h = Host::start();
    h.probe_cfg(
        "b.cfg",
        "ballooned",
        "idle touch_mib=4096",
        "memory = 128\nmaxmem = 256\n",
    );
    h.ok(&["create", "b.cfg"]);
    let id = h.row("ballooned").unwrap().domid;
    let pid = h.vmm_pid("ballooned").unwrap();
    let read = |p: &str| {
        h.xenstore("xenstore-read", &[&format!("/local/domain/{id}/{p}")])
            .trim()
            .to_owned()
    };
    // The guest's RAM is maxmem; the balloon starts inflated by the difference (populate-on-demand).
    h.wait_console("ballooned", &balloon_line(128));
    mem_column(&h, "ballooned", 128);
    assert_eq!(read("memory/target"), "131072");
    assert_eq!(read("memory/static-max"), "262144");
    let at_boot = rss_follows(pid, 128);

    // Down: the guest gives pages back and the host really gets them.
    h.ok(&["mem-set", "ballooned", "64"]);
    h.wait_console("ballooned", &balloon_line(64));
    mem_column(&h, "ballooned", 64);
    assert_eq!(read("memory/target"), "65536");
    assert_eq!(h.long("ballooned")["memory_mib"], 64);
    let l: serde_json::Value = serde_json::from_str(&h.ok(&["list", "-l", "ballooned"])).unwrap();
    assert_eq!(l[0]["config"]["b_info"]["target_memkb"], 65536, "{l}");
    assert_eq!(l[0]["config"]["b_info"]["max_memkb"], 262144, "{l}");
    let down = rss_follows(pid, 64);
    assert!(down + 48 <= at_boot, "RSS {at_boot} -> {down} MiB");
    // The guest keeps writing its free memory but never an inflated page: RSS stays down.
    std::thread::sleep(Duration::from_millis(500));
    assert!(rss_mib(pid) <= 64 + RSS_ABOVE, "{} MiB", rss_mib(pid));

    // Up to maxmem, with xl's unit syntax: the guest uses the pages again.
    h.ok(&["mem-set", "ballooned", "256m"]);
    h.wait_console("ballooned", &balloon_line(256));
    mem_column(&h, "ballooned", 256);
    assert_eq!(read("memory/target"), "262144");
    rss_follows(pid, 256);

    // And down again, in KiB.
    h.ok(&["mem-set", "ballooned", "98304k"]);
    h.wait_console("ballooned", &balloon_line(96));
    mem_column(&h, "ballooned", 96);
    rss_follows(pid, 96);
    h.ok(&["destroy", "ballooned"]);
}

#[test]
fn mem_set_and_mem_max_refusals_and_a_domain_without_maxmem() {
    let h = Host::start();
    // maxmem = memory: a balloon all the same (as xl), so mem-set can shrink it.
    h.probe_cfg("e.cfg", "equal", "idle", "memory = 96\n");
    h.ok(&["create", "e.cfg"]);
    let id = h.row("equal").unwrap().domid;
    let read = |p: &str| {
        h.xenstore("xenstore-read", &[&format!("/local/domain/{id}/{p}")])
            .trim()
            .to_owned()
    };
    h.wait_console("equal", "PROBE idle ready");
    assert_eq!(h.row("equal").unwrap().mem, 96);
    h.ok(&["mem-set", "equal", "48"]);
    h.wait_console("equal", &balloon_line(48));
    mem_column(&h, "equal", 48);

    // Beyond maxmem, below the floor, bad sizes, unknown domains: refused, nothing changes.
    let err = h.fails(&["mem-set", "equal", "97"]);
    assert!(
        err.contains("memory_dynamic_max must be less than or equal to memory_static_max")
            && err.ends_with(&format!(
                "cannot set domid {id} dynamic max memory to : 97\n"
            )),
        "{err}"
    );
    assert!(h
        .fails(&["mem-set", "equal", "15"])
        .contains("below the minimum threshold of 16 MiB"));
    for bad in ["12q", "1kb", "4.5g", ""] {
        let err = h.fails(&["mem-set", "equal", bad]);
        assert!(
            err.contains(&format!("invalid memory size: {bad}")),
            "{bad:?}: {err}"
        );
    }
    let err = h.fails(&["mem-set", "nosuch", "64"]);
    assert!(err.contains("nosuch"), "{err}");
    assert!(h.fails(&["mem-set", "Domain-0", "64"]).contains("Domain-0"));
    assert_eq!(read("memory/target"), "49152");

    // mem-max: not below the current target (libxl's words), a new ceiling for mem-set.
    let err = h.fails(&["mem-max", "equal", "40"]);
    assert!(
        err.contains("memory_static_max must be greater than or equal to memory_dynamic_max"),
        "{err}"
    );
    h.ok(&["mem-max", "equal", "64"]);
    assert_eq!(read("memory/static-max"), "65536");
    assert_eq!(h.long("equal")["maxmem_mib"], 64);
    assert!(h
        .fails(&["mem-set", "equal", "80"])
        .contains("memory_dynamic_max must be less than or equal to memory_static_max"));
    h.ok(&["mem-set", "equal", "64"]);
    h.wait_console("equal", &balloon_line(64));
    // Raised above the RAM the VMM was built with: honoured from the next boot only.
    h.ok(&["mem-max", "equal", "512"]);
    let err = h.fails(&["mem-set", "equal", "200"]);
    assert!(
        err.contains(&format!(
            "domain {id} was started with 96 MiB of RAM: it cannot grow to 200 MiB"
        )),
        "{err}"
    );
    mem_column(&h, "equal", 64);
    assert_eq!(read("memory/target"), "65536");
    h.ok(&["destroy", "equal"]);
}
