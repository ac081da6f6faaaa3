//! Xen's own store test suite, `test-xenstore` (Debian's xen-utils-4.17, fetched by
//! scripts/fetch-test-deps.sh), against domus-xenstored: every test once, then its random mode.
//!
//! test-xenstore works as dom0 under the connection's home (`xenstore-test/<pid>`, i.e.
//! `/local/domain/0/xenstore-test/<pid>`): reads, writes, directory listings, removals and transactions
//! (empty, read-modify-write, and one that must fail with EAGAIN after a conflicting write while it
//! keeps seeing its first read). It exits 0 only if every test passed, and removes its nodes at the end.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{xen_usr, xs, Daemon};

/// Runs test-xenstore with `args` against `socket`.
fn test_xenstore(socket: &Path, args: &[&str]) -> Output {
    let usr = xen_usr();
    let bin = usr.join("lib/xen-4.17/bin/test-xenstore");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/fetch-test-deps.sh (it fetches xen-utils-4.17)",
        bin.display()
    );
    Command::new(&bin)
        .args(args)
        .env("LD_LIBRARY_PATH", usr.join("lib/x86_64-linux-gnu"))
        .env("XENSTORED_PATH", socket)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The names `test-xenstore -l` lists.
fn test_names(socket: &Path) -> Vec<String> {
    let out = test_xenstore(socket, &["-l"]);
    assert!(out.status.success());
    let names: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_owned()))
        .collect();
    assert!(names.len() >= 12, "test list: {names:?}");
    names
}

fn assert_passed(out: &Output, what: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !stdout.contains("failed"),
        "{what}: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_test_passes() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let names = test_names(&d.socket);
    let out = test_xenstore(&d.socket, &["-i", "3"]);
    assert_passed(&out, "test-xenstore -i 3");
    let stdout = String::from_utf8(out.stdout).unwrap();
    for name in &names {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("{name:<10}:")) && l.contains(" ns")),
            "test {name:?} did not run: {stdout}"
        );
    }
    assert!(
        !xs(
            &d.socket,
            "xenstore-exists",
            &["/local/domain/0/xenstore-test"]
        )
        .status
        .success(),
        "test-xenstore cleans up after itself"
    );
    assert!(d.terminate());
}

#[test]
fn random_mode_passes() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let out = test_xenstore(&d.socket, &["-r", "4", "-i", "5"]);
    assert_passed(&out, "test-xenstore -r 4 -i 5");
    assert!(
        !xs(
            &d.socket,
            "xenstore-exists",
            &["/local/domain/0/xenstore-test"]
        )
        .status
        .success(),
        "test-xenstore cleans up after itself"
    );
    assert!(d.terminate());
}
