//! Bad input: one clear error each, exit status 1, nothing left behind (no sockets, no processes).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::path::Path;
use std::time::Duration;

use common::{probe, run_vmm, temp_dir, Run};

const LIMIT: Duration = Duration::from_secs(30);

/// Runs with a control and a console socket in a fresh dir and checks exit 1, the message, and that
/// the dir is empty afterwards.
fn expect_error(extra: &[&str], needle: &str) -> Run {
    let dir = temp_dir("bad");
    let ctl = dir.join("ctl.sock");
    let con = dir.join("con.sock");
    let con_arg = format!("unix:{}", con.display());
    let mut args: Vec<&str> = vec!["--control", ctl.to_str().unwrap(), "--console", &con_arg];
    args.extend_from_slice(extra);
    let r = run_vmm(&args, LIMIT);
    assert_eq!(r.code, 1, "{args:?}: {r:?}");
    assert!(
        r.reason().contains(needle),
        "{args:?}: want {needle:?} in last line {:?}",
        r.reason()
    );
    assert_eq!(
        r.stderr.lines().filter(|l| l.contains("error")).count(),
        1,
        "one error line: {r:?}"
    );
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
    r
}

fn kernel_args<'a>(kernel: &'a str, mem: &'a str, vcpus: &'a str) -> Vec<&'a str> {
    vec![
        "--kernel",
        kernel,
        "--memory",
        mem,
        "--vcpus",
        vcpus,
        "--cmdline",
        "probe=hello",
    ]
}

#[test]
fn missing_and_unreadable_kernel() {
    expect_error(
        &kernel_args("/nonexistent/vmlinuz", "64", "1"),
        "cannot read kernel /nonexistent/vmlinuz",
    );
    let dir = temp_dir("dir-kernel");
    expect_error(
        &kernel_args(dir.to_str().unwrap(), "64", "1"),
        "cannot read kernel",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn not_a_kernel() {
    let dir = temp_dir("notkernel");
    let f = dir.join("notes.txt");
    std::fs::write(&f, "this is not a kernel\n".repeat(100)).unwrap();
    expect_error(
        &kernel_args(f.to_str().unwrap(), "64", "1"),
        "is not a kernel",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pv_only_kernel_is_explained() {
    // An ELF with Xen notes but no PHYS32_ENTRY, as NetBSD's XEN3_DOMU: take the probe and rename the
    // PHYS32_ENTRY note type (18) so only its other Xen notes remain.
    let mut elf = std::fs::read(probe()).unwrap();
    let pat = [18u8, 0, 0, 0, b'X', b'e', b'n', 0];
    let pos = elf
        .windows(pat.len())
        .position(|w| w == pat)
        .expect("probe has a Xen PHYS32_ENTRY note");
    elf[pos] = 0x7f;
    let dir = temp_dir("pv");
    let f = dir.join("netbsd-XEN3_DOMU");
    std::fs::write(&f, elf).unwrap();
    let r = expect_error(
        &kernel_args(f.to_str().unwrap(), "64", "1"),
        "PV-only kernel",
    );
    assert!(r.reason().contains("PVH-capable kernel"), "{}", r.reason());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn memory_out_of_range() {
    let p = probe();
    let p = p.to_str().unwrap();
    expect_error(&kernel_args(p, "0", "1"), "memory must be at least");
    expect_error(
        &kernel_args(p, "100000000", "1"),
        "more than this host can give",
    );
}

#[test]
fn vcpus_out_of_range() {
    let p = probe();
    let p = p.to_str().unwrap();
    expect_error(&kernel_args(p, "64", "0"), "vcpus must be at least 1");
    expect_error(&kernel_args(p, "64", "100000"), "over KVM's limit");
}

#[test]
fn kvm_absent_or_forbidden() {
    let p = probe();
    let p = p.to_str().unwrap();
    let mut args = kernel_args(p, "64", "1");
    args.extend_from_slice(&["--kvm-device", "/nonexistent/kvm"]);
    expect_error(&args, "KVM is not available");

    // A device node we may not open read-write: a mode-000 file, or, as root (who ignores file modes),
    // a sysfs attribute, which refuses O_RDWR with EACCES even to root.
    let dir = temp_dir("kvmperm");
    let f = dir.join("kvm");
    std::fs::write(&f, b"").unwrap();
    let forbidden = if is_root() {
        Path::new("/sys/kernel/notes").to_path_buf()
    } else {
        f.clone()
    };
    if !is_root() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    let mut args = kernel_args(p, "64", "1");
    let fs = forbidden.to_str().unwrap().to_owned();
    args.extend_from_slice(&["--kvm-device", &fs]);
    expect_error(&args, "no permission to open");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn bad_config_files() {
    let dir = temp_dir("cfg");
    let missing = dir.join("missing.cfg");
    expect_error(
        &["--config", missing.to_str().unwrap()],
        "cannot read config file",
    );
    let no_kernel = dir.join("nokernel.cfg");
    std::fs::write(&no_kernel, "name = \"x\"\nmemory = 64\n").unwrap();
    expect_error(
        &["--config", no_kernel.to_str().unwrap()],
        "no kernel given",
    );
    let bad_json = dir.join("bad.json");
    std::fs::write(&bad_json, "{").unwrap();
    expect_error(
        &["--config-json", bad_json.to_str().unwrap()],
        "invalid domain JSON in",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
