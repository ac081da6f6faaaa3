//! Debian's real xenstore clients (xenstore-utils 4.17, libxenstore) against domus-xenstored.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{xen_usr, xs, xs_ok, Daemon};
use domus_store::client::{Client, TxId};

#[test]
fn read_write_ls_list_exists_rm() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let s = &d.socket;
    // Several pairs: xenstore-write puts them in one transaction; children keep their creation order.
    xs_ok(
        s,
        "xenstore-write",
        &["/vm/a/name", "guest one", "/vm/a/memory", "512"],
    );
    assert_eq!(xs_ok(s, "xenstore-read", &["/vm/a/name"]), "guest one\n");
    assert_eq!(
        xs_ok(s, "xenstore-read", &["/vm/a/name", "/vm/a/memory"]),
        "guest one\n512\n"
    );
    assert_eq!(xs_ok(s, "xenstore-list", &["/vm/a"]), "name\nmemory\n");
    assert_eq!(
        xs_ok(s, "xenstore-ls", &["/vm"]),
        "a = \"\"\n name = \"guest one\"\n memory = \"512\"\n"
    );
    assert_eq!(
        xs_ok(s, "xenstore-ls", &["-f", "/vm"]),
        "/vm/a = \"\"\n/vm/a/name = \"guest one\"\n/vm/a/memory = \"512\"\n"
    );
    assert!(
        xs_ok(s, "xenstore-ls", &["/"]).starts_with("tool = \"\"\n xenstored = \"\"\nvm = \"\"\n")
    );
    assert!(xs(s, "xenstore-exists", &["/vm/a/name"]).status.success());
    let missing = xs(s, "xenstore-exists", &["/vm/a/nope"]);
    assert!(!missing.status.success());
    let out = xs(s, "xenstore-read", &["/vm/nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("couldn't read path /vm/nope"));
    xs_ok(s, "xenstore-rm", &["/vm/a/memory"]);
    assert_eq!(xs_ok(s, "xenstore-list", &["/vm/a"]), "name\n");
    xs_ok(s, "xenstore-rm", &["/vm"]);
    assert!(!xs(s, "xenstore-exists", &["/vm/a/name"]).status.success());
    // Escaped binary-ish values are shown the way xenstore-read prints them.
    xs_ok(s, "xenstore-write", &["/esc", "tab\there"]);
    assert_eq!(
        xs_ok(s, "xenstore-read", &["/esc"]),
        "tab\\there\n",
        "xenstore-read escapes control characters"
    );
}

#[test]
fn big_directories_go_through_directory_part() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let s = &d.socket;
    let mut c = Client::connect(s).unwrap();
    let names: Vec<String> = (0..300)
        .map(|i| format!("child-with-a-long-name-{i}"))
        .collect();
    for n in &names {
        c.write(TxId::NONE, &format!("/big/{n}"), b"v").unwrap();
    }
    // 300 names need more than one 4096-byte reply: libxenstore gets E2BIG and pages with DIRECTORY_PART.
    let listed = xs_ok(s, "xenstore-list", &["/big"]);
    assert_eq!(
        listed,
        names.iter().map(|n| format!("{n}\n")).collect::<String>()
    );
}

#[test]
fn chmod_and_permission_listing() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let s = &d.socket;
    xs_ok(s, "xenstore-write", &["/local/domain/3/name", "g3"]);
    xs_ok(s, "xenstore-chmod", &["/local/domain/3", "n0", "r3"]);
    xs_ok(s, "xenstore-chmod", &["-r", "/local/domain/3", "n3", "b0"]);
    let ls = xs_ok(s, "xenstore-ls", &["-p", "/local/domain/3"]);
    assert!(ls.starts_with("name = \"g3\""), "{ls}");
    assert!(ls.trim_end().ends_with("(n3,b0)"), "{ls}");
    let mut c = Client::connect(s).unwrap();
    let perms = c.get_perms(TxId::NONE, "/local/domain/3").unwrap();
    assert_eq!(perms.to_string(), "n3 b0");
    assert!(
        !xs(s, "xenstore-chmod", &["/local/domain/3", "x9"])
            .status
            .success(),
        "bad flag rejected"
    );
}

#[test]
fn watch_reports_registration_and_changes() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let s = d.socket.clone();
    xs_ok(&s, "xenstore-write", &["/w", ""]);
    let usr = xen_usr();
    let mut watcher = Command::new(usr.join("bin/xenstore-watch"))
        .args(["-n", "3", "/w"])
        .env("LD_LIBRARY_PATH", usr.join("lib/x86_64-linux-gnu"))
        .env("XENSTORED_PATH", &s)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The first line is the event fired on registration: after it, the watch is in place.
    let mut lines = BufReader::new(watcher.stdout.take().unwrap());
    let mut first = String::new();
    lines.read_line(&mut first).unwrap();
    assert_eq!(first, "/w\n");
    let mut c = Client::connect(&s).unwrap();
    c.write(TxId::NONE, "/w/a", b"1").unwrap();
    c.write(TxId::NONE, "/elsewhere", b"1").unwrap();
    c.rm(TxId::NONE, "/w/a").unwrap();
    let status = watcher.wait().unwrap();
    assert!(status.success());
    let mut out = String::new();
    lines.read_to_string(&mut out).unwrap();
    assert_eq!(out, "/w/a\n/w/a\n");
}

#[test]
fn libxenstore_transactions_and_domain_calls() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let s = &d.socket;
    // xenstore-write -s uses a transaction? The `xenstore` multi-call tool wraps each command in one.
    let usr = xen_usr();
    let out = Command::new(usr.join("bin/xenstore"))
        .args(["write", "/tx/k", "v"])
        .env("LD_LIBRARY_PATH", usr.join("lib/x86_64-linux-gnu"))
        .env("XENSTORED_PATH", s)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(xs_ok(s, "xenstore-read", &["/tx/k"]), "v\n");
    let mut c = Client::connect(s).unwrap();
    c.watch("@introduceDomain", "intro").unwrap();
    let first = c.next_event(Some(Duration::from_secs(5))).unwrap().unwrap();
    assert_eq!(
        (first.path.as_str(), first.token.as_str()),
        ("@introduceDomain", "intro")
    );
    assert_eq!(c.next_event(Some(Duration::ZERO)).unwrap(), None);
    c.introduce(domus_store::DomId(7), 1234, 5).unwrap();
    let ev = c.next_event(Some(Duration::from_secs(5))).unwrap().unwrap();
    assert_eq!(ev.path, "@introduceDomain");
    assert!(c.is_domain_introduced(domus_store::DomId(7)).unwrap());
    assert_eq!(
        c.get_domain_path(domus_store::DomId(7)).unwrap(),
        "/local/domain/7"
    );
}
