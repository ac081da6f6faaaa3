//! Save/restore and live migration of a domain resized at run time (issue 18 on top of issue 16): a
//! mem-soak guest whose balloon was moved by `mem-set` and whose vCPUs were plugged in and out by
//! `vcpu-set` (one vCPU created at run time and parked again by the guest) keeps all of it across
//! `save` + `restore` and across `migrate`: `list`'s Mem and VCPUs are right on the other side, the
//! balloon keeps the guest's `actual` (no new catch-up line), the epochs continue uncorrupted, the
//! hot-plugged vCPU stays up, and a later `vcpu-set` / `mem-set` still works there (the parked vCPU
//! is plugged in again, the balloon follows a new target).
#![allow(clippy::unwrap_used)]

mod support;

use support::guest_lines::{last_epoch, wait_epoch_above};
use support::migrate_hosts::{host, ssh_script};
use support::{wait_for, Host, TIMEOUT};

fn count(h: &Host, name: &str, line: &str) -> usize {
    h.console_log(name).matches(line).count()
}

fn wait_count(h: &Host, name: &str, line: &str, n: usize) {
    wait_for(&format!("{n} x {line:?} on {name}"), TIMEOUT, || {
        (count(h, name, line) >= n).then_some(())
    });
}

fn wait_columns(h: &Host, name: &str, mem: u64, vcpus: u32) {
    wait_for(
        &format!("list: {name} with Mem {mem} and {vcpus} VCPUs"),
        TIMEOUT,
        || {
            let r = h.row(name)?;
            (r.mem == mem && r.vcpus == vcpus).then_some(())
        },
    );
}

fn balloon_line(mib: u64) -> String {
    format!("PROBE balloon target_mib={mib} actual_mib={mib}\r\n")
}

/// 128 MiB of RAM (maxmem) with a 64 MiB target, 1 of 3 possible vCPUs, 32 MiB soaked.
fn soak_cfg(h: &Host, name: &str) {
    std::fs::write(
        h.path(&format!("cfg/{name}.cfg")),
        format!(
            "name = \"{name}\"\ntype = \"pvh\"\nkernel = \"{}\"\nextra = \"probe=mem-soak mib=32\"\nmemory = 64\nmaxmem = 128\nvcpus = 1\nmaxvcpus = 3\n",
            h.bins.probe.display()
        ),
    )
    .unwrap();
}

/// Creates `name` on `h` and resizes it: vCPUs 1 -> 3 -> 2 (vCPU 2 created, then ejected and
/// parked), memory 64 -> 48 MiB. Returns the epoch seen after all that.
fn create_and_resize(h: &Host, name: &str) -> u64 {
    soak_cfg(h, name);
    h.ok(&["create", &format!("{name}.cfg")]);
    h.wait_console(name, &balloon_line(64));
    let e = wait_epoch_above(h, name, 0);
    h.ok(&["vcpu-set", "-i", name, "3"]);
    wait_count(h, name, "PROBE cpu 2 up", 1);
    h.ok(&["vcpu-set", name, "2"]);
    wait_count(h, name, "PROBE cpu 2 down", 1);
    h.ok(&["mem-set", name, "48"]);
    h.wait_console(name, &balloon_line(48));
    wait_columns(h, name, 48, 2);
    wait_epoch_above(h, name, e)
}

/// On the side `name` arrived at: the state carried over, and it can still be resized. `seen`: how
/// often each line of the guest's life before the move is in this host's console log (once: the
/// console backlog travels with the domain).
fn check_arrived(h: &Host, name: &str, before: u64, seen: usize) {
    wait_columns(h, name, 48, 2);
    let e = wait_epoch_above(h, name, before + 1);
    let log = h.console_log(name);
    // The balloon kept `actual` (the driver had nothing to catch up with: no new line), vCPU 1 is
    // still up (not brought up again).
    assert_eq!(log.matches(&balloon_line(48)).count(), seen, "{log}");
    assert_eq!(log.matches("PROBE cpu 1 up").count(), seen, "{log}");
    // vCPU 2 (created at run time, parked by the guest) is plugged in again, then both go.
    h.ok(&["vcpu-set", "-i", name, "3"]);
    wait_count(h, name, "PROBE cpu 2 up", seen + 1);
    wait_columns(h, name, 48, 3);
    h.ok(&["vcpu-set", name, "1"]);
    wait_count(h, name, "PROBE cpu 1 down", 1);
    wait_count(h, name, "PROBE cpu 2 down", seen + 1);
    wait_columns(h, name, 48, 1);
    h.ok(&["mem-set", name, "96"]);
    h.wait_console(name, &balloon_line(96));
    wait_columns(h, name, 96, 1);
    wait_epoch_above(h, name, e + 1);
    let log = h.console_log(name);
    assert!(!log.contains("corrupt"), "{log}");
    assert!(!log.contains("PROBE error"), "{log}");
}

#[test]
fn save_restore_keeps_the_balloon_and_hotplugged_vcpus() {
    let h = Host::start();
    let e = create_and_resize(&h, "rs");
    let image = h.path("rs.img");
    h.ok(&["save", "rs", image.to_str().unwrap()]);
    assert!(h.row("rs").is_none());
    let saved = last_epoch(&h.console_log("rs")).unwrap();
    assert!(saved >= e);
    h.ok(&["restore", image.to_str().unwrap()]);
    // The image's configuration carries the recorded target and online count.
    assert_eq!(h.long("rs")["memory_mib"], 48);
    check_arrived(&h, "rs", saved, 1);
    h.ok(&["destroy", "rs"]);
    wait_for("no VMM left", TIMEOUT, || {
        h.records().is_empty().then_some(())
    });
}

#[test]
fn migration_keeps_the_balloon_and_hotplugged_vcpus() {
    let (_nsa, a) = host("rma", true);
    let (nsb, b) = host("rmb", false);
    let e = create_and_resize(&a, "rm");
    let to_b = ssh_script(&a, &b, &nsb, "ssh-b");
    let out = a.domus(&["migrate", "-s", to_b.to_str().unwrap(), "rm", "hostb"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}\n{}", b.domusd_log());
    assert!(a.row("rm").is_none());
    let at_source = last_epoch(&a.console_log("rm")).unwrap();
    assert!(at_source >= e);
    assert_eq!(b.long("rm")["memory_mib"], 48);
    check_arrived(&b, "rm", at_source, 1);
    b.ok(&["destroy", "rm"]);
    wait_for("no VMM left on either host", TIMEOUT, || {
        (a.records().is_empty() && b.records().is_empty()).then_some(())
    });
}
