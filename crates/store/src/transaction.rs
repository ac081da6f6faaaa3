//! Transactions (xenstore.txt TRANSACTION_START/END) by optimistic concurrency on per-node generations.
//!
//! A transaction never copies the tree. It keeps:
//! - an overlay of the nodes it changed (`None`: removed), applied at commit in the order the transaction
//!   first touched them (parents before children, and new children listed in creation order, as Xen does);
//! - the generation of every committed node it looked at, taken the first time it looked (or "absent"),
//!   and the children generation of every node whose children it listed;
//! - children it added, so listings merge the committed children with its own changes.
//!
//! Commit succeeds iff every observed generation is still current: then all its reads reflect the state
//! at commit time and applying its writes is equivalent to running it alone at that instant (serializable).
//! Otherwise it fails with EAGAIN — only when something it read or wrote really changed. Adding a child
//! under a node changes the node's children generation, not its own, so two transactions that create
//! different children of the same directory without listing it do not conflict.

use std::collections::HashMap;

use crate::db::Db;
use crate::path;
use crate::perms::Perms;
use crate::tree::Tree;
use crate::watch::{Event, EventKind};
use crate::wire::XsError;
use crate::DomId;

#[derive(Debug, Clone)]
struct TxNode {
    value: Vec<u8>,
    perms: Perms,
}

/// One open transaction.
#[derive(Debug, Default)]
pub struct Transaction {
    reads: HashMap<String, Option<u64>>,
    dir_reads: HashMap<String, u64>,
    overlay: HashMap<String, Option<TxNode>>,
    order: Vec<String>,
    added: HashMap<String, Vec<String>>,
    delta: HashMap<DomId, i64>,
    events: Vec<Event>,
}

impl Transaction {
    /// A new, empty transaction.
    pub fn new() -> Transaction {
        Transaction::default()
    }

    fn observe(&mut self, tree: &Tree, path: &str) {
        if !self.reads.contains_key(path) {
            self.reads
                .insert(path.to_owned(), tree.get(path).map(|n| n.gen));
        }
    }

    /// Whether everything the transaction observed is unchanged in `tree`.
    pub fn is_current(&self, tree: &Tree) -> bool {
        self.reads
            .iter()
            .all(|(p, g)| tree.get(p).map(|n| n.gen) == *g)
            && self
                .dir_reads
                .iter()
                .all(|(p, g)| tree.get(p).is_some_and(|n| n.cgen == *g))
    }

    /// Commits into `tree`, returning the watch events to fire.
    ///
    /// # Errors
    /// EAGAIN if something it read or wrote changed since; the tree is untouched then.
    pub fn commit(self, tree: &mut Tree) -> Result<Vec<Event>, XsError> {
        if !self.is_current(tree) {
            return Err(XsError::Again);
        }
        let mut overlay = self.overlay;
        for path in self.order {
            match overlay.remove(&path) {
                Some(Some(n)) => tree.put(&path, n.value, n.perms),
                Some(None) => {
                    tree.remove(&path);
                }
                None => {}
            }
        }
        let mut seen = std::collections::HashSet::new();
        Ok(self
            .events
            .into_iter()
            .filter(|e| seen.insert((e.path.clone(), e.kind.clone())))
            .collect())
    }
}

/// A transaction's view: committed tree below, overlay above.
#[derive(Debug)]
pub struct TxDb<'a> {
    /// The committed tree (read only).
    pub tree: &'a Tree,
    /// The transaction.
    pub tx: &'a mut Transaction,
}

impl TxDb<'_> {
    fn exists(&mut self, path: &str) -> bool {
        self.node(path).is_some()
    }

    fn bump(&mut self, domid: DomId, by: i64) {
        *self.tx.delta.entry(domid).or_insert(0) += by;
    }
}

impl Db for TxDb<'_> {
    fn node(&mut self, path: &str) -> Option<(&[u8], &Perms)> {
        if !self.tx.overlay.contains_key(path) {
            self.tx.observe(self.tree, path);
            return self.tree.get(path).map(|n| (&n.value[..], &n.perms));
        }
        match self.tx.overlay.get(path) {
            Some(Some(n)) => Some((&n.value[..], &n.perms)),
            _ => None,
        }
    }

    fn children(&mut self, path: &str) -> Option<Vec<String>> {
        if !self.exists(path) {
            return None;
        }
        let mut out = Vec::new();
        if let Some(n) = self.tree.get(path) {
            if !self.tx.dir_reads.contains_key(path) {
                self.tx.dir_reads.insert(path.to_owned(), n.cgen);
            }
            for c in &n.children {
                let child = path::join(path, c);
                if !matches!(self.tx.overlay.get(&child), Some(None)) {
                    out.push(c.to_string());
                }
            }
        }
        if let Some(added) = self.tx.added.get(path) {
            for name in added {
                if self.tree.get(&path::join(path, name)).is_none() {
                    out.push(name.clone());
                }
            }
        }
        Some(out)
    }

    fn children_gen(&mut self, path: &str) -> u64 {
        self.tree.get(path).map_or(0, |n| n.cgen)
    }

    fn put(&mut self, path: &str, value: Vec<u8>, perms: Perms) {
        let old_owner = self.node(path).map(|(_, p)| p.owner());
        match old_owner {
            Some(o) => self.bump(o, -1),
            None => {
                if let Some(parent) = path::parent(path) {
                    self.tx
                        .added
                        .entry(parent.to_owned())
                        .or_default()
                        .push(path::basename(path).to_owned());
                }
            }
        }
        self.bump(perms.owner(), 1);
        if !self.tx.overlay.contains_key(path) {
            self.tx.order.push(path.to_owned());
        }
        self.tx
            .overlay
            .insert(path.to_owned(), Some(TxNode { value, perms }));
    }

    fn remove(&mut self, path: &str) {
        let mut stack = vec![path.to_owned()];
        while let Some(p) = stack.pop() {
            if let Some(children) = self.children(&p) {
                stack.extend(children.iter().map(|c| path::join(&p, c)));
            }
            if p == "/" {
                continue;
            }
            if let Some(owner) = self.node(&p).map(|(_, perms)| perms.owner()) {
                self.bump(owner, -1);
            }
            if !self.tx.overlay.contains_key(&p) {
                self.tx.order.push(p.clone());
            }
            self.tx.overlay.insert(p, None);
        }
        if let Some(parent) = path::parent(path) {
            let name = path::basename(path);
            if let Some(list) = self.tx.added.get_mut(parent) {
                list.retain(|c| c != name);
            }
        }
    }

    fn owned_by(&self, domid: DomId) -> u64 {
        let base = i64::from(self.tree.owned_by(domid));
        u64::try_from(base + self.tx.delta.get(&domid).copied().unwrap_or(0)).unwrap_or(0)
    }

    fn touched(&self) -> usize {
        self.tx.overlay.len()
    }

    fn fire(&mut self, path: &str, kind: EventKind, perms: Perms) {
        self.tx.events.push(Event {
            path: path.to_owned(),
            kind,
            perms,
        });
    }
}

#[cfg(test)]
#[path = "transaction_tests.rs"]
mod tests;
