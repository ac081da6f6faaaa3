//! Journal and snapshot tests: round trips, torn tails at every cut, corruption, compaction, stale journals.

use super::*;
use crate::perms::Perms;

fn put(i: usize) -> Record {
    Record::Put {
        path: format!("/k/{i}"),
        value: format!("value-{i}").into_bytes(),
        perms: Perms::parse(&[b"n0", b"r3"]).unwrap(),
    }
}

#[test]
fn records_round_trip() {
    let recs = vec![
        put(1),
        Record::Del { path: "/k".into() },
        Record::Introduce {
            domid: DomId(3),
            mfn: u64::MAX,
            port: 7,
        },
        Record::Release { domid: DomId(3) },
        Record::SetTarget {
            domid: DomId(4),
            target: DomId(3),
        },
        Record::SpecialPerms {
            name: "@releaseDomain".into(),
            perms: Perms::owned_by(DomId(0)),
        },
        Record::Quota {
            domid: None,
            name: "nodes".into(),
            value: 12,
        },
        Record::Quota {
            domid: Some(DomId(7)),
            name: "watches".into(),
            value: u32::MAX,
        },
        Record::End,
    ];
    let mut buf = Vec::new();
    for r in &recs {
        r.frame_into(&mut buf);
    }
    let (got, end) = parse_frames(&buf);
    assert_eq!(got, recs);
    assert_eq!(end, buf.len());
}

#[test]
fn reopen_replays_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, loaded) = Journal::open(dir.path(), 1 << 20).unwrap();
    assert!(loaded.records.is_empty());
    for i in 0..100 {
        j.append(&put(i));
    }
    j.flush().unwrap();
    drop(j);
    let (_, loaded) = Journal::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(loaded.records, (0..100).map(put).collect::<Vec<_>>());
    assert_eq!(loaded.dropped_bytes, 0);
}

#[test]
fn torn_tail_is_dropped_at_every_cut_point() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
    for i in 0..3 {
        j.append(&put(i));
    }
    j.flush().unwrap();
    drop(j);
    let full = fs::read(dir.path().join("journal")).unwrap();
    let mut one = Vec::new();
    put(0).frame_into(&mut one);
    let rec_len = one.len();
    for cut in FILE_HEADER..full.len() {
        fs::write(dir.path().join("journal"), &full[..cut]).unwrap();
        let (mut j, loaded) = Journal::open(dir.path(), 1 << 20).unwrap();
        let whole = (cut - FILE_HEADER) / rec_len;
        assert_eq!(
            loaded.records,
            (0..whole).map(put).collect::<Vec<_>>(),
            "cut at {cut}"
        );
        assert_eq!(
            loaded.dropped_bytes as usize,
            cut - FILE_HEADER - whole * rec_len
        );
        // New records go after the valid prefix and survive the next open.
        j.append(&put(99));
        j.flush().unwrap();
        drop(j);
        let (_, again) = Journal::open(dir.path(), 1 << 20).unwrap();
        let mut expect: Vec<Record> = (0..whole).map(put).collect();
        expect.push(put(99));
        assert_eq!(again.records, expect, "cut at {cut}");
    }
}

#[test]
fn corrupt_record_ends_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
    for i in 0..3 {
        j.append(&put(i));
    }
    j.flush().unwrap();
    drop(j);
    let path = dir.path().join("journal");
    let mut bytes = fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x55;
    fs::write(&path, &bytes).unwrap();
    let (_, loaded) = Journal::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(loaded.records, vec![put(0), put(1)]);
    assert!(loaded.dropped_bytes > 0);
}

#[test]
fn compaction_bounds_the_journal_and_keeps_state() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path(), 4096).unwrap();
    let state: Vec<Record> = (0..10).map(put).collect();
    for _ in 0..100 {
        for r in &state {
            j.append(r);
        }
    }
    j.flush().unwrap();
    assert!(j.wants_compaction());
    let old_journal = fs::read(dir.path().join("journal")).unwrap();
    j.compact(&state).unwrap();
    assert!(!j.wants_compaction());
    assert_eq!(j.len_bytes(), FILE_HEADER as u64);
    j.append(&put(10));
    j.flush().unwrap();
    drop(j);
    let (_, loaded) = Journal::open(dir.path(), 4096).unwrap();
    let mut expect = state.clone();
    expect.push(put(10));
    assert_eq!(loaded.records, expect);
    // A crash between installing the snapshot and the new journal leaves the old journal: it is stale.
    fs::write(dir.path().join("journal"), &old_journal).unwrap();
    let (_, loaded) = Journal::open(dir.path(), 4096).unwrap();
    assert_eq!(loaded.records, state);
}

#[test]
fn damaged_snapshot_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path(), 4096).unwrap();
    j.compact(&[put(1)]).unwrap();
    drop(j);
    let path = dir.path().join("snapshot");
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 2]).unwrap();
    let err = Journal::open(dir.path(), 4096).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}
