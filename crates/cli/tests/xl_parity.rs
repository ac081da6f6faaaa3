//! End-to-end tests of issue 15's xl parity items, against a real domusd, domus-vmm and probe guest: xl's
//! command lookup, `xentop`/`top -b`, xm's shutdown flags, `info`/`list`/`uptime`/`vm-list`/`reboot`
//! output, `create`'s lines and the settings refused instead of ignored.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use support::{wait_for, Host, TIMEOUT};

/// A link named `name` to the domus binary (argv[0] personality), inside the host's dir.
fn link(h: &Host, name: &str) -> PathBuf {
    let p = h.path(name);
    std::os::unix::fs::symlink(&h.bins.domus, &p).unwrap();
    p
}

fn run_as(h: &Host, bin: &Path, args: &[&str]) -> Output {
    h.command_as(bin, args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn ambiguous_or_unknown_words_are_refused_as_xl_refuses_them() {
    let h = Host::start();
    h.probe_cfg("n.cfg", "nosuch", "idle", "");
    h.ok(&["cr", "n.cfg"]);
    h.wait_console("nosuch", "PROBE idle ready");
    let id = h.row("nosuch").unwrap().domid;
    // `de` prefixes destroy, debug-keys and devd; `sh` shutdown and sharing: xl runs neither.
    for word in ["de", "sh", "s", "frobnicate"] {
        let err = h.fails(&[word, "nosuch"]);
        assert_eq!(err, "command not implemented\n", "{word}");
    }
    // (mem-set was the example here until issue 16 implemented it.)
    let err = h.fails(&["cd-eject", "nosuch", "hdc"]);
    assert_eq!(err, "command \"cd-eject\" not implemented\n");
    assert_eq!(
        h.row("nosuch").map(|r| r.domid),
        Some(id),
        "still running, untouched"
    );
    // Unique prefixes of xl's table select the command.
    assert!(h.ok(&["li"]).contains("nosuch"));
    assert!(h.ok(&["vm"]).contains("nosuch"));
    h.ok(&["dest", "nosuch"]);
    assert_eq!(h.row("nosuch"), None);
}

#[test]
fn xentop_batch_mode_prints_xentops_header_and_rows() {
    let h = Host::start();
    h.probe_cfg("t.cfg", "topped", "idle", "vcpus = 2\n");
    h.ok(&["create", "t.cfg"]);
    h.wait_console("topped", "PROBE idle ready");
    let xentop = link(&h, "xentop");
    let o = run_as(&h, &xentop, &["-b", "-i", "2", "-d", "1"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let header = "      NAME  STATE   CPU(sec) CPU(%)     MEM(k) MEM(%)  MAXMEM(k) MAXMEM(%) VCPUS NETS NETTX(k) NETRX(k) VBDS   VBD_OO   VBD_RD   VBD_WR  VBD_RSECT  VBD_WSECT SSID";
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.iter().filter(|l| **l == header).count(),
        2,
        "one header per round:\n{out}"
    );
    assert_eq!(lines.len(), 6, "2 x (header + Domain-0 + topped):\n{out}");
    for row in lines.iter().filter(|l| **l != header) {
        assert_eq!(row.len(), header.len(), "columns line up: {row:?}");
        assert_eq!(row.split_whitespace().count(), 19, "{row:?}");
    }
    // Sorted by name as xentop: Domain-0 before topped.
    assert!(lines[1].trim_start().starts_with("Domain-0"));
    let guest: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(guest[0], "topped");
    assert!(guest[1] == "--b---" || guest[1] == "-----r", "{guest:?}");
    assert_eq!(
        (guest[4], guest[8], guest[12]),
        ("16384", "2", "0"),
        "MEM(k), VCPUS, VBDS"
    );
    // `xl top` is the same program; -v adds the vCPU line.
    let v = h.ok(&["top", "-b", "-i", "1", "-v"]);
    assert!(v.contains("VCPUs(sec):   0:") && v.contains("s  1:"), "{v}");
    h.ok(&["destroy", "topped"]);
}

#[test]
fn xm_shutdown_r_reboots_and_h_halts() {
    let h = Host::start();
    h.probe_cfg("x.cfg", "old", "idle", "on_reboot = \"restart\"\n");
    h.ok(&["create", "x.cfg"]);
    h.wait_console("old", "PROBE idle ready");
    let first = h.row("old").unwrap().domid;
    let xm = link(&h, "xm");
    let xl = link(&h, "xl");
    let refused = run_as(&h, &xl, &["shutdown", "-R", "old"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("-R is an xm option"),
        "{}",
        text(&refused.stderr)
    );
    let o = run_as(&h, &xm, &["shutdown", "-R", "old"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains(&format!("Rebooting domain {first}")));
    wait_for("old to come back with a new domid", TIMEOUT, || {
        h.row("old").filter(|r| r.domid != first).map(|_| ())
    });
    wait_for("the second boot to be ready", TIMEOUT, || {
        (h.console_log("old").matches("PROBE idle ready").count() >= 2).then_some(())
    });
    let o = run_as(&h, &xm, &["shutdown", "-H", "-w", "--timeout", "30", "old"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(h.row("old"), None, "halted: gone after -H -w");
}

#[test]
fn info_list_uptime_vm_list_and_reboot_print_xls_formats() {
    let h = Host::start();
    h.probe_cfg("f.cfg", "fmt", "idle", "on_reboot = \"restart\"\n");
    h.ok(&["create", "f.cfg"]);
    h.wait_console("fmt", "PROBE idle ready");
    let d = h.long("fmt");
    let (id, uuid) = (d["domid"].as_u64().unwrap(), d["uuid"].as_str().unwrap());

    let info = h.ok(&["info"]);
    let keys: Vec<&str> = info
        .lines()
        .map(|l| l.split(':').next().unwrap().trim_end())
        .collect();
    assert_eq!(keys.first(), Some(&"host"));
    assert_eq!(keys.last(), Some(&"xend_config_format"));
    for k in [
        "cores_per_socket",
        "threads_per_core",
        "nr_nodes",
        "free_cpus",
        "xen_version",
        "xen_caps",
        "xen_commandline",
        "hw_caps",
    ] {
        assert!(keys.contains(&k), "{k} missing:\n{info}");
    }
    let nr_cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(h.ok(&["info", "nr_cpus"]), format!("{nr_cpus}\n"));
    let numa = h.ok(&["info", "-n"]);
    assert!(
        numa.contains("cpu_topology           :\ncpu:    core    socket     node\n  0:"),
        "{numa}"
    );
    assert!(
        numa.contains("numa_info              :\nnode:    memsize    memfree    distances\n   0:")
    );

    let l = h.ok(&["list", "-Z", "-c", "-n", "fmt"]);
    let mut lines = l.lines();
    assert_eq!(
        lines.next(),
        Some("Name                                        ID   Mem VCPUs\tState\tTime(s)   Security Label         Cpupool NODE Affinity")
    );
    let row = lines.next().unwrap();
    assert!(
        row.ends_with("                -          Pool-0 all"),
        "{row:?}"
    );

    let vm = h.ok(&["vm-list"]);
    assert!(vm.starts_with("UUID                                  ID    name\n"));
    assert!(vm.contains(&format!("{uuid}  {id}    fmt")), "{vm}");

    let up = h.ok(&["uptime", "-s", "fmt"]);
    let (clock, rest) = up.trim_start().split_once(" up ").unwrap();
    assert_eq!(clock.len(), 8, "HH:MM:SS in {up:?}");
    assert!(rest.ends_with(&format!(", fmt ({id})\n")), "{up:?}");

    let o = h.domus(&["reboot", "fmt"]);
    assert!(o.status.success());
    assert_eq!(text(&o.stderr), format!("Rebooting domain {id}\n"));
    wait_for("fmt to restart", TIMEOUT, || {
        h.row("fmt")
            .filter(|r| u64::from(r.domid) != id)
            .map(|_| ())
    });
    h.ok(&["destroy", "fmt"]);
}

#[test]
fn create_prints_xls_lines_and_refuses_settings_it_would_ignore() {
    let h = Host::start();
    // A near miss gets a suggestion; the domain still starts (xl keeps unknown keys too).
    h.probe_cfg("typo.cfg", "typo", "idle", "memroy = 32\nvcpu = 2\n");
    let o = h.domus(&["create", "typo.cfg"]);
    assert!(o.status.success());
    let err = text(&o.stderr);
    assert!(err.starts_with("Parsing config from "), "{err}");
    assert!(
        err.contains("unknown key `memroy`: kept but not used; did you mean `memory`?")
            && err.contains("unknown key `vcpu`: kept but not used; did you mean `vcpus`?"),
        "{err}"
    );
    h.ok(&["destroy", "typo"]);

    h.probe_cfg("s.cfg", "ser", "idle", "serial = \"file:/tmp/x\"\n");
    let err = h.fails(&["create", "s.cfg"]);
    assert!(
        err.contains("serial = \"file:/tmp/x\" is not supported"),
        "{err}"
    );
    let img = h.path("d.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    let disk = format!(
        "disk = ['vdev=xvda, script=block-iscsi, target={}']\n",
        img.display()
    );
    h.probe_cfg("d.cfg", "scripted", "idle", &disk);
    let err = h.fails(&["create", "d.cfg"]);
    assert!(
        err.contains("d.cfg:7:9: disk: disk `xvda`: script=block-iscsi is not supported"),
        "{err}"
    );
    assert_eq!(h.list().len(), 1, "nothing created");

    // serial = "pty" is what the console is; -F follows the domain until it is gone.
    h.probe_cfg(
        "p.cfg",
        "offnow",
        "poweroff",
        "serial = \"pty\"\non_poweroff = \"destroy\"\n",
    );
    let o = h.domus(&["create", "-F", "p.cfg"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("Waiting for domain offnow (domid ") && err.contains("to die [pid "),
        "{err}"
    );
    assert!(err.trim_end().ends_with("has been destroyed."), "{err}");
}

#[test]
fn sysrq_trigger_and_button_press() {
    let h = Host::start();
    h.probe_cfg("e.cfg", "echoer", "echo", "on_reboot = \"restart\"\n");
    h.probe_cfg("i.cfg", "idler", "idle", "");
    h.ok(&["create", "e.cfg"]);
    h.ok(&["create", "i.cfg"]);
    h.wait_console("echoer", "PROBE echo ready");
    h.wait_console("idler", "PROBE idle ready");
    // sysrq: a serial BREAK, then the key, which the guest sees as such.
    h.ok(&["sysrq", "echoer", "h"]);
    h.wait_console("echoer", "PROBE echo break");
    h.wait_console("echoer", "PROBE echo sysrq key=h");
    assert!(h
        .fails(&["sysrq", "echoer", "hh"])
        .contains("sysrq must be just one character"));
    // Refused triggers say why; unknown ones are named.
    let err = h.fails(&["trigger", "echoer", "s3resume"]);
    assert!(!err.contains("nmi"), "{err}");
    assert!(err.contains("no S3"), "{err}");
    let err = h.fails(&["trigger", "echoer", "sleep"]);
    assert!(err.contains("no ACPI sleep button"), "{err}");
    let err = h.fails(&["button-press", "echoer", "sleep"]);
    assert!(err.contains("no ACPI sleep button"), "{err}");
    let err = h.fails(&["trigger", "echoer", "bogus"]);
    assert!(err.contains("Invalid trigger \"bogus\""), "{err}");
    let err = h.fails(&["button-press", "echoer", "reset"]);
    assert!(
        err.contains("reset is an invalid button identifier"),
        "{err}"
    );
    // reset: the domain's reboot outcome (on_reboot = restart: a new domid, a second boot).
    let first = h.row("echoer").unwrap().domid;
    h.ok(&["trigger", "echoer", "reset"]);
    wait_for("echoer to restart", TIMEOUT, || {
        h.row("echoer").filter(|r| r.domid != first).map(|_| ())
    });
    wait_for("the second boot", TIMEOUT, || {
        (h.console_log("echoer").matches("PROBE echo ready").count() >= 2).then_some(())
    });
    // nmi: the probe's NMI handler counts it and the waiting loop reports it.
    h.ok(&["trigger", "idler", "nmi"]);
    h.wait_console("idler", "PROBE idle nmi count=1");
    let err = h.fails(&["trigger", "idler", "nmi", "5"]);
    assert!(err.contains("no vCPU 5"), "{err}");
    // power (trigger or button-press): the ACPI power button.
    h.ok(&["button-press", "idler", "power"]);
    h.wait_console("idler", "PROBE idle power-button");
    wait_for("idler to power off", TIMEOUT, || {
        h.row("idler").is_none().then_some(())
    });
    h.ok(&["destroy", "echoer"]);
}

#[test]
fn store_layout_and_control_shutdown_writes_by_any_store_client() {
    let h = Host::start();
    h.probe_cfg("a.cfg", "ctl", "idle", "on_reboot = \"restart\"\n");
    h.ok(&["create", "a.cfg"]);
    h.wait_console("ctl", "PROBE idle ready");
    let id = h.row("ctl").unwrap().domid;
    let read = |p: &str| h.xenstore("xenstore-read", &[p]).trim().to_owned();
    assert_eq!(read("/local/domain/0/name"), "Domain-0");
    assert_eq!(read("/local/domain/0/domid"), "0");
    assert_eq!(read(&format!("/libxl/{id}/type")), "pvh");
    assert_eq!(
        read(&format!("/local/domain/{id}/image/device-model-pid")),
        h.vmm_pid("ctl").unwrap().to_string()
    );
    assert_eq!(
        read(&format!("/local/domain/{id}/control/feature-poweroff")),
        "1"
    );
    assert_eq!(
        read(&format!("/local/domain/{id}/control/feature-reboot")),
        "1"
    );
    assert_eq!(
        read(&format!(
            "/local/domain/{id}/control/platform-feature-xs_reset_watches"
        )),
        "1"
    );
    let node = format!("/local/domain/{id}/control/shutdown");
    // suspend: refused, with a reason in the log; the domain keeps running; the request is cleared.
    h.xenstore("xenstore-write", &[&node, "suspend"]);
    wait_for("the refusal in dmesg", TIMEOUT, || {
        h.ok(&["dmesg"])
            .contains("control/shutdown = suspend refused")
            .then_some(())
    });
    wait_for("the request to be cleared", TIMEOUT, || {
        read(&node).is_empty().then_some(())
    });
    assert_eq!(h.row("ctl").map(|r| r.domid), Some(id));
    // reboot: as xl reboot (on_reboot = restart: a new domid).
    h.xenstore("xenstore-write", &[&node, "reboot"]);
    let second = wait_for("the reboot", TIMEOUT, || {
        h.row("ctl").filter(|r| r.domid != id).map(|r| r.domid)
    });
    wait_for("the second boot", TIMEOUT, || {
        (h.console_log("ctl").matches("PROBE idle ready").count() >= 2).then_some(())
    });
    assert!(
        h.xenstore("xenstore-ls", &["/libxl"])
            .lines()
            .all(|l| !l.starts_with(&format!("{id} "))),
        "the old instance's /libxl node is removed"
    );
    // poweroff: as xl shutdown (the power button; on_poweroff = destroy).
    h.xenstore(
        "xenstore-write",
        &[
            &format!("/local/domain/{second}/control/shutdown"),
            "poweroff",
        ],
    );
    wait_for("ctl to power off", TIMEOUT, || {
        h.row("ctl").is_none().then_some(())
    });
    assert!(h.console_log("ctl").contains("PROBE idle power-button"));
}

/// Field names of libxl_types.idl (Xen 4.17) for the structs `list -l` prints.
const LIBXL_DOMAIN_CONFIG: &[&str] = &[
    "c_info",
    "b_info",
    "disks",
    "nics",
    "pcidevs",
    "rdms",
    "dtdevs",
    "vfbs",
    "vkbs",
    "vtpms",
    "p9s",
    "pvcallsifs",
    "vdispls",
    "vsnds",
    "channels",
    "usbctrls",
    "usbdevs",
    "on_poweroff",
    "on_reboot",
    "on_watchdog",
    "on_crash",
    "on_soft_reset",
];
const LIBXL_CREATE_INFO: &[&str] = &[
    "type",
    "hap",
    "oos",
    "ssidref",
    "ssid_label",
    "name",
    "domid",
    "uuid",
    "xsdata",
    "platformdata",
    "poolid",
    "pool_name",
    "run_hotplug_scripts",
    "driver_domain",
    "passthrough",
    "xend_suspend_evtchn_compat",
];
const LIBXL_BUILD_INFO: &[&str] = &[
    "max_vcpus",
    "avail_vcpus",
    "cpumap",
    "nodemap",
    "vcpu_hard_affinity",
    "vcpu_soft_affinity",
    "numa_placement",
    "tsc_mode",
    "max_memkb",
    "target_memkb",
    "video_memkb",
    "shadow_memkb",
    "iommu_memkb",
    "rtc_timeoffset",
    "exec_ssidref",
    "exec_ssid_label",
    "localtime",
    "disable_migrate",
    "cpuid",
    "blkdev_start",
    "vnuma_nodes",
    "max_grant_frames",
    "max_maptrack_frames",
    "max_grant_version",
    "device_model_version",
    "device_model_stubdomain",
    "sched_params",
    "ioports",
    "irqs",
    "iomem",
    "claim_mode",
    "event_channels",
    "kernel",
    "cmdline",
    "ramdisk",
    "device_tree",
    "acpi",
    "bootloader",
    "bootloader_args",
    "timer_mode",
    "nested_hvm",
    "apic",
    "dm_restrict",
    "tee",
    "type.hvm",
    "type.pv",
    "type.pvh",
    "arch_arm",
    "arch_x86",
    "altp2m",
    "vmtrace_buf_kb",
    "vpmu",
];
const LIBXL_DEVICE_DISK: &[&str] = &[
    "backend_domid",
    "backend_domname",
    "pdev_path",
    "vdev",
    "backend",
    "format",
    "script",
    "removable",
    "readwrite",
    "is_cdrom",
    "direct_io_safe",
    "discard_enable",
    "specification",
    "transport",
    "irq",
    "base",
    "colo_enable",
    "colo_restore_enable",
    "colo_host",
    "colo_port",
    "colo_export",
    "active_disk",
    "hidden_disk",
    "trusted",
];
const LIBXL_DEVICE_NIC: &[&str] = &[
    "backend_domid",
    "backend_domname",
    "devid",
    "mtu",
    "model",
    "mac",
    "ip",
    "bridge",
    "ifname",
    "script",
    "nictype",
    "rate_bytes_per_interval",
    "rate_interval_usecs",
    "gatewaydev",
];

fn assert_libxl_keys(v: &serde_json::Value, allowed: &[&str], what: &str) {
    for k in v.as_object().unwrap().keys() {
        assert!(
            allowed.contains(&k.as_str()),
            "{what}: `{k}` is not a libxl field"
        );
    }
}

#[test]
fn list_l_prints_libxls_json() {
    // The vif needs its bridge (issue 14): domusd runs in a test namespace that has `br0`.
    let ns = support::netns::Netns::new("xlj");
    ns.sh("ip link add br0 type bridge && ip link set br0 up");
    let h = Host::start_in(Some(&ns.name), Vec::new());
    let img = h.path("j.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    h.probe_cfg(
        "j.cfg",
        "jq",
        "idle",
        &format!(
            "maxmem = 32\nvcpus = 2\non_crash = \"preserve\"\ndisk = ['{},raw,xvda,rw']\nvif = ['mac=00:16:3e:00:00:07, bridge=br0']\n",
            img.display()
        ),
    );
    // create -N: one libxl object with "domid": null, nothing created (both flag forms).
    for args in [
        &["create", "-N", "j.cfg"][..],
        &["-N", "create", "j.cfg"][..],
    ] {
        let dry: serde_json::Value = serde_json::from_str(&h.ok(args)).unwrap();
        assert!(dry["domid"].is_null(), "{dry}");
        assert_libxl_keys(&dry["config"], LIBXL_DOMAIN_CONFIG, "create -N config");
        assert_libxl_keys(
            &dry["config"]["b_info"],
            LIBXL_BUILD_INFO,
            "create -N b_info",
        );
        assert_eq!(dry["config"]["c_info"]["name"], "jq");
        assert_eq!(dry["config"]["disks"][0]["vdev"], "xvda");
    }
    assert_eq!(h.list().len(), 1, "-N creates nothing");
    h.ok(&["create", "j.cfg"]);
    let id = h.row("jq").unwrap().domid;
    let out = h.ok(&["list", "-l"]);
    let all: serde_json::Value = serde_json::from_str(&out).unwrap();
    let arr = all.as_array().unwrap();
    assert_eq!(
        arr.len(),
        1,
        "Domain-0 has no libxl config: left out as xl does\n{out}"
    );
    let d = &arr[0];
    assert_eq!(d.as_object().unwrap().len(), 2, "only domid and config");
    assert_eq!(d["domid"], id);
    let c = &d["config"];
    assert_libxl_keys(c, LIBXL_DOMAIN_CONFIG, "libxl_domain_config");
    assert_libxl_keys(&c["c_info"], LIBXL_CREATE_INFO, "c_info");
    assert_libxl_keys(&c["b_info"], LIBXL_BUILD_INFO, "b_info");
    assert_libxl_keys(&c["disks"][0], LIBXL_DEVICE_DISK, "disks[0]");
    assert_libxl_keys(&c["nics"][0], LIBXL_DEVICE_NIC, "nics[0]");
    assert_eq!(c["c_info"]["name"], "jq");
    assert_eq!(c["c_info"]["type"], "pvh");
    assert_eq!(c["b_info"]["max_memkb"], 32 * 1024);
    assert_eq!(c["b_info"]["target_memkb"], 16 * 1024);
    assert_eq!(c["b_info"]["max_vcpus"], 2);
    assert_eq!(c["disks"][0]["pdev_path"], img.display().to_string());
    assert_eq!(c["disks"][0]["vdev"], "xvda");
    assert_eq!(c["disks"][0]["format"], "raw");
    assert_eq!(c["nics"][0]["mac"], "00:16:3e:00:00:07");
    assert_eq!(c["nics"][0]["bridge"], "br0");
    assert_eq!(c["nics"][0]["script"], "vif-bridge", "the resolved script");
    assert_eq!(c["on_crash"], "preserve");
    assert!(
        c.get("on_poweroff").is_none(),
        "destroy: libxl's default, left out"
    );
    // A named domain: the same, one element; Domus's own view stays under --json.
    let one: serde_json::Value = serde_json::from_str(&h.ok(&["list", "-l", "jq"])).unwrap();
    assert_eq!(one[0]["config"]["c_info"]["uuid"], h.long("jq")["uuid"]);
    h.ok(&["destroy", "jq"]);
}

fn gdb(args: &[&str]) -> String {
    let o = std::process::Command::new("gdb")
        .args(["-batch", "-nx"])
        .args(args)
        .output()
        .expect("gdb (apt install gdb) is needed for the dump-core test");
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn dump_core_is_an_elf_core_gdb_reads_and_the_domain_runs_on() {
    let h = Host::start();
    h.probe_cfg("c.cfg", "cored", "idle", "vcpus = 2\n");
    h.ok(&["create", "c.cfg"]);
    h.wait_console("cored", "PROBE idle ready");
    let core = h.path("cored.core");
    h.ok(&["dump-core", "cored", core.to_str().unwrap()]);
    let row = h.row("cored").unwrap();
    assert!(
        row.state == "-b----" || row.state == "r-----",
        "runs on: {row:?}"
    );
    let probe = h.bins.probe.to_str().unwrap().to_owned();
    let core_s = core.to_str().unwrap().to_owned();
    // Two vCPUs: two threads; registers and memory read at the guest's (identity-mapped) addresses.
    let out = gdb(&[
        "-ex",
        "info threads",
        "-ex",
        "p/x $pc",
        "-ex",
        "x/4xb 0x100000",
        "-ex",
        "x/1xw 0x6000",
        &probe,
        &core_s,
    ]);
    assert!(out.contains("LWP 1") && out.contains("LWP 2"), "{out}");
    let pc = out
        .lines()
        .find_map(|l| l.strip_prefix("$1 = 0x"))
        .and_then(|x| u64::from_str_radix(x.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no $pc in:\n{out}"));
    assert!(
        (0x10_0000..0x20_0000).contains(&pc),
        "pc {pc:#x} in the probe's text\n{out}"
    );
    let elf = std::fs::read(&h.bins.probe).unwrap();
    let text = &elf[0x1000..0x1004];
    let want = format!(
        ":\t0x{:02x}\t0x{:02x}\t0x{:02x}\t0x{:02x}",
        text[0], text[1], text[2], text[3]
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("0x100000") && l.ends_with(&want)),
        "memory at 0x100000 is the probe's first text bytes ({want}):\n{out}"
    );
    // Memory only the guest's RAM holds (not the ELF file): the PVH start info the VMM wrote at
    // 0x6000 begins with XEN_HVM_START_MAGIC_VALUE.
    assert!(
        out.lines()
            .any(|l| l.starts_with("0x6000") && l.ends_with(":\t0x336ec578")),
        "PVH start info magic at 0x6000:\n{out}"
    );
    // A paused domain stays paused.
    h.ok(&["pause", "cored"]);
    h.ok(&["dump-core", "cored", core.to_str().unwrap()]);
    assert_eq!(h.row("cored").unwrap().state, "--p---");
    h.ok(&["unpause", "cored"]);
    assert!(h
        .fails(&["dump-core", "nosuch", "x.core"])
        .contains("nosuch"));
    h.ok(&["destroy", "cored"]);
}
