//! Transactions (xenstore.txt TRANSACTION_START/END): private copies of the nodes a transaction looks at,
//! optimistic commit on per-node generations.
//!
//! # Isolation
//! The store gives Xen's C xenstored semantics. The first time a transaction looks at a node (its value,
//! permissions or children, or finds it missing), it takes a copy of that node as committed at that
//! moment; every later look in the same transaction returns that copy (or the transaction's own change),
//! whatever other connections commit meanwhile. Nodes the transaction has not looked at yet are read
//! from the committed tree when it first does. So a transaction never sees a node change under it (no
//! non-repeatable reads), but two different nodes may be copied at different moments (it is not a
//! whole-tree snapshot taken at TRANSACTION_START, as oxenstored's is).
//!
//! Commit succeeds iff every node the transaction copied still has the generation it had when copied,
//! and every node whose children it listed still has the same children generation: then all its reads
//! reflect the state at commit time and applying its writes is equivalent to running it alone at that
//! instant (serializable). Otherwise it fails with EAGAIN — only when something it read or wrote really
//! changed. Adding a child under a node changes the node's children generation, not its own, so two
//! transactions that create different children of the same directory without listing it do not conflict.
//!
//! # Shape
//! A transaction keeps:
//! - `seen`: the copy of every committed node it looked at (`None`: it was missing). A copy shares the
//!   node's children list with the tree (`Arc`), so copying a big directory costs no more than a small one;
//! - an overlay of the nodes it changed (`None`: removed), applied at commit in the order the transaction
//!   first touched them (parents before children, and new children listed in creation order, as Xen does);
//! - the children it added per parent, so listings merge the copied children with its own changes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

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

/// A committed node as the transaction first saw it.
#[derive(Debug, Clone)]
struct Seen {
    value: Vec<u8>,
    perms: Perms,
    children: Arc<Vec<Box<str>>>,
    gen: u64,
    cgen: u64,
}

/// One open transaction.
#[derive(Debug, Default)]
pub struct Transaction {
    seen: HashMap<String, Option<Seen>>,
    listed: HashSet<String>,
    overlay: HashMap<String, Option<TxNode>>,
    order: Vec<String>,
    added: HashMap<String, Vec<String>>,
    delta: HashMap<DomId, i64>,
    events: Vec<Event>,
    edits: u64,
}

impl Transaction {
    /// A new, empty transaction.
    pub fn new() -> Transaction {
        Transaction::default()
    }

    /// The transaction's copy of the committed node at `path`, taken now if this is its first look.
    fn seen(&mut self, tree: &Tree, path: &str) -> Option<&Seen> {
        if !self.seen.contains_key(path) {
            let copy = tree.get(path).map(|n| Seen {
                value: n.value.clone(),
                perms: n.perms.clone(),
                children: n.children.clone(),
                gen: n.gen,
                cgen: n.cgen,
            });
            self.seen.insert(path.to_owned(), copy);
        }
        self.seen.get(path).and_then(Option::as_ref)
    }

    /// Whether everything the transaction observed is unchanged in `tree`.
    pub fn is_current(&self, tree: &Tree) -> bool {
        self.seen.iter().all(|(p, s)| {
            let now = tree.get(p);
            now.map(|n| n.gen) == s.as_ref().map(|s| s.gen)
                && (!self.listed.contains(p) || now.map(|n| n.cgen) == s.as_ref().map(|s| s.cgen))
        })
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
        let mut seen = HashSet::new();
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
        if self.tx.overlay.contains_key(path) {
            return match self.tx.overlay.get(path) {
                Some(Some(n)) => Some((&n.value[..], &n.perms)),
                _ => None,
            };
        }
        self.tx
            .seen(self.tree, path)
            .map(|s| (&s.value[..], &s.perms))
    }

    fn children(&mut self, path: &str) -> Option<Vec<String>> {
        if !self.exists(path) {
            return None;
        }
        let copied = match self.tx.seen(self.tree, path) {
            Some(s) => s.children.clone(),
            None => Arc::new(Vec::new()),
        };
        if !self.tx.listed.contains(path) {
            self.tx.listed.insert(path.to_owned());
        }
        let overlay = &self.tx.overlay;
        let present = |name: &str| overlay.get(&path::join(path, name));
        let mut out: Vec<String> = copied
            .iter()
            .filter(|c| !matches!(present(c), Some(None)))
            .map(|c| c.to_string())
            .collect();
        if let Some(added) = self.tx.added.get(path) {
            for name in added {
                if matches!(present(name), Some(Some(_))) && !copied.iter().any(|c| **c == **name) {
                    out.push(name.clone());
                }
            }
        }
        Some(out)
    }

    fn children_gen(&mut self, path: &str) -> u64 {
        let edited = self.tx.added.get(path).is_some_and(|a| !a.is_empty())
            || self
                .tx
                .overlay
                .keys()
                .any(|p| path::parent(p) == Some(path));
        if edited {
            // Changed by this transaction: a value no committed generation takes, new after every edit.
            return (1 << 63) | self.tx.edits;
        }
        self.tx.seen(self.tree, path).map_or(0, |s| s.cgen)
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
        self.tx.edits += 1;
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
            self.tx.edits += 1;
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
