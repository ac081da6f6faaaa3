//! End-to-end ACPI CPU hotplug (issue 16, vCPUs): `maxvcpus` possible CPUs in the guest's MADT,
//! `vcpu-set` plugging vCPUs in and out through the GED and the CPU hotplug register block, the
//! probe guest bringing them up with INIT-SIPI and taking them down, the store's
//! `cpu/N/availability`, `list`'s VCPUs column, `vcpu-list`, and the new vCPU threads' `cpus` pinning.
#![allow(clippy::unwrap_used)]

mod support;

use support::guest_lines::vcpu_masks;
use support::{wait_for, Host, TIMEOUT};

/// `vcpu-list DOM` rows as (vCPU, CPU, state).
fn vcpu_rows(h: &Host, dom: &str) -> Vec<(String, String, String)> {
    h.ok(&["vcpu-list", dom])
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[2].to_owned(), f[3].to_owned(), f[4].to_owned())
        })
        .collect()
}

fn availability(h: &Host, id: u32) -> Vec<String> {
    (0..3)
        .map(|k| {
            h.xenstore(
                "xenstore-read",
                &[&format!("/local/domain/{id}/cpu/{k}/availability")],
            )
            .trim()
            .to_owned()
        })
        .collect()
}

fn wait_vcpus_column(h: &Host, dom: &str, n: u32) {
    wait_for(
        &format!("list to show {n} VCPUs for {dom}"),
        TIMEOUT,
        || (h.row(dom)?.vcpus == n).then_some(()),
    );
}

fn count(h: &Host, dom: &str, line: &str) -> usize {
    h.console_log(dom).matches(line).count()
}

fn wait_count(h: &Host, dom: &str, line: &str, n: usize) {
    wait_for(
        &format!("{n} x {line:?} on {dom}'s console"),
        TIMEOUT,
        || (count(h, dom, line) >= n).then_some(()),
    );
}

#[test]
fn vcpu_set_plugs_and_unplugs_vcpus_through_acpi_hotplug() {
    let h = Host::start();
    let ncpus = std::thread::available_parallelism().unwrap().get();
    assert!(ncpus >= 2, "this test needs two host CPUs");
    // vCPU 0 on CPU 1, vCPUs 1 and 2 on CPU 0: the hot-plugged threads must honour it too.
    h.probe_cfg(
        "hp.cfg",
        "hot",
        "idle",
        "maxvcpus = 3\ncpus = [\"1\", \"0\", \"0\"]\n",
    );
    h.ok(&["create", "hp.cfg"]);
    h.wait_console("hot", "PROBE idle ready");
    // The guest counts the possible CPUs from the MADT (Online Capable entries).
    assert!(
        h.console_log("hot")
            .contains("PROBE cpus possible=3 online=1"),
        "{}",
        h.console_log("hot")
    );
    let id = h.row("hot").unwrap().domid;
    let pid = h.vmm_pid("hot").unwrap();
    assert_eq!(availability(&h, id), ["online", "offline", "offline"]);
    // Recorded as libxl records avail_vcpus (list -l, the next reboot), the ceiling kept.
    let long: serde_json::Value = serde_json::from_str(&h.ok(&["list", "-l", "hot"])).unwrap();
    let b_info = &long[0]["config"]["b_info"];
    assert_eq!(b_info["avail_vcpus"], serde_json::json!([0]), "{long}");
    assert_eq!(b_info["max_vcpus"], 3, "{long}");
    wait_vcpus_column(&h, "hot", 1);
    let rows = vcpu_rows(&h, "hot");
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!((rows[1].1.as_str(), rows[1].2.as_str()), ("-", "--p"));
    assert_eq!((rows[2].1.as_str(), rows[2].2.as_str()), ("-", "--p"));
    assert_eq!(vcpu_masks(pid), [(0, "1".to_owned())]);
    // A vCPU that was never plugged in can be pinned (xl: any vCPU below maxvcpus); its thread
    // takes the pin when it starts.
    h.ok(&["vcpu-pin", "hot", "1", "1"]);

    // Up: two new vCPUs, each brought up by the guest (more than this host's 2 CPUs: xl wants -i).
    assert!(h
        .fails(&["vcpu-set", "hot", "3"])
        .contains("You are overcommmitting!"));
    h.ok(&["vcpu-set", "-i", "hot", "3"]);
    assert_eq!(availability(&h, id), ["online", "online", "online"]);
    wait_count(&h, "hot", "PROBE cpu 1 up", 1);
    wait_count(&h, "hot", "PROBE cpu 2 up", 1);
    wait_vcpus_column(&h, "hot", 3);
    assert!(vcpu_rows(&h, "hot").iter().all(|r| r.2 != "--p"));
    assert_eq!(
        vcpu_masks(pid),
        [
            (0, "1".to_owned()),
            (1, "1".to_owned()),
            (2, "0".to_owned())
        ]
    );
    // vcpu-list shows the pin of vCPU 1 as its hard affinity.
    let list = h.ok(&["vcpu-list", "hot"]);
    let row1: Vec<&str> = list.lines().nth(2).unwrap().split_whitespace().collect();
    assert_eq!(&row1[6..], ["1", "/", "all"], "{list}");

    // Down: the guest takes vCPU 2 down and ejects it; its thread stays (parked).
    h.ok(&["vcpu-set", "hot", "2"]);
    assert_eq!(availability(&h, id), ["online", "online", "offline"]);
    wait_count(&h, "hot", "PROBE cpu 2 down", 1);
    wait_vcpus_column(&h, "hot", 2);
    wait_for("vcpu-list to show vCPU 2 offline", TIMEOUT, || {
        let r = vcpu_rows(&h, "hot");
        (r[2].1 == "-" && r[2].2 == "--p").then_some(())
    });
    assert_eq!(
        vcpu_masks(pid).len(),
        3,
        "the ejected vCPU's thread is parked"
    );

    // Up again: the parked vCPU is reused (no new thread), the guest starts it again.
    h.ok(&["vcpu-set", "-i", "hot", "3"]);
    wait_count(&h, "hot", "PROBE cpu 2 up", 2);
    wait_vcpus_column(&h, "hot", 3);
    assert_eq!(vcpu_masks(pid).len(), 3);
    assert_eq!(count(&h, "hot", "PROBE cpu 1 up"), 1);

    // Two at once, down to the boot vCPU.
    h.ok(&["vcpu-set", "hot", "1"]);
    wait_count(&h, "hot", "PROBE cpu 1 down", 1);
    wait_count(&h, "hot", "PROBE cpu 2 down", 2);
    wait_vcpus_column(&h, "hot", 1);
    assert_eq!(availability(&h, id), ["online", "offline", "offline"]);

    // Refusals, in xl's words.
    let err = h.fails(&["vcpu-set", "-i", "hot", "4"]);
    assert!(
        err.contains(&format!(
            "Domain {id}:Requested 4 VCPUs, however maxcpus is 3!"
        )),
        "{err}"
    );
    assert!(h
        .fails(&["vcpu-set", "hot", "0"])
        .contains("Requested 0 VCPUs"));
    h.ok(&["pause", "hot"]);
    let err = h.fails(&["vcpu-set", "hot", "2"]);
    assert!(err.contains("paused"), "{err}");
    h.ok(&["unpause", "hot"]);
    assert!(!h.console_log("hot").contains("PROBE error"));
    h.ok(&["destroy", "hot"]);
}
