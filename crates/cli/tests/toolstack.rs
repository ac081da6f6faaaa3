//! End-to-end tests of the toolstack: the real `domus` CLI, a real domusd (hosting the real store), the real
//! domus-vmm on /dev/kvm and the probe guest — issue 5's "Must show" list. Each test has its own temp dirs
//! (DOMUS_* variables) and kills what it started.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::pty::PtyChild;
use support::{alive, kill9, wait_for, Host, TIMEOUT};

const CTRL_RBRACKET: u8 = 0x1d;

fn is_up(state: &str) -> bool {
    state == "r-----" || state == "-b----"
}

#[test]
fn howto_flow_create_console_detach_list_shutdown() {
    let h = Host::start();
    h.probe_cfg("web.cfg", "web", "idle", "");
    let mut t = PtyChild::spawn(h.command(&["create", "-c", "web.cfg"]));
    t.expect("Parsing config from", TIMEOUT);
    t.expect("PROBE idle ready", TIMEOUT);
    t.send(&[CTRL_RBRACKET]);
    let st = t.wait(Duration::from_secs(10));
    assert!(st.success(), "create -c after Ctrl-] exited {st}");
    let row = h.row("web").expect("web listed after detaching");
    assert!(is_up(&row.state), "state {}", row.state);
    assert_eq!((row.mem, row.vcpus), (16, 1));
    assert_eq!(h.list()[0].name, "Domain-0");
    h.ok(&["shutdown", "-w", "web"]);
    assert_eq!(h.row("web"), None, "gone from list after shutdown -w");
    assert!(h.console_log("web").contains("PROBE idle power-button"));
}

#[test]
fn reboot_restarts_under_the_same_name() {
    let h = Host::start();
    h.probe_cfg("r.cfg", "rb", "idle", "on_reboot = \"restart\"\n");
    h.ok(&["create", "r.cfg"]);
    h.wait_console("rb", "PROBE idle ready");
    let first = h.long("rb");
    h.ok(&["reboot", "rb"]);
    let second = wait_for("rb to come back with a new domid", TIMEOUT, || {
        let d = h.row("rb")?;
        (u64::from(d.domid) != first["domid"].as_u64().unwrap() && is_up(&d.state))
            .then(|| h.long("rb"))
    });
    assert!(
        second["start_time"].as_f64().unwrap() > first["start_time"].as_f64().unwrap(),
        "new uptime"
    );
    wait_for("second boot on the console log", TIMEOUT, || {
        (h.console_log("rb").matches("PROBE idle ready").count() >= 2).then_some(())
    });
    // A guest-initiated reset (i8042) is a reboot too.
    h.probe_cfg(
        "self.cfg",
        "selfreset",
        "reboot",
        "on_reboot = \"restart\"\n",
    );
    h.ok(&["create", "self.cfg"]);
    wait_for("the guest's own reset to restart it", TIMEOUT, || {
        (h.console_log("selfreset").matches("PROBE reboot").count() >= 2).then_some(())
    });
    h.ok(&["destroy", "selfreset"]);
    h.ok(&["destroy", "rb"]);
    assert_eq!(h.list().len(), 1);
}

#[test]
fn crash_with_preserve_stays_until_destroy() {
    let h = Host::start();
    h.probe_cfg("p.cfg", "crashy", "panic", "on_crash = \"preserve\"\n");
    h.ok(&["create", "p.cfg"]);
    let row = wait_for("crashy to be crashed", TIMEOUT, || {
        h.row("crashy").filter(|r| r.state == "---sc-")
    });
    assert!(h
        .console_log("crashy")
        .contains("PROBE panic pvpanic=present"));
    let verbose = h.ok(&["list", "-v", "crashy"]);
    let line = verbose.lines().nth(1).unwrap();
    assert_eq!(
        line.split_whitespace().nth(7),
        Some("3"),
        "reason code 3 (crash) in {line:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        h.row("crashy").map(|r| r.domid),
        Some(row.domid),
        "still listed"
    );
    h.ok(&["destroy", "crashy"]);
    assert_eq!(h.row("crashy"), None);
}

#[test]
fn three_domains_and_a_duplicate_name() {
    let h = Host::start();
    for n in ["a", "b", "c"] {
        h.probe_cfg(&format!("{n}.cfg"), n, "idle", "");
        h.ok(&["create", &format!("{n}.cfg")]);
    }
    let rows = h.list();
    let mut ids: Vec<u32> = rows.iter().map(|r| r.domid).collect();
    ids.dedup();
    assert_eq!(ids, vec![0, 1, 2, 3], "{rows:?}");
    for n in ["a", "b", "c"] {
        h.wait_console(n, "PROBE idle ready");
    }
    let err = h.fails(&["create", "a.cfg"]);
    assert!(err.contains("Domain with name 'a' already exists"), "{err}");
    assert_eq!(h.list().len(), 4);
    h.ok(&["shutdown", "-a", "-w"]);
    assert_eq!(h.list().len(), 1);
}

#[test]
fn domusd_kill9_readopts_and_a_dead_vmm_is_a_crash() {
    let mut h = Host::start();
    h.probe_cfg("k.cfg", "keep", "idle", "on_crash = \"preserve\"\n");
    h.probe_cfg("g.cfg", "gone", "idle", "");
    h.ok(&["create", "k.cfg"]);
    h.ok(&["create", "g.cfg"]);
    h.wait_console("keep", "PROBE idle ready");
    h.wait_console("gone", "PROBE idle ready");
    let before = h.list();
    h.kill9_domusd();
    assert!(
        alive(h.vmm_pid("keep").unwrap()),
        "a domusd kill -9 must not touch guests"
    );
    h.start_domusd();
    let after = h.list();
    assert_eq!(
        before
            .iter()
            .map(|r| (&r.name, r.domid))
            .collect::<Vec<_>>(),
        after.iter().map(|r| (&r.name, r.domid)).collect::<Vec<_>>()
    );
    assert!(after.iter().skip(1).all(|r| is_up(&r.state)), "{after:?}");
    // The store survived, and the console still attaches (backlog replayed).
    let keep_id = h.row("keep").unwrap().domid.to_string();
    assert_eq!(
        h.xenstore("xenstore-read", &[&format!("/local/domain/{keep_id}/name")])
            .trim(),
        "keep"
    );
    let mut t = PtyChild::spawn(h.command(&["console", "keep"]));
    t.expect("PROBE idle ready", TIMEOUT);
    t.send(&[CTRL_RBRACKET]);
    assert!(t.wait(Duration::from_secs(10)).success());
    // kill -9 of one VMM: that domain alone crashes (preserve keeps it, destroy removes it).
    kill9(h.vmm_pid("keep").unwrap());
    wait_for("keep to be crashed", TIMEOUT, || {
        h.row("keep").filter(|r| r.state == "---sc-")
    });
    assert!(is_up(&h.row("gone").unwrap().state));
    kill9(h.vmm_pid("gone").unwrap());
    wait_for("gone to be destroyed", TIMEOUT, || {
        h.row("gone").is_none().then_some(())
    });
    h.ok(&["destroy", "keep"]);
    assert_eq!(h.list().len(), 1);
}

#[test]
fn autostart_then_shutdown_all_survives_a_domusd_restart() {
    let mut h = Host::start();
    h.probe_cfg("auto/one", "one", "idle", "");
    h.probe_cfg("auto/two", "two", "idle", "");
    let out = h.ok(&["autostart"]);
    assert!(
        out.contains("Started domain one") && out.contains("Started domain two"),
        "{out}"
    );
    let names: Vec<String> = h.list().into_iter().map(|r| r.name).collect();
    assert_eq!(names, vec!["Domain-0", "one", "two"]);
    let again = h.domus(&["autostart"]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("Domain one already running"));
    assert_eq!(h.list().len(), 3);
    h.wait_console("one", "PROBE idle ready");
    h.wait_console("two", "PROBE idle ready");
    let before = h.list();
    h.term_domusd();
    h.start_domusd();
    assert_eq!(
        h.list(),
        before
            .iter()
            .cloned()
            .map(|mut r| {
                // Blocked/running flips with what the guest does; compare identity only.
                r.state = h.row(&r.name).unwrap().state;
                r
            })
            .collect::<Vec<_>>()
    );
    let o = h.domus(&["shutdown", "-a", "-w"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("All domains have been shut down"));
    assert_eq!(h.list().len(), 1);
    for n in ["one", "two"] {
        assert!(
            h.console_log(n).contains("PROBE idle power-button"),
            "{n} shut down cleanly"
        );
    }
}

#[test]
fn first_command_boots_the_hello_example() {
    let h = Host::start();
    // A checkout as a new user has it: examples/hello.cfg names target/debug/domus-probe relative to the
    // repository root.
    let root = h.path("checkout");
    std::fs::create_dir_all(root.join("examples")).unwrap();
    std::fs::create_dir_all(root.join("target/debug")).unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello.cfg");
    std::fs::copy(&example, root.join("examples/hello.cfg")).unwrap();
    std::os::unix::fs::symlink(&h.bins.probe, root.join("target/debug/domus-probe")).unwrap();
    let mut cmd = h.command(&["create", "-c", "examples/hello.cfg"]);
    cmd.current_dir(&root);
    let mut t = PtyChild::spawn(cmd);
    // The greeting reports what the example configures.
    let text = std::fs::read_to_string(&example).unwrap();
    let key = |k: &str| {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(a, _)| a.trim() == k)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap()
    };
    t.expect(
        &format!(
            "PROBE hello vcpus={} mem_mib={}",
            key("vcpus"),
            key("memory")
        ),
        TIMEOUT,
    );
    // The probe powers off; on_poweroff=destroy; the console closes and create -c returns.
    assert!(t.wait(TIMEOUT).success());
    wait_for("hello to be gone", TIMEOUT, || {
        h.row("hello").is_none().then_some(())
    });
}

#[test]
fn rename_restart_keeps_the_old_domain_and_shutdown_timeout_destroys() {
    let h = Host::start();
    h.probe_cfg(
        "rr.cfg",
        "keeper",
        "idle",
        "on_reboot = \"rename-restart\"\n",
    );
    h.ok(&["create", "rr.cfg"]);
    h.wait_console("keeper", "PROBE idle ready");
    let old = h.row("keeper").unwrap();
    for round in 1..=2 {
        h.ok(&["reboot", "keeper"]);
        wait_for("the renamed old domain and a new keeper", TIMEOUT, || {
            let rows = h.list();
            let preserved = rows
                .iter()
                .filter(|r| r.name.starts_with("keeper-") && r.state == "---sr-")
                .count();
            let new = rows
                .iter()
                .find(|r| r.name == "keeper" && r.domid != old.domid && is_up(&r.state));
            (preserved == round && new.is_some()).then_some(())
        });
        h.wait_console("keeper", "PROBE idle ready");
    }
    let names: Vec<String> = h.list().into_iter().map(|r| r.name).collect();
    assert_eq!(
        names.iter().filter(|n| n.starts_with("keeper-")).count(),
        2,
        "unique preserved names: {names:?}"
    );
    // A guest that ignores the power button (the echo scenario) is destroyed after the timeout.
    h.probe_cfg("deaf.cfg", "deaf", "echo", "");
    h.ok(&["create", "deaf.cfg"]);
    h.wait_console("deaf", "PROBE echo ready");
    let o = h.domus(&["shutdown", "-a", "-w", "--timeout", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("did not shut down in time; destroying it"));
    assert_eq!(h.row("deaf"), None);
    assert_eq!(h.row("keeper"), None);
    for n in names.iter().filter(|n| n.starts_with("keeper-")) {
        h.ok(&["destroy", n]);
    }
    assert_eq!(h.list().len(), 1);
}
