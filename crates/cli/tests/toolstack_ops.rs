//! End-to-end tests of the smaller xl commands, the store layout as Xen's own clients see it, and the
//! error texts — against a real domusd, domus-vmm and probe guest.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::pty::PtyChild;
use support::{wait_for, Host, TIMEOUT};

#[test]
fn store_has_xens_layout_for_xen_clients() {
    let h = Host::start();
    h.probe_cfg("s.cfg", "stored", "idle", "vcpus = 2\nmaxmem = 32\n");
    h.ok(&["create", "s.cfg"]);
    let d = h.long("stored");
    let (id, uuid) = (
        d["domid"].as_u64().unwrap(),
        d["uuid"].as_str().unwrap().to_owned(),
    );
    let read = |p: &str| h.xenstore("xenstore-read", &[p]).trim().to_owned();
    assert_eq!(read(&format!("/local/domain/{id}/name")), "stored");
    assert_eq!(read(&format!("/local/domain/{id}/domid")), id.to_string());
    assert_eq!(
        read(&format!("/local/domain/{id}/vm")),
        format!("/vm/{uuid}")
    );
    assert_eq!(read(&format!("/local/domain/{id}/memory/target")), "16384");
    assert_eq!(
        read(&format!("/local/domain/{id}/memory/static-max")),
        "32768"
    );
    assert_eq!(
        read(&format!("/local/domain/{id}/cpu/1/availability")),
        "online"
    );
    assert_eq!(read(&format!("/vm/{uuid}/name")), "stored");
    assert_eq!(read(&format!("/vm/{uuid}/uuid")), uuid);
    let start: f64 = read(&format!("/vm/{uuid}/start_time")).parse().unwrap();
    assert!((start - d["start_time"].as_f64().unwrap()).abs() < 0.01);
    let ls = h.xenstore(
        "xenstore-ls",
        &["-p", &format!("/local/domain/{id}/control")],
    );
    assert!(
        ls.contains("shutdown = \"\"") && ls.contains(&format!("(n{id})")),
        "{ls}"
    );
    h.ok(&["rename", "stored", "renamed"]);
    assert_eq!(read(&format!("/local/domain/{id}/name")), "renamed");
    h.ok(&["destroy", "renamed"]);
    // Only Domain-0's own nodes (issue 15: /local/domain/0/{name,domid}) remain.
    assert_eq!(
        h.xenstore("xenstore-ls", &["/local/domain"]).trim(),
        "0 = \"\"\n name = \"Domain-0\"\n domid = \"0\"",
        "nodes removed on destroy"
    );
}

#[test]
fn xl_error_texts_and_unsupported_keys() {
    let h = Host::start();
    let e = h.fails(&["domid", "nope"]);
    assert!(
        e.contains("Can't get domid of domain name 'nope', maybe this domain does not exist."),
        "{e}"
    );
    let e = h.fails(&["destroy", "nope"]);
    assert!(
        e.contains("Can't get domid of domain name 'nope', maybe this domain does not exist."),
        "{e}"
    );
    assert!(h
        .fails(&["destroy", "0"])
        .contains("cannot destroy Domain-0"));
    h.probe_cfg("pci.cfg", "pci", "idle", "pci = ['01:00.0']\n");
    assert!(h
        .fails(&["create", "pci.cfg"])
        .contains("pci passthrough is not supported yet"));
    h.probe_cfg("bl.cfg", "bl", "idle", "bootloader = \"pvgrub\"\n");
    assert!(h
        .fails(&["create", "bl.cfg"])
        .contains("bootloader \"pvgrub\" is not supported: use bootloader = \"pygrub\""));
    h.probe_cfg("pg.cfg", "pg", "idle", "bootloader = \"pygrub\"\n");
    assert!(h.fails(&["create", "pg.cfg"]).contains(
        "bootloader = \"pygrub\" boots from the domain's first disk, but the config has no disk"
    ));
    h.probe_cfg("cd.cfg", "cd", "idle", "on_crash = \"coredump-destroy\"\n");
    assert!(h
        .fails(&["create", "cd.cfg"])
        .contains("on_crash=\"coredump-destroy\" is not supported"));
    std::fs::write(
        h.path("cfg/nok.cfg"),
        "name = \"nok\"\nkernel = \"/nonexistent/kernel\"\nmemory = 16\n",
    )
    .unwrap();
    let e = h.fails(&["create", "nok.cfg"]);
    assert!(
        e.contains("cannot start domain 'nok'") && e.contains("/nonexistent/kernel"),
        "{e}"
    );
    // vif on a bridge the host lacks: refused naming it, nothing created (issue 14: no more
    // "boots without network" warning).
    h.probe_cfg(
        "vif.cfg",
        "netless",
        "idle",
        "vif = ['bridge=domusnobr9']\n",
    );
    let e = h.fails(&["create", "-q", "vif.cfg"]);
    assert!(
        e.contains("bridge `domusnobr9` does not exist") && !e.contains("boots without network"),
        "{e}"
    );
    assert_eq!(h.list().len(), 1, "nothing was created");
}

#[test]
fn small_commands_work_on_a_running_domain() {
    let h = Host::start();
    h.probe_cfg("o.cfg", "ops", "idle", "vcpus = 2\n");
    h.ok(&["create", "o.cfg"]);
    h.wait_console("ops", "PROBE idle ready");
    let id = h.ok(&["domid", "ops"]).trim().to_owned();
    assert_eq!(h.ok(&["domname", &id]).trim(), "ops");
    // Unambiguous prefixes, as xl.
    assert!(h.ok(&["li"]).contains("ops"));
    h.ok(&["pause", "ops"]);
    assert_eq!(h.row("ops").unwrap().state, "--p---");
    h.ok(&["unpause", "ops"]);
    wait_for("ops to run again", TIMEOUT, || {
        h.row("ops").filter(|r| r.state != "--p---")
    });
    h.ok(&["vcpu-pin", "ops", "1", "1"]);
    let vl = h.ok(&["vcpu-list", "ops"]);
    let lines: Vec<&str> = vl.lines().collect();
    assert_eq!(
        lines[0],
        "Name                                ID  VCPU   CPU State   Time(s) Affinity (Hard / Soft)"
    );
    assert_eq!(lines.len(), 3, "{vl}");
    assert!(
        lines[1].ends_with("all / all") && lines[2].ends_with(" 1 / all"),
        "{vl}"
    );
    h.ok(&["mem-max", "ops", "64"]);
    assert_eq!(h.long("ops")["maxmem_mib"], 64);
    assert!(h
        .fails(&["mem-max", "ops", "8"])
        .contains("below the domain's current memory"));
    let up = h.ok(&["uptime", "ops"]);
    assert!(
        up.starts_with("Name                                ID Uptime\nops "),
        "{up}"
    );
    let info = h.ok(&["info"]);
    assert!(
        info.contains("\nnr_cpus                : ")
            && info.contains("\ntotal_memory           : "),
        "{info}"
    );
    assert!(h.ok(&["dmesg"]).contains("domain running"));
    // config-update: the next restart uses the new config (3 vCPUs here).
    h.probe_cfg("o2.cfg", "ignored", "idle", "vcpus = 3\n");
    h.ok(&["config-update", "ops", "o2.cfg"]);
    assert_eq!(h.row("ops").unwrap().vcpus, 2, "running domain unchanged");
    h.ok(&["reboot", "ops"]);
    wait_for("ops to restart with 3 vCPUs", TIMEOUT, || {
        h.row("ops").filter(|r| r.vcpus == 3)
    });
    h.ok(&["destroy", "ops"]);
    // create -p: the domain starts paused, before its first instruction (the probe's very first
    // instructions print "PROBE boot").
    h.probe_cfg("p.cfg", "held", "idle", "");
    h.ok(&["create", "-p", "p.cfg"]);
    assert_eq!(h.row("held").unwrap().state, "--p---");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !h.console_log("held").contains("PROBE boot"),
        "a domain created paused ran: {}",
        h.console_log("held")
    );
    h.ok(&["unpause", "held"]);
    h.wait_console("held", "PROBE idle ready");
    h.ok(&["destroy", "held"]);
}

#[test]
fn two_console_clients_at_once_and_xl_argv0() {
    let h = Host::start();
    h.probe_cfg("e.cfg", "echoer", "echo", "");
    h.ok(&["create", "e.cfg"]);
    h.wait_console("echoer", "PROBE echo ready");
    let mut a = PtyChild::spawn(h.command(&["console", "echoer"]));
    let mut b = PtyChild::spawn(h.command(&["console", "echoer"]));
    a.expect("PROBE echo ready", TIMEOUT);
    b.expect("PROBE echo ready", TIMEOUT);
    a.send(b"ping-from-a");
    a.expect("ping-from-a", TIMEOUT);
    b.expect("ping-from-a", TIMEOUT);
    a.send(&[0x1d]);
    b.send(&[0x1d]);
    assert!(a.wait(Duration::from_secs(10)).success());
    assert!(b.wait(Duration::from_secs(10)).success());
    assert_eq!(
        h.row("echoer").map(|r| r.name),
        Some("echoer".into()),
        "detaching leaves the domain running"
    );
    // argv[0] = xl (and xm): the same commands.
    let xl = h.path("xl");
    std::os::unix::fs::symlink(&h.bins.domus, &xl).unwrap();
    let mut cmd = h.command(&["list", "echoer"]);
    let o = std::process::Command::new(&xl)
        .args(["list", "echoer"])
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .output()
        .unwrap();
    let _ = &mut cmd;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("echoer"));
    h.ok(&["destroy", "echoer"]);
}
