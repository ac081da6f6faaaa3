//! Direct tests of transaction views on the tree (the wire-level rules are in ops/tests.rs).

use super::*;
use crate::db::MainDb;

fn p0() -> Perms {
    Perms::owned_by(DomId(0))
}

#[test]
fn overlay_is_private_until_commit_and_owner_counts_follow() {
    let mut tree = Tree::new();
    tree.put("/d", Vec::new(), p0());
    let mut tx = Transaction::new();
    {
        let mut db = TxDb {
            tree: &tree,
            tx: &mut tx,
        };
        db.put("/d/a", b"1".to_vec(), Perms::owned_by(DomId(7)));
        assert_eq!(db.owned_by(DomId(7)), 1);
        assert_eq!(db.children("/d"), Some(vec!["a".to_owned()]));
        db.remove("/d/a");
        assert_eq!(db.owned_by(DomId(7)), 0);
        assert_eq!(db.children("/d"), Some(vec![]));
        db.put("/d/b", b"2".to_vec(), p0());
    }
    assert!(tree.get("/d/b").is_none());
    let before = tree.generation();
    tx.commit(&mut tree).unwrap();
    assert!(tree.generation() > before);
    assert_eq!(tree.get("/d/b").unwrap().value, b"2");
    assert!(tree.get("/d/a").is_none());
}

#[test]
fn stale_reads_fail_commit_and_leave_the_tree_alone() {
    let mut tree = Tree::new();
    tree.put("/x", b"0".to_vec(), p0());
    let mut tx = Transaction::new();
    {
        let mut db = TxDb {
            tree: &tree,
            tx: &mut tx,
        };
        assert_eq!(db.node("/x").map(|(v, _)| v.to_vec()), Some(b"0".to_vec()));
        db.put("/y", b"1".to_vec(), p0());
    }
    let mut events = Vec::new();
    MainDb {
        tree: &mut tree,
        events: &mut events,
    }
    .put("/x", b"changed".to_vec(), p0());
    assert!(!tx.is_current(&tree));
    assert_eq!(tx.commit(&mut tree).unwrap_err(), XsError::Again);
    assert!(tree.get("/y").is_none());
}

#[test]
fn commit_keeps_creation_order_of_children() {
    let mut tree = Tree::new();
    let mut tx = Transaction::new();
    {
        let mut db = TxDb {
            tree: &tree,
            tx: &mut tx,
        };
        db.put("/vm", Vec::new(), p0());
        db.put("/vm/name", Vec::new(), p0());
        db.put("/vm/memory", Vec::new(), p0());
    }
    tx.commit(&mut tree).unwrap();
    let names: Vec<&str> = tree
        .get("/vm")
        .unwrap()
        .children
        .iter()
        .map(|c| &**c)
        .collect();
    assert_eq!(names, vec!["name", "memory"]);
}
