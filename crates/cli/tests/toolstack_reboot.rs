//! End-to-end tests of the graceful `reboot` (power button + "reboot requested", falling back to a hard
//! reset) and of the console log after a domusd restart (the VMM's replayed backlog is not logged twice) —
//! against a real domusd, domus-vmm and probe guest.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use support::{wait_for, Host, TIMEOUT};

fn is_up(state: &str) -> bool {
    state == "r-----" || state == "-b----"
}

/// domusd's persisted record of the domain `name`.
fn record(h: &Host, name: &str) -> serde_json::Value {
    h.records().into_iter().find(|r| r["name"] == name).unwrap()
}

/// Waits until `name` runs under a domid other than `old`; returns its `list -l` JSON.
fn wait_new_instance(h: &Host, name: &str, old: u32) -> serde_json::Value {
    wait_for(
        &format!("{name} to come back with a new domid"),
        TIMEOUT,
        || {
            let r = h.row(name)?;
            (r.domid != old && is_up(&r.state)).then(|| h.long(name))
        },
    )
}

#[test]
fn reboot_presses_the_power_button_and_restarts_on_poweroff() {
    let h = Host::start();
    // on_poweroff=destroy: without the reboot request, the guest's poweroff would remove the domain.
    h.probe_cfg(
        "r.cfg",
        "gentle",
        "idle",
        "on_poweroff = \"destroy\"\non_reboot = \"restart\"\n",
    );
    h.ok(&["create", "r.cfg"]);
    h.wait_console("gentle", "PROBE idle ready");
    let first = h.long("gentle");
    let old = u32::try_from(first["domid"].as_u64().unwrap()).unwrap();
    h.ok(&["reboot", "gentle"]);
    let second = wait_new_instance(&h, "gentle", old);
    assert!(
        second["start_time"].as_f64().unwrap() > first["start_time"].as_f64().unwrap(),
        "new uptime"
    );
    assert_eq!(record(&h, "gentle")["restarts"], 1);
    wait_for("the second boot on the console log", TIMEOUT, || {
        (h.console_log("gentle").matches("PROBE idle ready").count() == 2).then_some(())
    });
    let log = h.console_log("gentle");
    assert_eq!(
        log.matches("PROBE idle power-button").count(),
        1,
        "the guest saw the power button (a graceful reboot, not a reset):\n{log}"
    );
    assert!(h
        .ok(&["dmesg"])
        .contains("guest powered off after a reboot request"));
    // The request is used up: a shutdown of the new instance applies on_poweroff (destroy).
    h.ok(&["shutdown", "-w", "gentle"]);
    assert_eq!(h.row("gentle"), None);

    // on_reboot=preserve: the domain stays, shut down with reason "reboot" (xl's 'r').
    h.probe_cfg("p.cfg", "kept", "idle", "on_reboot = \"preserve\"\n");
    h.ok(&["create", "p.cfg"]);
    h.wait_console("kept", "PROBE idle ready");
    h.ok(&["reboot", "-w", "kept"]);
    let row = wait_for("kept to be shut down for reboot", TIMEOUT, || {
        h.row("kept").filter(|r| r.state == "---sr-")
    });
    assert_eq!(row.name, "kept");
    h.ok(&["destroy", "kept"]);
    assert_eq!(h.list().len(), 1);
}

#[test]
fn reboot_falls_back_to_a_reset_with_force_or_after_the_timeout() {
    let h = Host::start();
    // The echo scenario ignores the power button.
    h.probe_cfg("d.cfg", "deaf", "echo", "");
    h.ok(&["create", "d.cfg"]);
    h.wait_console("deaf", "PROBE echo ready");
    let old = h.row("deaf").unwrap().domid;
    let o = h.domus(&["reboot", "-w", "--timeout", "2", "deaf"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "Domain {old} did not reboot in time; resetting it"
        )),
        "{err}"
    );
    let second = wait_new_instance(&h, "deaf", old);
    wait_for("the second boot on the console log", TIMEOUT, || {
        (h.console_log("deaf").matches("PROBE echo ready").count() == 2).then_some(())
    });
    // -F: a reset at once, no waiting for the guest.
    let old = u32::try_from(second["domid"].as_u64().unwrap()).unwrap();
    let o = h.domus(&["reboot", "-F", "-w", "--timeout", "20", "deaf"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("did not reboot in time"), "{err}");
    wait_new_instance(&h, "deaf", old);
    wait_for("the third boot on the console log", TIMEOUT, || {
        (h.console_log("deaf").matches("PROBE echo ready").count() == 3).then_some(())
    });
    h.ok(&["destroy", "deaf"]);
}

/// Types `text` into a domain's console through its VMM socket directly (works while domusd is down).
fn type_into(console: &str, text: &str) {
    let mut s = UnixStream::connect(console).unwrap();
    s.write_all(text.as_bytes()).unwrap();
    // Let the VMM take the bytes before we hang up.
    std::thread::sleep(Duration::from_millis(200));
}

#[test]
fn console_backlog_is_not_logged_twice_after_a_domusd_restart() {
    let mut h = Host::start();
    h.probe_cfg("e.cfg", "talker", "echo", "");
    h.ok(&["create", "e.cfg"]);
    h.wait_console("talker", "PROBE echo ready");
    let console = record(&h, "talker")["vmm"]["console"]
        .as_str()
        .unwrap()
        .to_owned();
    type_into(&console, "<before-restart>");
    h.wait_console("talker", "<before-restart>");
    h.kill9_domusd();
    // Output while domusd is away is in the VMM's backlog only.
    type_into(&console, "<while-away>");
    h.start_domusd();
    h.wait_console("talker", "<while-away>");
    type_into(&console, "<after-restart>");
    h.wait_console("talker", "<after-restart>");
    let log = h.console_log("talker");
    for text in [
        "PROBE echo ready",
        "<before-restart>",
        "<while-away>",
        "<after-restart>",
    ] {
        assert_eq!(log.matches(text).count(), 1, "{text:?} once in:\n{log}");
    }
    assert!(
        !log.contains("may be missing"),
        "nothing was lost, so no gap marker:\n{log}"
    );
    // In order, with nothing in between that was not typed.
    let start = log.find("<before-restart>").unwrap();
    assert_eq!(
        &log[start..],
        "<before-restart><while-away><after-restart>",
        "{log}"
    );
    assert!(h
        .domusd_log()
        .contains("console backlog replayed after re-attach"));
    h.ok(&["destroy", "talker"]);
}
