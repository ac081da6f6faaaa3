//! Live migration end to end (issue 18): two Domus "hosts" on this machine, each a domusd in its own
//! network namespace with its own Domus directories; the "ssh" of `migrate -s` is a script that runs
//! `domus migrate-receive` inside the other host's namespace and environment. A mem-soak domain moves
//! while it runs (epochs continue, no corruption, `list` right on both sides at each step) and moves
//! back (the stream going straight from the source VMM through the receiver's stdin into the target
//! VMM one way, relayed by the CLI and copied into a FIFO by the receiver the other way); a migration cut off midway leaves the domain running on the source and nothing on the target;
//! a target that never reads the stream never gets the source guest paused.
#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use support::guest_lines::{last_epoch, wait_epoch_above};
use support::migrate_hosts::{host_with_env, soak_cfg, ssh_script_with};
use support::netns::Netns;
use support::{wait_for, Host, TIMEOUT};

/// A host in its own namespace (see `support::migrate_hosts`), its VMMs forced to the dirty bitmap
/// when `bitmap`.
fn host(tag: &str, cgroups: bool, bitmap: bool) -> (Netns, Host) {
    let env = if bitmap {
        vec![("DOMUS_VMM_DIRTY_BITMAP".to_owned(), "1".to_owned())]
    } else {
        Vec::new()
    };
    host_with_env(tag, cgroups, env)
}

/// An "ssh" to `to` with `filter` in front of the receiver.
fn ssh_script(from: &Host, to: &Host, ns: &Netns, name: &str, filter: &str) -> PathBuf {
    ssh_script_with(from, to, ns, name, filter)
}

fn names(h: &Host) -> Vec<String> {
    h.list().into_iter().map(|r| r.name).collect()
}

#[test]
fn a_running_domain_moves_to_the_other_host_and_back() {
    // Host A's VMMs track dirty pages with the bitmap (forced), host B's with the dirty ring.
    let (nsa, a) = host("mga", true, true);
    let (nsb, b) = host("mgb", false, false);
    soak_cfg(&a, "soak", 48, 96);
    a.ok(&["create", "soak.cfg"]);
    let uuid = a.long("soak")["uuid"].as_str().unwrap().to_owned();
    let e = wait_epoch_above(&a, "soak", 1);
    let to_b = ssh_script(&a, &b, &nsb, "ssh-b", "");
    let out = a.domus(&[
        "migrate",
        "-s",
        to_b.to_str().unwrap(),
        "--debug",
        "soak",
        "hostb",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}\n{}", b.domusd_log());
    assert!(err.contains("migration successful"), "{err}");
    for want in [
        "total time:",
        "downtime:",
        "bytes sent:",
        "pre-copy rounds:",
        "dirty tracking:  bitmap",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
    // Gone here, running there with the same UUID; the epochs go on with no corruption.
    assert_eq!(names(&a), ["Domain-0"]);
    assert_eq!(names(&b), ["Domain-0", "soak"]);
    assert_eq!(b.long("soak")["uuid"], uuid.as_str());
    // The target VMM read the receiver's stdin itself (no FIFO in between).
    assert!(
        b.domusd_log().contains("the stdin of migrate-receive"),
        "{}",
        b.domusd_log()
    );
    let at_source = last_epoch(&a.console_log("soak")).unwrap();
    assert!(at_source >= e);
    let moved = wait_epoch_above(&b, "soak", at_source + 1);
    assert!(!b.console_log("soak").contains("corrupt"));
    assert!(!a.console_log("soak").contains("corrupt"));

    // And back: B's VMM tracks with the dirty ring, the CLI relays the stream (as for a VMM that
    // cannot write it straight into the receiver's pipe), and the receiver copies it into a FIFO for
    // domusd (as for a domusd that takes no passed stream).
    let to_a = ssh_script(&b, &a, &nsa, "ssh-a", "");
    let out = b
        .command(&[
            "migrate",
            "--debug",
            "-s",
            to_a.to_str().unwrap(),
            "soak",
            "hosta",
        ])
        .env("DOMUS_MIGRATE_RELAY", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("dirty tracking:  ring"), "{err}");
    // The receiver went through its FIFO (as with an older domusd).
    assert!(
        a.domusd_log().contains("restoring domain")
            && !a.domusd_log().contains("the stdin of migrate-receive"),
        "{}",
        a.domusd_log()
    );
    assert_eq!(names(&b), ["Domain-0"]);
    assert_eq!(names(&a), ["Domain-0", "soak"]);
    wait_epoch_above(&a, "soak", moved + 1);
    assert!(!a.console_log("soak").contains("corrupt"));
    a.ok(&["destroy", "soak"]);
    wait_for("no VMM left on either host", TIMEOUT, || {
        (a.records().is_empty() && b.records().is_empty()).then_some(())
    });
}

#[test]
fn a_migration_cut_off_midway_leaves_the_domain_on_the_source_and_nothing_on_the_target() {
    let (_nsa, a) = host("mca", true, false);
    let (nsb, b) = host("mcb", false, false);
    soak_cfg(&a, "stay", 64, 128);
    a.ok(&["create", "stay.cfg"]);
    let e = wait_epoch_above(&a, "stay", 1);
    let domid = a.row("stay").unwrap().domid;
    // The connection drops after 16 MiB of the stream.
    let cut = ssh_script(&a, &b, &nsb, "ssh-cut", "head -c 16777216 |");
    let out = a.domus(&["migrate", "-s", cut.to_str().unwrap(), "stay", "hostb"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("migration failed, stay runs on here"), "{err}");
    // The source runs on (same domid, not paused), epochs continue without corruption.
    let r = a.row("stay").unwrap();
    assert_eq!(r.domid, domid);
    assert!(!r.state.contains('p'), "{r:?}");
    let later = last_epoch(&a.console_log("stay")).unwrap();
    wait_epoch_above(&a, "stay", later.max(e) + 1);
    assert!(!a.console_log("stay").contains("corrupt"));
    // Nothing on the target.
    wait_for("the target to clean up", TIMEOUT, || {
        (names(&b) == ["Domain-0"] && b.records().is_empty()).then_some(())
    });
    // The receiver on a host where the name is taken refuses, and the source runs on too.
    soak_cfg(&b, "stay", 8, 32);
    b.ok(&["create", "stay.cfg"]);
    let to_b = ssh_script(&a, &b, &nsb, "ssh-b", "");
    let out = a.domus(&["migrate", "-s", to_b.to_str().unwrap(), "stay", "hostb"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(a.row("stay").unwrap().domid, domid);
    assert!(!a.row("stay").unwrap().state.contains('p'));
    let now = last_epoch(&a.console_log("stay")).unwrap();
    wait_epoch_above(&a, "stay", now + 1);
    a.ok(&["destroy", "stay"]);
    b.ok(&["destroy", "stay"]);
}

#[test]
fn the_source_guest_runs_until_the_target_reads_the_stream() {
    let (_nsa, a) = host("mwa", true, false);
    soak_cfg(&a, "wait", 16, 64);
    a.ok(&["create", "wait.cfg"]);
    let e = wait_epoch_above(&a, "wait", 1);
    let domid = a.row("wait").unwrap().domid;
    // A "host" that swallows the whole stream and never starts a receiver: nothing ever reads it
    // on the target side, so the guest must never be paused for the stop-and-copy.
    let deaf = a.path("ssh-deaf");
    // (No `exec`: the shell keeps the receiver's stdout open, as a waiting receiver would.)
    std::fs::write(&deaf, "#!/bin/sh\ncat > /dev/null\n").unwrap();
    std::fs::set_permissions(&deaf, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut m = a
        .command(&["migrate", "-s", deaf.to_str().unwrap(), "wait", "hostb"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The pre-copy went out long ago (64 MiB), yet the guest keeps printing epochs.
    wait_epoch_above(&a, "wait", e + 3);
    if m.try_wait().unwrap().is_some() {
        let out = m.wait_with_output().unwrap();
        panic!(
            "migrate gave up early: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    m.kill().unwrap();
    m.wait().unwrap();
    // The VMM saw the stream end: the migration failed, the guest runs on here, unpaused.
    wait_for("the VMM to answer again", TIMEOUT, || {
        a.row("wait").filter(|r| !r.state.contains('p')).map(|_| ())
    });
    assert_eq!(a.row("wait").unwrap().domid, domid);
    let later = last_epoch(&a.console_log("wait")).unwrap();
    wait_epoch_above(&a, "wait", later + 1);
    assert!(!a.console_log("wait").contains("corrupt"));
    a.ok(&["destroy", "wait"]);
}

#[test]
fn a_nic_answers_ping_on_the_target_after_migration() {
    let (nsa, a) = host("mna", true, false);
    let (nsb, b) = host("mnb", false, false);
    for ns in [&nsa, &nsb] {
        ns.sh("ip link add bridge0 type bridge && ip addr add 10.0.7.1/24 dev bridge0 && ip link set bridge0 up");
    }
    std::fs::write(
        a.path("cfg/echo.cfg"),
        format!(
            "name = \"echo\"\ntype = \"pvh\"\nkernel = \"{}\"\nextra = \"probe=net-echo ip=10.0.7.10/24\"\nmemory = 64\nvcpus = 1\nvif = ['mac=aa:00:00:07:00:0b,bridge=bridge0']\n",
            a.bins.probe.display()
        ),
    )
    .unwrap();
    a.ok(&["create", "echo.cfg"]);
    let src = a.row("echo").unwrap().domid;
    a.wait_console("echo", "PROBE net-echo ready mac=aa:00:00:07:00:0b");
    assert!(nsa.ping([10, 0, 7, 10], 5), "answers on the source host");
    let to_b = ssh_script(&a, &b, &nsb, "ssh-b", "");
    let out = a.domus(&["migrate", "-s", to_b.to_str().unwrap(), "echo", "hostb"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The source's vif is gone with the domain; the target made one for its domid on its bridge.
    wait_for("the source vif gone", TIMEOUT, || {
        (!nsa.links().contains(&format!("vif{src}.0"))).then_some(())
    });
    let dst = b.row("echo").unwrap().domid;
    let vif = format!("vif{dst}.0");
    wait_for("the target vif on bridge0", TIMEOUT, || {
        (nsb.master(&vif).as_deref() == Some("bridge0")).then_some(())
    });
    assert!(nsb.ping([10, 0, 7, 10], 10), "answers on the target host");
    assert!(
        !nsa.ping([10, 0, 7, 10], 1),
        "nothing answers on the source"
    );
    b.ok(&["destroy", "echo"]);
    wait_for("no vif left", TIMEOUT, || {
        (!nsb.links().iter().any(|l| l.starts_with("vif"))).then_some(())
    });
}
