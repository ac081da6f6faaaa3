//! Property test of transaction isolation against a model of Xen's C xenstored semantics: a transaction
//! copies a node (value, permissions, children) the first time it looks at it and sees that copy or its
//! own change afterwards; commit fails with EAGAIN exactly when a copied node changed since it was
//! copied (or, for a listed directory, its children changed); a node missing then and now is unchanged.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use super::T;
use crate::wire::{MsgType, XsError};

const KEYS: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    OutWrite(usize, u8),
    OutRm(usize),
    OutChmod(usize, u8),
    TxRead(usize),
    TxWrite(usize, u8),
    TxRm(usize),
    TxPerms(usize),
    TxList,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..KEYS, any::<u8>()).prop_map(|(k, v)| Op::OutWrite(k, v)),
        (0..KEYS).prop_map(Op::OutRm),
        (0..KEYS, 1u8..4).prop_map(|(k, d)| Op::OutChmod(k, d)),
        (0..KEYS).prop_map(Op::TxRead),
        (0..KEYS, any::<u8>()).prop_map(|(k, v)| Op::TxWrite(k, v)),
        (0..KEYS).prop_map(Op::TxRm),
        (0..KEYS).prop_map(Op::TxPerms),
        Just(Op::TxList),
    ]
}

/// A node: value and the domain given read access (0: none beyond the owner).
type Node = (String, u8);

fn key(i: usize) -> String {
    format!("/t/k{i}")
}

fn perms_wire(r: u8) -> String {
    if r == 0 {
        "n0\0".into()
    } else {
        format!("n0\0r{r}\0")
    }
}

/// The committed state, with a version per key and for /t's children list.
#[derive(Debug, Default, Clone)]
struct Committed {
    nodes: BTreeMap<usize, Node>,
    order: Vec<usize>,
    ver: [u64; KEYS],
    cver: u64,
}

#[derive(Debug, Default)]
struct Tx {
    seen: HashMap<usize, (Option<Node>, u64)>,
    dir: Option<(Vec<usize>, u64)>,
    listed: bool,
    changed: HashMap<usize, Option<Node>>,
    first_touch: Vec<usize>,
    added: Vec<usize>,
}

impl Tx {
    fn look(&mut self, c: &Committed, i: usize) -> Option<Node> {
        if let Some(n) = self.changed.get(&i) {
            return n.clone();
        }
        self.seen
            .entry(i)
            .or_insert_with(|| (c.nodes.get(&i).cloned(), c.ver[i]))
            .0
            .clone()
    }
    fn look_dir(&mut self, c: &Committed) -> Vec<usize> {
        self.dir
            .get_or_insert_with(|| (c.order.clone(), c.cver))
            .0
            .clone()
    }
    fn change(&mut self, i: usize, n: Option<Node>) {
        if !self.changed.contains_key(&i) {
            self.first_touch.push(i);
        }
        self.changed.insert(i, n);
    }
    fn conflicts(&self, c: &Committed) -> bool {
        // A node missing when copied and missing now is unchanged, whatever happened in between.
        self.seen
            .iter()
            .any(|(i, (n, v))| c.ver[*i] != *v && (n.is_some() || c.nodes.contains_key(i)))
            || (self.listed && self.dir.as_ref().is_some_and(|(_, v)| *v != c.cver))
    }
}

proptest! {
    #[test]
    fn transactions_see_their_first_copy(
        init in proptest::collection::btree_set(0..KEYS, 0..=KEYS),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let mut t = T::new();
        let a = t.conn(0);
        let b = t.conn(0);
        let mut c = Committed::default();
        t.write(b, 0, "/t", "").unwrap();
        for i in init {
            t.write(b, 0, &key(i), "init").unwrap();
            c.nodes.insert(i, ("init".into(), 0));
            c.order.push(i);
        }
        let tx = t.start(a);
        let mut m = Tx::default();
        for op in ops {
            match op {
                Op::OutWrite(i, v) => {
                    t.write(b, 0, &key(i), &v.to_string()).unwrap();
                    let r = c.nodes.get(&i).map_or(0, |n| n.1);
                    if c.nodes.insert(i, (v.to_string(), r)).is_none() {
                        c.order.push(i);
                        c.cver += 1;
                    }
                    c.ver[i] += 1;
                }
                Op::OutRm(i) => {
                    t.rm(b, 0, &key(i)).unwrap();
                    if c.nodes.remove(&i).is_some() {
                        c.order.retain(|k| *k != i);
                        c.cver += 1;
                        c.ver[i] += 1;
                    }
                }
                Op::OutChmod(i, r) => {
                    if let Some(n) = c.nodes.get_mut(&i) {
                        t.chmod(b, &key(i), &format!("n0 r{r}")).unwrap();
                        n.1 = r;
                        c.ver[i] += 1;
                    }
                }
                Op::TxRead(i) => {
                    let expect = match m.look(&c, i) {
                        Some(n) => Ok(n.0),
                        None => {
                            m.look_dir(&c);
                            Err(XsError::NoEnt)
                        }
                    };
                    prop_assert_eq!(t.read(a, tx, &key(i)), expect, "read {}", i);
                }
                Op::TxPerms(i) => {
                    let expect = match m.look(&c, i) {
                        Some(n) => Ok(perms_wire(n.1)),
                        None => {
                            m.look_dir(&c);
                            Err(XsError::NoEnt)
                        }
                    };
                    prop_assert_eq!(t.req(a, MsgType::GetPerms, tx, &format!("{}\0", key(i))), expect);
                }
                Op::TxWrite(i, v) => {
                    t.write(a, tx, &key(i), &v.to_string()).unwrap();
                    let r = match m.look(&c, i) {
                        Some(n) => n.1,
                        None => {
                            m.look_dir(&c);
                            m.added.push(i);
                            0
                        }
                    };
                    m.change(i, Some((v.to_string(), r)));
                }
                Op::TxRm(i) => {
                    t.rm(a, tx, &key(i)).unwrap();
                    if m.look(&c, i).is_some() {
                        m.change(i, None);
                        m.added.retain(|k| *k != i);
                    } else {
                        m.look_dir(&c);
                    }
                }
                Op::TxList => {
                    let copied = m.look_dir(&c);
                    m.listed = true;
                    let mut names: Vec<usize> = copied
                        .iter()
                        .copied()
                        .filter(|k| !matches!(m.changed.get(k), Some(None)))
                        .collect();
                    for k in &m.added {
                        if matches!(m.changed.get(k), Some(Some(_))) && !copied.contains(k) {
                            names.push(*k);
                        }
                    }
                    let expect: String = names.iter().map(|k| format!("k{k}\0")).collect();
                    prop_assert_eq!(t.dir(a, tx, "/t"), Ok(expect));
                }
            }
        }
        let conflict = m.conflicts(&c);
        let r = t.end(a, tx, true);
        if conflict {
            prop_assert_eq!(r, Err(XsError::Again));
        } else {
            prop_assert_eq!(r, Ok("OK\0".to_string()));
            for i in m.first_touch.clone() {
                match m.changed.get(&i).cloned().flatten() {
                    Some(n) => {
                        if c.nodes.insert(i, n).is_none() {
                            c.order.push(i);
                        }
                    }
                    None => {
                        c.nodes.remove(&i);
                        c.order.retain(|k| *k != i);
                    }
                }
            }
        }
        for i in 0..KEYS {
            let expect = c.nodes.get(&i).map(|n| n.0.clone()).ok_or(XsError::NoEnt);
            prop_assert_eq!(t.read(b, 0, &key(i)), expect);
            if let Some(n) = c.nodes.get(&i) {
                prop_assert_eq!(t.req(b, MsgType::GetPerms, 0, &format!("{}\0", key(i))), Ok(perms_wire(n.1)));
            }
        }
        let listing: String = c.order.iter().map(|k| format!("k{k}\0")).collect();
        prop_assert_eq!(t.dir(b, 0, "/t"), Ok(listing));
    }
}
