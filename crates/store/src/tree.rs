//! The committed node tree: a map from absolute path to node, with per-node generations.
//!
//! Every node carries `gen`, the global generation of its last value/permission change (or creation), and
//! `cgen`, that of its last children-list change. Transactions copy the nodes they look at and compare
//! those generations at commit ([`crate::transaction`]); a node's children list is shared (`Arc`) with
//! such copies and cloned only when the tree changes it while a transaction still holds it. The tree applies
//! changes without permission checks (the operations in `ops` check first) and logs each applied
//! change as a [`Record`] for the journal.

use std::collections::HashMap;
use std::sync::Arc;

use crate::journal::Record;
use crate::path;
use crate::perms::Perms;
use crate::DomId;

/// One node.
#[derive(Debug, Clone)]
pub struct Node {
    /// The value (arbitrary bytes).
    pub value: Vec<u8>,
    /// Permissions, owner first.
    pub perms: Perms,
    /// Names of the immediate children, in creation order (as Xen lists them).
    pub children: Arc<Vec<Box<str>>>,
    /// Generation of the last value/permission change or creation.
    pub gen: u64,
    /// Generation of the last children-list change.
    pub cgen: u64,
}

/// The committed tree.
#[derive(Debug)]
pub struct Tree {
    nodes: HashMap<String, Node>,
    gen: u64,
    owned: HashMap<DomId, u32>,
    log: Vec<Record>,
}

impl Default for Tree {
    fn default() -> Self {
        Tree::new()
    }
}

impl Tree {
    /// A tree holding Xen's initial nodes: `/`, `/tool`, `/tool/xenstored` (owned by dom0, `n0`).
    pub fn new() -> Tree {
        let mut t = Tree::empty();
        let p = Perms::owned_by(DomId(0));
        t.put("/tool", Vec::new(), p.clone());
        t.put("/tool/xenstored", Vec::new(), p);
        t.log.clear();
        t
    }

    /// A tree holding only the root (used when loading a snapshot).
    pub fn empty() -> Tree {
        let mut nodes = HashMap::new();
        let root = Node {
            value: Vec::new(),
            perms: Perms::owned_by(DomId(0)),
            children: Arc::new(Vec::new()),
            gen: 1,
            cgen: 1,
        };
        nodes.insert("/".to_owned(), root);
        let mut owned = HashMap::new();
        owned.insert(DomId(0), 1);
        Tree {
            nodes,
            gen: 1,
            owned,
            log: Vec::new(),
        }
    }

    /// The node at `path`.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether only the root exists.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }

    /// Number of nodes owned by `domid`.
    pub fn owned_by(&self, domid: DomId) -> u32 {
        self.owned.get(&domid).copied().unwrap_or(0)
    }

    /// The current global generation.
    pub fn generation(&self) -> u64 {
        self.gen
    }

    fn next_gen(&mut self) -> u64 {
        self.gen += 1;
        self.gen
    }

    fn count(&mut self, domid: DomId, up: bool) {
        let c = self.owned.entry(domid).or_insert(0);
        if up {
            *c += 1;
        } else {
            *c = c.saturating_sub(1);
        }
    }

    /// Creates or updates the node at `path`. Missing parents are created with the same permissions
    /// (callers create parents first; this only keeps the tree consistent on odd journal input).
    pub fn put(&mut self, path: &str, value: Vec<u8>, perms: Perms) {
        if let Some(parent) = path::parent(path) {
            if !self.nodes.contains_key(parent) {
                let parent = parent.to_owned();
                self.put(&parent, Vec::new(), perms.clone());
            }
        }
        let gen = self.next_gen();
        self.log.push(Record::Put {
            path: path.to_owned(),
            value: value.clone(),
            perms: perms.clone(),
        });
        if let Some(node) = self.nodes.get_mut(path) {
            let old_owner = node.perms.owner();
            node.value = value;
            node.gen = gen;
            let new_owner = perms.owner();
            node.perms = perms;
            if old_owner != new_owner {
                self.count(old_owner, false);
                self.count(new_owner, true);
            }
            return;
        }
        if let Some(parent) = path::parent(path) {
            if let Some(p) = self.nodes.get_mut(parent) {
                Arc::make_mut(&mut p.children).push(path::basename(path).into());
                p.cgen = gen;
            }
        }
        self.count(perms.owner(), true);
        self.nodes.insert(
            path.to_owned(),
            Node {
                value,
                perms,
                children: Arc::new(Vec::new()),
                gen,
                cgen: gen,
            },
        );
    }

    /// Removes `path` and all its descendants; returns how many nodes went. The root cannot be removed:
    /// removing `/` removes its children only.
    pub fn remove(&mut self, path: &str) -> usize {
        if !self.nodes.contains_key(path) {
            return 0;
        }
        let gen = self.next_gen();
        self.log.push(Record::Del {
            path: path.to_owned(),
        });
        let mut removed = 0;
        let mut stack = vec![path.to_owned()];
        while let Some(p) = stack.pop() {
            let Some(node) = self.nodes.get(&p) else {
                continue;
            };
            for c in node.children.iter() {
                stack.push(path::join(&p, c));
            }
            if p == "/" {
                if let Some(root) = self.nodes.get_mut("/") {
                    root.children = Arc::new(Vec::new());
                    root.cgen = gen;
                }
                continue;
            }
            if let Some(node) = self.nodes.remove(&p) {
                self.count(node.perms.owner(), false);
                removed += 1;
            }
        }
        if let Some(parent) = path::parent(path) {
            let name = path::basename(path);
            if let Some(p) = self.nodes.get_mut(parent) {
                Arc::make_mut(&mut p.children).retain(|c| &**c != name);
                p.cgen = gen;
            }
        }
        removed
    }

    /// Paths of every node owned by `domid`, outermost first (removing them removes their subtrees).
    pub fn paths_owned_by(&self, domid: DomId) -> Vec<String> {
        let mut out: Vec<String> = self
            .nodes
            .iter()
            .filter(|(p, n)| n.perms.owner() == domid && *p != "/")
            .map(|(p, _)| p.clone())
            .collect();
        out.sort();
        let mut kept: Vec<String> = Vec::new();
        for p in out {
            if !kept
                .last()
                .is_some_and(|k| path::is_ancestor_or_self(k, &p))
            {
                kept.push(p);
            }
        }
        kept
    }

    /// Every node in pre-order (parents before children), for snapshots.
    pub fn walk(&self) -> Vec<(String, &Node)> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut stack = vec!["/".to_owned()];
        while let Some(p) = stack.pop() {
            let Some(node) = self.nodes.get(&p) else {
                continue;
            };
            for c in node.children.iter().rev() {
                stack.push(path::join(&p, c));
            }
            out.push((p, node));
        }
        out
    }

    /// Takes the records of changes applied since the last call.
    pub fn take_log(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.log)
    }

    /// Whether changes are waiting in the log.
    pub fn has_log(&self) -> bool {
        !self.log.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p0() -> Perms {
        Perms::owned_by(DomId(0))
    }

    #[test]
    fn put_creates_and_updates_generations() {
        let mut t = Tree::new();
        t.put("/a", b"1".to_vec(), p0());
        let g1 = t.get("/a").unwrap().gen;
        let root_cgen = t.get("/").unwrap().cgen;
        t.put("/a", b"2".to_vec(), p0());
        assert!(t.get("/a").unwrap().gen > g1);
        assert_eq!(
            t.get("/").unwrap().cgen,
            root_cgen,
            "value change leaves the parent's children alone"
        );
        t.put("/a/b", Vec::new(), p0());
        assert!(t.get("/a").unwrap().cgen > g1);
        assert_eq!(*t.get("/a").unwrap().children, vec![Box::<str>::from("b")]);
    }

    #[test]
    fn remove_is_recursive_and_counts_owners() {
        let mut t = Tree::new();
        let before = t.owned_by(DomId(0));
        t.put("/a", Vec::new(), p0());
        t.put("/a/b", Vec::new(), Perms::owned_by(DomId(3)));
        t.put("/a/b/c", Vec::new(), Perms::owned_by(DomId(3)));
        assert_eq!(t.owned_by(DomId(3)), 2);
        assert_eq!(t.remove("/a"), 3);
        assert!(t.get("/a/b/c").is_none());
        assert_eq!(t.owned_by(DomId(3)), 0);
        assert_eq!(t.owned_by(DomId(0)), before);
        assert!(!t.get("/").unwrap().children.iter().any(|c| &**c == "a"));
        assert_eq!(t.remove("/nope"), 0);
    }

    #[test]
    fn owned_paths_are_outermost() {
        let mut t = Tree::new();
        t.put("/x", Vec::new(), Perms::owned_by(DomId(4)));
        t.put("/x/y", Vec::new(), Perms::owned_by(DomId(4)));
        t.put("/z", Vec::new(), p0());
        t.put("/z/w", Vec::new(), Perms::owned_by(DomId(4)));
        assert_eq!(
            t.paths_owned_by(DomId(4)),
            vec!["/x".to_owned(), "/z/w".to_owned()]
        );
    }

    #[test]
    fn walk_is_preorder() {
        let mut t = Tree::new();
        t.put("/a/b", Vec::new(), p0());
        let paths: Vec<String> = t.walk().into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, vec!["/", "/tool", "/tool/xenstored", "/a", "/a/b"]);
    }
}
