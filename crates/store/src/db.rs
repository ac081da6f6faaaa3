//! The view operations work on: the committed tree directly, or a transaction's overlay on top of it.
//!
//! [`Db`] is what every operation in `ops` is written against, so each operation exists once for
//! both cases. [`MainDb`] applies changes at once and queues their watch events; the transaction view
//! ([`crate::transaction::TxDb`]) keeps changes private until commit.

use crate::perms::Perms;
use crate::tree::Tree;
use crate::watch::{Event, EventKind};
use crate::DomId;

/// A readable and writable view of the store.
pub trait Db {
    /// The value and permissions at `path`.
    fn node(&mut self, path: &str) -> Option<(&[u8], &Perms)>;
    /// The children names of `path` (None if it does not exist).
    fn children(&mut self, path: &str) -> Option<Vec<String>>;
    /// Appends each child name plus a NUL to `out` (DIRECTORY's payload); false if `path` does not exist.
    fn list_children(&mut self, path: &str, out: &mut Vec<u8>) -> bool {
        let Some(children) = self.children(path) else {
            return false;
        };
        for c in children {
            out.extend_from_slice(c.as_bytes());
            out.push(0);
        }
        true
    }
    /// The children generation of `path` (DIRECTORY_PART's `<gencnt>`).
    fn children_gen(&mut self, path: &str) -> u64;
    /// Creates or updates `path`; its parent exists in this view.
    fn put(&mut self, path: &str, value: Vec<u8>, perms: Perms);
    /// Removes `path` and its subtree; `path` exists in this view.
    fn remove(&mut self, path: &str);
    /// Nodes owned by `domid` in this view.
    fn owned_by(&self, domid: DomId) -> u64;
    /// Nodes this view has changed but not committed (0 outside transactions).
    fn touched(&self) -> usize;
    /// Records that a change happened, for watches.
    fn fire(&mut self, path: &str, kind: EventKind, perms: Perms);
}

/// The committed tree, changed in place.
#[derive(Debug)]
pub struct MainDb<'a> {
    /// The tree.
    pub tree: &'a mut Tree,
    /// Events of the changes made, in order.
    pub events: &'a mut Vec<Event>,
}

impl Db for MainDb<'_> {
    fn node(&mut self, path: &str) -> Option<(&[u8], &Perms)> {
        self.tree.get(path).map(|n| (&n.value[..], &n.perms))
    }

    fn children(&mut self, path: &str) -> Option<Vec<String>> {
        self.tree
            .get(path)
            .map(|n| n.children.iter().map(|c| c.to_string()).collect())
    }

    fn list_children(&mut self, path: &str, out: &mut Vec<u8>) -> bool {
        let Some(node) = self.tree.get(path) else {
            return false;
        };
        out.reserve(node.children.iter().map(|c| c.len() + 1).sum());
        for c in node.children.iter() {
            out.extend_from_slice(c.as_bytes());
            out.push(0);
        }
        true
    }

    fn children_gen(&mut self, path: &str) -> u64 {
        self.tree.get(path).map_or(0, |n| n.cgen)
    }

    fn put(&mut self, path: &str, value: Vec<u8>, perms: Perms) {
        self.tree.put(path, value, perms);
    }

    fn remove(&mut self, path: &str) {
        self.tree.remove(path);
    }

    fn owned_by(&self, domid: DomId) -> u64 {
        u64::from(self.tree.owned_by(domid))
    }

    fn touched(&self) -> usize {
        0
    }

    fn fire(&mut self, path: &str, kind: EventKind, perms: Perms) {
        self.events.push(Event {
            path: path.to_owned(),
            kind,
            perms,
        });
    }
}
