//! Every config domusd cannot run is refused by `domus create` and by `domus create -N` alike, before
//! anything is allocated: the same message (with `FILE:LINE:COLUMN` of the value at fault), no domid
//! spent (the next good create gets domid 1), and nothing left behind — no domain, no record, no store
//! nodes, no runtime directory, no log file, no process.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::fs;

use support::Host;

/// One refusal: the config file, its extra lines (from line 7 of a probe config), and what both
/// commands must say.
struct Case {
    file: &'static str,
    extra: String,
    want: String,
}

fn cases(h: &Host) -> Vec<Case> {
    let dir = h.path("files");
    fs::create_dir_all(&dir).unwrap();
    let notes = dir.join("notes.txt");
    fs::write(&notes, "this is not a kernel\n".repeat(50)).unwrap();
    let qcow = dir.join("x.qcow2");
    fs::write(&qcow, b"QFI\xfb").unwrap();
    let img = dir.join("d.img");
    fs::write(&img, vec![0u8; 4096]).unwrap();
    let case = |file: &'static str, extra: String, want: &str| Case {
        file,
        extra,
        want: format!("{file}:{want}"),
    };
    let many: Vec<String> = (0..15)
        .map(|i| format!("'{},raw,xvd{},ro'", img.display(), char::from(b'a' + i)))
        .collect();
    vec![
        case(
            "nokernel.cfg",
            "kernel = \"/nonexistent/vmlinuz\"\n".into(),
            "7:10: kernel: cannot read kernel /nonexistent/vmlinuz: No such file or directory",
        ),
        case(
            "dirkernel.cfg",
            format!("kernel = \"{}\"\n", dir.display()),
            &format!("7:10: kernel: cannot read kernel {}: Is a directory", dir.display()),
        ),
        case(
            "notkernel.cfg",
            format!("kernel = \"{}\"\n", notes.display()),
            &format!(
                "7:10: kernel: {} is not a kernel this VMM can boot",
                notes.display()
            ),
        ),
        case(
            "noramdisk.cfg",
            "ramdisk = \"/nonexistent/initrd\"\n".into(),
            "7:11: ramdisk: cannot read ramdisk /nonexistent/initrd: No such file or directory",
        ),
        case(
            "nodisk.cfg",
            "disk = [ '/nonexistent/d.img,raw,xvda,rw' ]\n".into(),
            "7:10: disk: disk `xvda`: cannot open disk image /nonexistent/d.img read-write: No such file or directory",
        ),
        case(
            "qcow.cfg",
            format!("disk = [ '{},qcow2,xvda,rw' ]\n", qcow.display()),
            "7:10: disk: disk `xvda`: format qcow2 is not supported",
        ),
        // The config language's own located error (domus-config), at the second disk's string.
        case(
            "dupvdev.cfg",
            format!("disk = [ '{0},raw,xvda,ro', '{0},raw,xvda,ro' ]\n", img.display()),
            &format!(
                "7:{}: disk: vdev `xvda` (device number 51712) is already used by disk 0",
                10 + format!("'{},raw,xvda,ro', ", img.display()).len()
            ),
        ),
        case(
            "many.cfg",
            format!("disk = [ {} ]\n", many.join(", ")),
            "7:8: disk: 15 disks, but the machine model has interrupt lines for at most 14 virtio devices",
        ),
        case(
            "hvm.cfg",
            "type = \"hvm\"\n".into(),
            "7:8: type: type = \"hvm\" needs firmware this VMM does not have",
        ),
        case(
            "bigmem.cfg",
            "memory = 50000000\n".into(),
            "7:10: memory: memory = 50000000 MiB is more than this host can give",
        ),
    ]
}

#[test]
fn refused_creates_report_every_error_and_leave_nothing() {
    let h = Host::start();
    for c in cases(&h) {
        let name = c.file.trim_end_matches(".cfg");
        h.probe_cfg(c.file, name, "idle", &c.extra);
        let want = &c.want;
        for args in [&["create", "-N", c.file][..], &["create", c.file][..]] {
            let err = h.fails(args);
            assert!(
                err.contains(want.as_str()),
                "domus {args:?}: stderr lacks {want:?}:\n{err}"
            );
            assert_eq!(
                err.lines()
                    .filter(|l| l.contains("cannot start domain"))
                    .count(),
                usize::from(c.file != "dupvdev.cfg"),
                "{args:?}: {err}"
            );
        }
        assert_eq!(h.list().len(), 1, "{}: only Domain-0 is listed", c.file);
    }
    // Several problems at once: all are reported, each located.
    h.probe_cfg(
        "all.cfg",
        "all",
        "idle",
        "type = \"hvm\"\nkernel = \"/nonexistent/k\"\ndisk = [ '/nonexistent/d,raw,xvda,rw' ]\n",
    );
    let err = h.fails(&["create", "all.cfg"]);
    for want in [
        "all.cfg:7:8: type:",
        "all.cfg:8:10: kernel:",
        "all.cfg:9:10: disk:",
    ] {
        assert!(err.contains(want), "stderr lacks {want:?}:\n{err}");
    }

    // Nothing was left behind...
    let records: Vec<_> = fs::read_dir(h.path("state/domains"))
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        records
            .iter()
            .all(|n| !n.to_string_lossy().ends_with(".json")),
        "records: {records:?}"
    );
    let runtime: Vec<_> = fs::read_dir(h.path("run/domains"))
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(runtime.is_empty(), "runtime dirs: {runtime:?}");
    let logs: Vec<_> = fs::read_dir(h.path("log"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("domus-vmm-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(logs.is_empty(), "VMM logs: {logs:?}");
    assert!(
        fs::read_dir(h.path("log/console"))
            .map(|rd| rd.count() == 0)
            .unwrap_or(true),
        "no console log"
    );
    let store = h.xenstore("xenstore-ls", &["-f", "/"]);
    assert!(
        !store.lines().any(|l| (l.starts_with("/local/domain/")
            && !l.starts_with("/local/domain/0"))
            || l.starts_with("/vm/")),
        "no store nodes (Domain-0's own aside):\n{store}"
    );
    // ... and no domid was spent: the first good domain is domain 1.
    h.probe_cfg("good.cfg", "good", "idle", "");
    h.ok(&["create", "good.cfg"]);
    assert_eq!(h.row("good").map(|r| r.domid), Some(1));
    // (The store check above would have seen a domain's nodes.)
    let store = h.xenstore("xenstore-ls", &["-f", "/"]);
    assert!(
        store.lines().any(|l| l.starts_with("/local/domain/1/name")),
        "{store}"
    );
    // The VMM got its kernel as an inherited descriptor, the one the spec names, and none of domusd's
    // own files.
    let spec: serde_json::Value =
        serde_json::from_slice(&fs::read(h.path("run/domains/1/spec.json")).unwrap()).unwrap();
    let fd = spec["kernel"]["fd"]
        .as_i64()
        .expect("the kernel is handed over as a descriptor");
    let pid = h.vmm_pid("good").unwrap();
    let target = fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
    assert_eq!(target, h.bins.probe.canonicalize().unwrap());
    let state = h.path("state").canonicalize().unwrap();
    for e in fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let link = fs::read_link(e.unwrap().path()).unwrap_or_default();
        assert!(
            !link.starts_with(&state) && !link.ends_with("domusd.sock"),
            "domusd's {} leaked into the VMM",
            link.display()
        );
    }
    h.ok(&["destroy", "good"]);
}

#[test]
fn type_pv_boots_the_kernels_own_entry_and_says_which() {
    let h = Host::start();
    let cfg = h.probe_cfg("pv.cfg", "pv", "idle", "type = \"pv\"\n");
    let out = h.domus(&["create", "-N", "pv.cfg"]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("through PVH (the kernel's XEN_ELFNOTE_PHYS32_ENTRY note) (type = \"pv\""),
        "{err}"
    );
    h.ok(&["create", cfg.to_str().unwrap()]);
    h.wait_console("pv", "PROBE idle ready");
    let log = fs::read_to_string(h.path("log/domus-vmm-pv.log")).unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("through PVH")).collect();
    assert_eq!(lines.len(), 1, "one line says the boot protocol:\n{log}");
    h.ok(&["destroy", "pv"]);
}
