//! Issue 19: every domusd-launched domus-vmm is jailed, a denied system call kills it and domusd says
//! why, and domusd's door lets in root and the `domus` group's members only (the API), never anyone
//! else, and the store, console and control sockets stay root-only.
//!
//! Needs root, /dev/kvm, `setpriv` (util-linux) and /usr/bin/python3 (a client that connects as an
//! unprivileged user).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use support::{wait_for, Host, TIMEOUT};

/// A group number no one on a test machine uses; the door takes it by number (no /etc/group edit).
const TEST_GID: u32 = 48765;
/// An unprivileged user (nobody).
const NOBODY: u32 = 65534;

fn status_field(pid: u32, key: &str) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("{key} missing from /proc/{pid}/status"))
        .trim()
        .to_owned()
}

fn ns(pid: &str, kind: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn a_running_domains_vmm_is_jailed_and_the_domain_works() {
    let h = Host::start();
    h.probe_cfg("j.cfg", "jailed", "idle", "");
    h.ok(&["create", "j.cfg"]);
    h.wait_console("jailed", "PROBE idle ready");
    let domid = h.row("jailed").unwrap().domid;
    let pid = h.vmm_pid("jailed").unwrap();

    assert_eq!(status_field(pid, "Seccomp"), "2");
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    for caps in ["CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(pid, caps), "0000000000000000", "{caps}");
    }
    // uid and gid 200000 + domid (real, effective, saved, fs), no supplementary groups.
    let want = format!("{0}\t{0}\t{0}\t{0}", 200_000 + domid);
    assert_eq!(status_field(pid, "Uid"), want);
    assert_eq!(status_field(pid, "Gid"), want);
    assert_eq!(status_field(pid, "Groups"), "");
    // Every thread is filtered (and the vCPU thread is there).
    let tasks: Vec<_> = fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(tasks.len() >= 2, "{tasks:?}");
    for t in &tasks {
        let st = fs::read_to_string(t.join("status")).unwrap();
        assert!(st.contains("Seccomp:\t2"), "{}: {st}", t.display());
    }

    // Its root is the jail: an empty file system that is not the host's.
    let root = format!("/proc/{pid}/root");
    assert_eq!(fs::read_dir(&root).unwrap().count(), 0, "the jail is empty");
    assert_ne!(
        fs::metadata(&root).unwrap().dev(),
        fs::metadata("/").unwrap().dev()
    );
    // Its namespaces are its own (domusd runs in this test's namespaces).
    for kind in ["mnt", "pid", "ipc", "uts", "net"] {
        assert_ne!(ns(&pid.to_string(), kind), ns("self", kind), "{kind}");
    }
    // It is PID 1 of its PID namespace, and the host pid is what the store publishes.
    let nspid = status_field(pid, "NSpid");
    assert_eq!(nspid, format!("{pid}\t1"));
    assert_eq!(
        h.xenstore(
            "xenstore-read",
            &[&format!("/local/domain/{domid}/image/device-model-pid")]
        )
        .trim(),
        pid.to_string()
    );
    // In the domain's cgroup.
    let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cg.lines()
            .any(|l| l.contains("memory") && l.contains(&format!("/domain-{domid}-"))),
        "{cg}"
    );
    // Limits: no core files, bounded descriptors.
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let limit = |name: &str| {
        limits
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .split_whitespace()
            .rev()
            .nth(2)
            .unwrap()
            .to_owned()
    };
    assert_eq!(limit("Max core file size"), "0", "{limits}");
    assert_eq!(limit("Max open files"), "4096", "{limits}");

    // The domain still does what a domain does: pause/unpause, console, a clean shutdown.
    h.ok(&["pause", "jailed"]);
    h.ok(&["unpause", "jailed"]);
    h.ok(&["shutdown", "-w", "jailed"]);
    assert!(h.console_log("jailed").contains("PROBE idle power-button"));
    assert_eq!(h.row("jailed"), None);
}

#[test]
fn a_denied_call_kills_the_vmm_and_domusd_reports_it() {
    // A domus-vmm wrapper (what domusd starts, in the VMM's namespaces) asking the real VMM for its
    // hidden test hook: a call every filter denies, 4 s after it locked itself in.
    let dir = tempfile::tempdir().unwrap();
    let shim = dir.path().join("denying-vmm");
    let vmm = Path::new(env!("CARGO_BIN_EXE_domus")).with_file_name("domus-vmm");
    fs::write(
        &shim,
        format!(
            "#!/bin/sh\nexec '{}' --test-denied-call-after-ms 4000 \"$@\"\n",
            vmm.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&shim, fs::Permissions::from_mode(0o755)).unwrap();
    let mut h = Host::start_in(None, vec![("DOMUS_VMM".into(), shim.display().to_string())]);

    // Started by this domusd: the exit status names SIGSYS, and on_crash applies.
    h.probe_cfg("d.cfg", "denied", "idle", "on_crash = \"preserve\"\n");
    h.ok(&["create", "d.cfg"]);
    wait_for("the denied call to crash the domain", TIMEOUT, || {
        h.row("denied").filter(|r| r.state == "---sc-")
    });
    let log = h.domusd_log();
    assert!(
        log.contains("killed by signal 31 (SIGSYS: a system call its seccomp filter denies)"),
        "{log}"
    );
    h.ok(&["destroy", "denied"]);

    // Re-adopted after kill -9 domusd: no exit status to see, so "died without an outcome".
    h.probe_cfg("r.cfg", "readopted", "idle", "on_crash = \"preserve\"\n");
    h.ok(&["create", "r.cfg"]);
    h.kill9_domusd();
    h.start_domusd();
    wait_for("the re-adopted VMM's crash", TIMEOUT, || {
        h.row("readopted").filter(|r| r.state == "---sc-")
    });
    let log = h.domusd_log();
    assert!(log.contains("re-adopted running domain"), "{log}");
    assert!(log.contains("domus-vmm died without an outcome"), "{log}");
    h.ok(&["destroy", "readopted"]);
}

/// Connects to unix socket `path` as uid/gid 65534 with supplementary groups `groups`; Ok if it
/// connected, Err(the client's complaint) if not.
fn connect_as_nobody(path: &Path, groups: &[u32]) -> Result<(), String> {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"));
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        let g: Vec<String> = groups.iter().map(u32::to_string).collect();
        cmd.arg(format!("--groups={}", g.join(",")));
    }
    let out = cmd
        .args([
            "/usr/bin/python3",
            "-c",
            "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("setpriv (util-linux) and /usr/bin/python3 are needed");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `domus ARGS` run as nobody with supplementary groups `groups`.
fn domus_as_nobody(h: &Host, groups: &[u32], args: &[&str]) -> std::process::Output {
    let domus = Path::new(env!("CARGO_BIN_EXE_domus"));
    let mut pre = vec![format!("--reuid={NOBODY}"), format!("--regid={NOBODY}")];
    if groups.is_empty() {
        pre.push("--clear-groups".into());
    } else {
        let g: Vec<String> = groups.iter().map(u32::to_string).collect();
        pre.push(format!("--groups={}", g.join(",")));
    }
    pre.push(domus.display().to_string());
    pre.extend(args.iter().map(|a| (*a).to_owned()));
    let pre: Vec<&str> = pre.iter().map(String::as_str).collect();
    h.command_as(Path::new("setpriv"), &pre)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn the_door_lets_the_group_use_the_api_and_keeps_everything_else_root_only() {
    let h = Host::start_in(None, vec![("DOMUS_GROUP".into(), TEST_GID.to_string())]);
    // The test's own temp dir must be traversable for an unprivileged client to reach anything.
    fs::set_permissions(h.path(""), fs::Permissions::from_mode(0o755)).unwrap();
    h.probe_cfg("door.cfg", "door", "idle", "");
    h.ok(&["create", "door.cfg"]);
    h.wait_console("door", "PROBE idle ready");
    let domid = h.row("door").unwrap().domid;

    let api = h.path("run/domusd.sock");
    let meta = fs::metadata(&api).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!((meta.uid(), meta.gid()), (0, TEST_GID));
    let log = fs::metadata(h.path("log/console/guest-door.log")).unwrap();
    assert_eq!(log.permissions().mode() & 0o777, 0o640);
    assert_eq!(log.gid(), TEST_GID);
    let store = h.path("run/xenstored/socket");
    let dom_dir = h.path(&format!("run/domains/{domid}"));
    let control = dom_dir.join("control.sock");
    let console = dom_dir.join("console.sock");
    for s in [&store, &control, &console] {
        assert!(s.exists(), "{} missing", s.display());
    }

    // Outside the group: nothing.
    let out = domus_as_nobody(&h, &[], &["list"]);
    assert!(
        !out.status.success(),
        "a user outside the group used the API"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ermission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for s in [&api, &store, &control, &console] {
        let e = connect_as_nobody(s, &[]).expect_err("nobody connected");
        assert!(e.contains("PermissionError"), "{}: {e}", s.display());
    }
    // In the group: the API (the CLI works), still not the store, consoles or control sockets.
    let out = domus_as_nobody(&h, &[TEST_GID], &["list"]);
    assert!(
        out.status.success(),
        "a group member could not list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("door"));
    connect_as_nobody(&api, &[TEST_GID]).unwrap();
    for s in [&store, &control, &console] {
        let e = connect_as_nobody(s, &[TEST_GID]).expect_err("a member reached a root-only socket");
        assert!(e.contains("PermissionError"), "{}: {e}", s.display());
    }
    // A member's state-changing request is logged with its credentials.
    let out = domus_as_nobody(&h, &[TEST_GID], &["pause", "door"]);
    assert!(out.status.success());
    let log = h.domusd_log();
    assert!(
        log.lines().any(|l| l.contains("API request")
            && l.contains("peer_uid=65534")
            && l.contains(&format!("peer_gid={NOBODY}"))
            && l.contains("POST")),
        "{log}"
    );
    h.ok(&["destroy", "door"]);
}

#[test]
fn a_sandboxed_disk_works_through_the_worker_pool_too() {
    // Without io_uring the block device thread starts worker threads, each under its own filter.
    let h = Host::start_in(None, vec![("DOMUS_VMM_NO_IO_URING".into(), "1".into())]);
    let img = h.path("disk.img");
    fs::File::create(&img).unwrap().set_len(16 << 20).unwrap();
    h.probe_cfg(
        "pool.cfg",
        "pool",
        "blk-fill seed=5",
        // blk-fill needs room for its buffers: a later `memory` overrides the helper's 16 MiB.
        &format!("memory = 96\ndisk = ['file:{},xvda,w']\n", img.display()),
    );
    h.ok(&["create", "pool.cfg"]);
    h.wait_console("pool", "PROBE blk-fill sha256=");
    wait_for("the guest to power off", TIMEOUT, || {
        h.row("pool").is_none().then_some(())
    });
    let log = h.domusd_log();
    assert!(!log.contains("SIGSYS"), "{log}");
    assert!(log.contains("reason=Poweroff"), "{log}");
}

#[test]
fn no_sandbox_is_an_explicit_loud_opt_out() {
    let h = Host::start_in(None, vec![("DOMUS_NO_SANDBOX".into(), "1".into())]);
    assert!(h.domusd_log().contains("VMM SANDBOX DISABLED"));
    h.probe_cfg("o.cfg", "open", "idle", "");
    h.ok(&["create", "o.cfg"]);
    h.wait_console("open", "PROBE idle ready");
    let pid = h.vmm_pid("open").unwrap();
    assert_eq!(status_field(pid, "Seccomp"), "0");
    assert!(status_field(pid, "Uid").starts_with("0\t"));
    assert_eq!(ns(&pid.to_string(), "mnt"), ns("self", "mnt"));
    h.ok(&["destroy", "open"]);
}
