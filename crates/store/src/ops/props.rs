//! Property tests: the tree against a model, transaction conflicts against their definition, watch order.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::T;
use crate::wire::XsError;

const KEYS: [&str; 6] = ["/m/a", "/m/b", "/m/a/x", "/m/c/y", "/m/b/z", "/m/d"];

#[derive(Debug, Clone)]
enum Op {
    Write(usize, u8),
    Rm(usize),
    Read(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..KEYS.len(), any::<u8>()).prop_map(|(k, v)| Op::Write(k, v)),
        (0..KEYS.len()).prop_map(Op::Rm),
        (0..KEYS.len()).prop_map(Op::Read),
    ]
}

fn parent(p: &str) -> &str {
    &p[..p.rfind('/').unwrap_or(0)]
}

proptest! {
    #[test]
    fn tree_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let mut t = T::new();
        let c = t.conn(0);
        t.write(c, 0, "/m", "").unwrap();
        let mut model: BTreeMap<String, String> = BTreeMap::new();
        model.insert("/m".into(), String::new());
        for op in ops {
            match op {
                Op::Write(k, v) => {
                    let key = KEYS[k];
                    t.write(c, 0, key, &v.to_string()).unwrap();
                    let mut p = parent(key);
                    while p.len() > 2 && !model.contains_key(p) {
                        model.insert(p.into(), String::new());
                        p = parent(p);
                    }
                    model.insert(key.into(), v.to_string());
                }
                Op::Rm(k) => {
                    let key = KEYS[k];
                    let r = t.rm(c, 0, key);
                    if model.contains_key(parent(key)) {
                        prop_assert!(r.is_ok());
                    } else {
                        prop_assert_eq!(r, Err(XsError::NoEnt));
                    }
                    model.retain(|p, _| !(p == key || p.starts_with(&format!("{key}/"))));
                }
                Op::Read(k) => {
                    let key = KEYS[k];
                    let expect = model.get(key).cloned().ok_or(XsError::NoEnt);
                    prop_assert_eq!(t.read(c, 0, key), expect);
                }
            }
        }
        for (p, v) in &model {
            prop_assert_eq!(t.read(c, 0, p), Ok(v.clone()));
        }
    }

    /// EAGAIN exactly when another commit changed something the transaction read or wrote.
    #[test]
    fn conflicts_are_exact(
        ra in proptest::collection::btree_set(0usize..6, 0..4),
        wa in proptest::collection::btree_set(0usize..6, 0..4),
        wb in proptest::collection::btree_set(0usize..6, 0..4),
    ) {
        let mut t = T::new();
        let a = t.conn(0);
        let b = t.conn(0);
        let key = |i: usize| format!("/c/k{i}");
        for i in 0..6 {
            t.write(a, 0, &key(i), "init").unwrap();
        }
        let tx = t.start(a);
        for i in &ra {
            t.read(a, tx, &key(*i)).unwrap();
        }
        for i in &wa {
            t.write(a, tx, &key(*i), "A").unwrap();
        }
        for i in &wb {
            t.write(b, 0, &key(*i), "B").unwrap();
        }
        let touched: BTreeSet<usize> = ra.union(&wa).copied().collect();
        let conflict = touched.intersection(&wb).next().is_some();
        let r = t.end(a, tx, true);
        if conflict {
            prop_assert_eq!(r, Err(XsError::Again));
        } else {
            prop_assert!(r.is_ok());
        }
        for i in 0..6 {
            let expect = if wa.contains(&i) && !conflict { "A" } else if wb.contains(&i) { "B" } else { "init" };
            prop_assert_eq!(t.read(a, 0, &key(i)), Ok(expect.to_string()));
        }
    }

    /// A watcher sees every change, in commit order, including those committed by transactions.
    #[test]
    fn watch_events_follow_commit_order(writes in proptest::collection::vec((0usize..6, any::<bool>()), 1..30)) {
        let mut t = T::new();
        let c = t.conn(0);
        let w = t.conn(0);
        t.write(c, 0, "/m", "").unwrap();
        t.watch(w, "/m", "t").unwrap();
        t.events();
        let mut expect = Vec::new();
        for (k, in_tx) in writes {
            let key = KEYS[k];
            if in_tx {
                let tx = t.start(c);
                t.write(c, tx, key, "v").unwrap();
                t.end(c, tx, true).unwrap();
            } else {
                t.write(c, 0, key, "v").unwrap();
            }
            expect.push((w, format!("{key} t")));
        }
        prop_assert_eq!(t.events(), expect);
    }
}
