//! domusd's restart path against the fake VMM: what a restarted daemon finds (records, live or
//! dead VMMs, outcomes) and what it does with them, plus admission and a state directory that
//! refuses writes.

use super::*;

/// A process whose command line names `control` as a VMM's does (`--control PATH`): a shell blocked
/// reading its stdin (no child of its own to outlive it).
fn fake_vmm_process(control: impl AsRef<Path>) -> Child {
    Command::new("sh")
        .args(["-c", "read x", "sh", "--control"])
        .arg(control.as_ref())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A dead process's pid (reaped), for records whose VMM is gone.
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

#[test]
fn recovery_undoes_an_interrupted_create_and_sweeps_what_no_record_claims() {
    let h = Harness::new();
    // A create killed after its record: its VMM (a process whose command line names its control
    // socket) is killed, its directory removed, its domid free again.
    let dir = h.runtime().join("4");
    std::fs::create_dir_all(&dir).unwrap();
    let control = dir.join("control.sock");
    let mut vmm = fake_vmm_process(&control);
    let pid = vmm.id();
    h.leave_record(4, "half", "", |r| {
        r.phase = Phase::Creating;
        r.vmm = Some(VmmRecord {
            pid,
            control: control.display().to_string(),
            console: dir.join("console.sock").display().to_string(),
            cgroup: None,
        });
    });
    // A VMM and a directory no record claims (a create killed before its VMM was recorded, or a
    // destroy killed after it removed the record).
    let orphan_dir = h.runtime().join("7");
    std::fs::create_dir_all(&orphan_dir).unwrap();
    let mut orphan = fake_vmm_process(orphan_dir.join("control.sock"));
    h.daemon.recover().unwrap();
    assert!(
        vmm.wait().unwrap().signal().is_some(),
        "the half-created VMM runs on"
    );
    assert!(
        orphan.wait().unwrap().signal().is_some(),
        "the unclaimed VMM runs on"
    );
    assert!(h.domids().is_empty());
    assert!(h.records().is_empty());
    assert!(!exists(&dir) && !exists(&orphan_dir));
    let info = h.daemon.create(h.config("next", ""), false).unwrap();
    assert_eq!(
        info.domid, 5,
        "next domid continues after the recorded ones"
    );
}

#[test]
fn an_outcome_kept_while_domusd_was_away_is_applied_once() {
    let h = Harness::new();
    let dir = h.runtime().join("3");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("outcome.json"),
        r#"{"reason":"poweroff","detail":"guest powered off: ACPI S5"}"#,
    )
    .unwrap();
    h.leave_record(
        3,
        "off",
        "on_poweroff = 'preserve'\non_crash = 'restart'\n",
        |r| {
            r.vmm = Some(VmmRecord {
                pid: dead_pid(),
                control: dir.join("control.sock").display().to_string(),
                console: dir.join("console.sock").display().to_string(),
                cgroup: None,
            });
        },
    );
    h.daemon.recover().unwrap();
    let d = h.daemon.get("off").unwrap();
    assert_eq!(d.shutdown_reason, Some(ShutdownReason::Poweroff), "{d:?}");
    assert_eq!(d.stop_detail.as_deref(), Some("guest powered off: ACPI S5"));
    assert_eq!(
        h.vmm.spawned(),
        0,
        "a poweroff was taken for a crash and restarted"
    );
    // Another restart finds it applied: still preserved, nothing started.
    let again = h.restarted();
    assert_eq!(again.get("off").unwrap().state, DomainState::Shutdown);
    assert_eq!(h.vmm.spawned(), 0);
}

#[test]
fn a_restart_decided_before_the_kill_is_finished_once() {
    let h = Harness::new();
    let cfg = h.config("again", "on_reboot = 'restart'\n");
    h.leave_record(2, "again", "on_reboot = 'restart'\n", |r| {
        r.stopped = Some(crate::daemon::domain::StopRecord {
            reason: ShutdownReason::Reboot,
            detail: None,
            uptime_s: 5.0,
        });
        r.restart = Some(cfg);
    });
    h.daemon.recover().unwrap();
    h.wait_running("again", 3);
    assert_eq!(h.domids(), [3]);
    h.wait("the old record retired", || h.records() == ["3.json"]);
    assert_eq!(h.vmm.spawned(), 1);
    assert_eq!(h.daemon.get("again").unwrap().restarts, 1);
}

#[test]
fn admission_counts_running_domains_and_the_reserve() {
    let h = Harness::new();
    // The harness host has 1024 MiB and no reserve.
    h.daemon
        .create(h.config("a", "memory = 512\n"), false)
        .unwrap();
    let e = h
        .daemon
        .create(h.config("b", "memory = 513\n"), false)
        .unwrap_err();
    assert_eq!(e.status, 409);
    assert!(e.message.contains("not enough memory"), "{}", e.message);
    assert_eq!(h.vmm.spawned(), 1);
    h.daemon
        .create(h.config("b", "memory = 512\n"), false)
        .unwrap();
}

#[test]
fn an_unwritable_state_dir_refuses_changes_and_recovers() {
    use std::os::unix::fs::PermissionsExt;
    let h = Harness::new();
    h.daemon.create(h.config("a", ""), false).unwrap();
    // Root ignores modes: make the record directory unusable by replacing it with a file.
    let recs = h.dir.path().join("state/domains");
    let aside = h.dir.path().join("state/domains.aside");
    std::fs::rename(&recs, &aside).unwrap();
    std::fs::write(&recs, b"").unwrap();
    let e = h.daemon.create(h.config("b", ""), false).unwrap_err();
    assert_eq!(e.status, 503, "{}", e.message);
    assert!(e.message.contains("cannot be written"), "{}", e.message);
    assert_eq!(
        h.vmm.spawned(),
        1,
        "a VMM was started for a create that could not be recorded"
    );
    assert!(h.daemon.rename("a", "z").is_err());
    assert_eq!(h.daemon.get("a").unwrap().name, "a");
    std::fs::remove_file(&recs).unwrap();
    std::fs::rename(&aside, &recs).unwrap();
    assert_eq!(
        std::fs::metadata(&recs).unwrap().permissions().mode() & 0o777,
        0o700
    );
    h.daemon.create(h.config("b", ""), false).unwrap();
    h.daemon.rename("a", "z").unwrap();
}
