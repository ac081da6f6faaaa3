//! Durability: acknowledged writes survive kill -9; torn journal tails are dropped; compaction keeps the
//! state; a clean SIGTERM exits successfully.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;

use common::Daemon;
use domus_store::client::{Client, TxId};
use domus_store::perms::Perms;
use domus_store::server::{self, ServerConfig};
use domus_store::DomId;

#[test]
fn kill9_loses_nothing_that_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let mut c = Client::connect(&d.socket).unwrap();
    for i in 0..3000 {
        c.write(
            TxId::NONE,
            &format!("/d/{}/k{i}", i % 10),
            format!("value-{i}").as_bytes(),
        )
        .unwrap();
    }
    for i in 0..50 {
        let tx = c.transaction_start().unwrap();
        c.write(tx, &format!("/tx/{i}/a"), b"A").unwrap();
        c.write(tx, &format!("/tx/{i}/b"), b"B").unwrap();
        c.transaction_end(tx, true).unwrap();
    }
    let aborted = c.transaction_start().unwrap();
    c.write(aborted, "/aborted", b"x").unwrap();
    c.transaction_end(aborted, false).unwrap();
    for i in 0..10 {
        c.rm(TxId::NONE, &format!("/d/{i}/k{i}")).unwrap();
    }
    let perms = Perms::parse(&[b"n5", b"r7"]).unwrap();
    c.set_perms(TxId::NONE, "/d/3", &perms).unwrap();
    c.introduce(DomId(9), 4321, 3).unwrap();
    c.write(TxId::NONE, "/last", b"acknowledged").unwrap();
    d.kill9();

    let d = Daemon::start(dir.path(), &[]);
    let mut c = Client::connect(&d.socket).unwrap();
    for i in 0..3000 {
        let got = c.read(TxId::NONE, &format!("/d/{}/k{i}", i % 10));
        if i < 10 {
            assert!(got.is_err(), "k{i} was removed");
        } else {
            assert_eq!(got.unwrap(), format!("value-{i}").as_bytes(), "k{i}");
        }
    }
    for i in 0..50 {
        assert_eq!(c.read(TxId::NONE, &format!("/tx/{i}/b")).unwrap(), b"B");
    }
    assert!(c.read(TxId::NONE, "/aborted").is_err());
    assert_eq!(c.get_perms(TxId::NONE, "/d/3").unwrap(), perms);
    assert!(c.is_domain_introduced(DomId(9)).unwrap());
    assert_eq!(c.read(TxId::NONE, "/last").unwrap(), b"acknowledged");
    assert_eq!(c.directory(TxId::NONE, "/d/4").unwrap().len(), 299);
    assert_eq!(
        c.directory(TxId::NONE, "/tool").unwrap(),
        vec!["xenstored".to_owned()],
        "initial nodes"
    );
}

#[test]
fn torn_journal_tail_is_dropped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let mut c = Client::connect(&d.socket).unwrap();
    for i in 0..100 {
        c.write(TxId::NONE, &format!("/t/k{i}"), b"v").unwrap();
    }
    let journal = d.state.join("journal");
    assert!(d.terminate(), "SIGTERM exits successfully");

    // A crash in the middle of appending the last record: cut it short.
    let len = std::fs::metadata(&journal).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    // And garbage after it, as a half-written frame header would leave.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .unwrap()
        .write_all(&[0xff, 0x01, 0x00])
        .unwrap();

    let d = Daemon::start(dir.path(), &[]);
    let mut c = Client::connect(&d.socket).unwrap();
    for i in 0..99 {
        assert_eq!(
            c.read(TxId::NONE, &format!("/t/k{i}")).unwrap(),
            b"v",
            "k{i} precedes the torn record"
        );
    }
    assert!(
        c.read(TxId::NONE, "/t/k99").is_err(),
        "the torn record is gone"
    );
    assert!(
        d.log().contains("torn"),
        "a warning names the torn tail: {}",
        d.log()
    );
    c.write(TxId::NONE, "/t/after", b"ok").unwrap();
    d.kill9();
    let d = Daemon::start(dir.path(), &[]);
    let mut c = Client::connect(&d.socket).unwrap();
    assert_eq!(c.read(TxId::NONE, "/t/after").unwrap(), b"ok");
    assert_eq!(c.read(TxId::NONE, "/t/k98").unwrap(), b"v");
}

#[test]
fn compaction_bounds_the_journal_through_the_embedding_api() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s");
    let mut config = ServerConfig::new(dir.path().join("state"), vec![sock.clone()]);
    config.compact_min_bytes = 16 * 1024;
    let handle = server::spawn(config.clone()).unwrap();
    let mut c = Client::connect(&sock).unwrap();
    let mut max_journal = 0;
    for round in 0..200 {
        for k in 0..10 {
            c.write(
                TxId::NONE,
                &format!("/c/k{k}"),
                format!("{round}").as_bytes(),
            )
            .unwrap();
        }
        max_journal = max_journal.max(
            std::fs::metadata(dir.path().join("state/journal"))
                .unwrap()
                .len(),
        );
    }
    assert!(
        max_journal < 64 * 1024,
        "journal stayed bounded: {max_journal} bytes"
    );
    assert!(dir.path().join("state/snapshot").exists());
    drop(c);
    handle.shutdown().unwrap();
    assert!(!sock.exists(), "shutdown removes the socket");

    let handle = server::spawn(config).unwrap();
    let mut c = Client::connect(&sock).unwrap();
    for k in 0..10 {
        assert_eq!(c.read(TxId::NONE, &format!("/c/k{k}")).unwrap(), b"199");
    }
    assert_eq!(
        c.directory(TxId::NONE, "/tool").unwrap(),
        vec!["xenstored".to_owned()],
        "initial nodes"
    );
    handle.shutdown().unwrap();
}

/// The fields, each NUL-terminated.
fn fields(f: &[&str]) -> Vec<u8> {
    f.iter().flat_map(|s| s.bytes().chain([0])).collect()
}

fn get_quota(c: &mut Client, args: &[&str]) -> String {
    let v = c
        .request(
            domus_store::wire::MsgType::GetQuota,
            TxId::NONE,
            &fields(args),
        )
        .unwrap();
    String::from_utf8(v)
        .unwrap()
        .trim_end_matches('\0')
        .to_owned()
}

fn set_quota(c: &mut Client, args: &[&str]) {
    c.request(
        domus_store::wire::MsgType::SetQuota,
        TxId::NONE,
        &fields(args),
    )
    .unwrap();
}

/// SET_QUOTA changes (global and per domain) survive kill -9, then compaction into a snapshot; a global
/// quota nobody set follows the daemon's configuration.
#[test]
fn quotas_survive_kill9_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &["--quota", "watches=50"]);
    let mut c = Client::connect(&d.socket).unwrap();
    set_quota(&mut c, &["nodes", "123"]);
    set_quota(&mut c, &["7", "node-size", "99"]);
    set_quota(&mut c, &["8", "transactions", "3"]);
    set_quota(&mut c, &["nodes", "456"]);
    assert_eq!(get_quota(&mut c, &["nodes"]), "456");
    d.kill9();

    let d = Daemon::start(dir.path(), &["--quota", "watches=60"]);
    let mut c = Client::connect(&d.socket).unwrap();
    assert_eq!(get_quota(&mut c, &["nodes"]), "456", "global SET_QUOTA");
    assert_eq!(
        get_quota(&mut c, &["watches"]),
        "60",
        "configured, never set"
    );
    assert_eq!(get_quota(&mut c, &["7", "node-size"]), "99");
    assert_eq!(
        get_quota(&mut c, &["7", "nodes"]),
        "123",
        "a domain's limits were copied from the global ones when first set"
    );
    assert_eq!(get_quota(&mut c, &["8", "transactions"]), "3");
    assert_eq!(get_quota(&mut c, &["9", "nodes"]), "456");
    drop(c);
    d.kill9();

    // Compaction folds the quota records into the snapshot.
    let sock = dir.path().join("s2");
    let mut config = ServerConfig::new(dir.path().join("state"), vec![sock.clone()]);
    config.compact_min_bytes = 4 * 1024;
    let handle = server::spawn(config.clone()).unwrap();
    let mut c = Client::connect(&sock).unwrap();
    for i in 0..400 {
        c.write(TxId::NONE, "/churn", format!("{i}").as_bytes())
            .unwrap();
    }
    drop(c);
    handle.shutdown().unwrap();
    let journal = std::fs::metadata(dir.path().join("state/journal"))
        .unwrap()
        .len();
    assert!(journal < 8 * 1024, "compacted: journal {journal} bytes");
    assert!(dir.path().join("state/snapshot").exists());
    let handle = server::spawn(config).unwrap();
    let mut c = Client::connect(&sock).unwrap();
    assert_eq!(get_quota(&mut c, &["nodes"]), "456");
    assert_eq!(get_quota(&mut c, &["7", "node-size"]), "99");
    assert_eq!(get_quota(&mut c, &["8", "transactions"]), "3");
    assert_eq!(get_quota(&mut c, &["watches"]), "128", "default: never set");
    drop(c);
    handle.shutdown().unwrap();
}
