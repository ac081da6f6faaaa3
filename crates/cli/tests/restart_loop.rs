//! End-to-end tests of the restart-loop guard and of `destroy`/`shutdown` winning over a domain caught in
//! a restart loop, against a real domusd (default `--restart-limit 5/60`), domus-vmm and probe guest.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::{wait_for, Host};

fn restarts_logged(h: &Host, name: &str) -> usize {
    h.ok(&["dmesg"])
        .lines()
        .filter(|l| l.contains("restarting domain") && l.contains(&format!("domname={name}")))
        .count()
}

#[test]
fn a_crash_loop_stops_after_the_limit_and_says_so() {
    let h = Host::start();
    h.probe_cfg("c.cfg", "crashloop", "panic", "on_crash = \"restart\"\n");
    h.ok(&["create", "c.cfg"]);
    let row = wait_for("the loop to be stopped", Duration::from_secs(60), || {
        h.row("crashloop").filter(|r| r.state == "---sc-")
    });
    let dmesg = h.ok(&["dmesg"]);
    assert_eq!(
        restarts_logged(&h, "crashloop"),
        5,
        "every restart logged:\n{dmesg}"
    );
    assert!(
        dmesg.contains(
            "restart loop: 5 restarts within 60 s; domain left crashed instead of restarted"
        ),
        "{dmesg}"
    );
    assert_eq!(
        h.console_log("crashloop").matches("PROBE panic").count(),
        6,
        "the first boot and 5 restarts"
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        h.row("crashloop").map(|r| r.domid),
        Some(row.domid),
        "left alone"
    );
    h.ok(&["destroy", "crashloop"]);
    assert_eq!(h.row("crashloop"), None);
}

#[test]
fn destroy_and_shutdown_win_at_once_over_a_restart_loop() {
    let h = Host::start();
    for (file, name) in [("d.cfg", "offloop"), ("s.cfg", "offloop2")] {
        h.probe_cfg(file, name, "poweroff", "on_poweroff = \"restart\"\n");
        h.ok(&["create", file]);
        wait_for("a first restart", Duration::from_secs(30), || {
            (restarts_logged(&h, name) >= 1).then_some(())
        });
        let cmd = if name == "offloop" {
            "destroy"
        } else {
            "shutdown"
        };
        // One attempt, whatever moment of the loop it hits.
        h.ok(&[cmd, name]);
        let after = restarts_logged(&h, name);
        wait_for("the domain to be gone", Duration::from_secs(10), || {
            h.row(name).is_none().then_some(())
        });
        std::thread::sleep(Duration::from_millis(2500));
        assert_eq!(h.row(name), None, "{cmd} won: not back");
        assert!(
            restarts_logged(&h, name) <= after + 1,
            "{cmd}: no restart after it (one may have been under way)"
        );
    }
}

#[test]
fn shutdown_of_a_restarted_instance_is_final() {
    let h = Host::start();
    h.probe_cfg("i.cfg", "again", "idle", "on_poweroff = \"restart\"\n");
    h.ok(&["create", "i.cfg"]);
    h.wait_console("again", "PROBE idle ready");
    let first = h.row("again").unwrap().domid;
    // xl's rule: on_poweroff applies to any poweroff, a requested one too.
    h.ok(&["shutdown", "again"]);
    wait_for("the restart", Duration::from_secs(30), || {
        (h.console_log("again").matches("PROBE idle ready").count() >= 2).then_some(())
    });
    assert_ne!(h.row("again").map(|r| r.domid), Some(first));
    // The restarted instance: `shutdown` ends the loop.
    h.ok(&["shutdown", "-w", "--timeout", "30", "again"]);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(h.row("again"), None);
    assert!(h
        .ok(&["dmesg"])
        .contains("powered off after `shutdown` while restarting in a loop: not restarted"));
}
