//! Watches (xenstore.txt WATCH, WATCH_EVENT, UNWATCH).
//!
//! A watch on `wpath` matches an event on `path` when `wpath` is `path` or one of its ancestors; the event
//! carries the changed path (relative if the watch was registered relative). When a subtree is removed,
//! watches on nodes inside it fire with their own `wpath` ("the recursive removal of a parent of `<wpath>`").
//! Special `@name` watches match only their own special events. Events go only to watchers that may read
//! the changed node. This module only matches; the store decides when events happen (immediately, or at
//! commit for transactions) and queues them in order.

use std::collections::HashMap;

use crate::path::{self, ClientPath};
use crate::perms::Perms;
use crate::wire::{self, MsgType, XsError};
use crate::{ConnId, DomId};

/// What happened to a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Created, value or permissions changed.
    Changed,
    /// Removed with its subtree.
    Removed,
}

/// One change that may fire watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Absolute path, or a special `@name`.
    pub path: String,
    /// What happened.
    pub kind: EventKind,
    /// The node's permissions (before removal for removals), deciding who may see the event.
    pub perms: Perms,
}

#[derive(Debug, Clone)]
struct Watch {
    conn: ConnId,
    domid: DomId,
    token: Vec<u8>,
    relative: bool,
}

/// All registered watches.
#[derive(Debug, Default)]
pub struct WatchTable {
    by_path: HashMap<String, Vec<Watch>>,
    per_conn: HashMap<ConnId, u32>,
}

/// Encodes a WATCH_EVENT message.
pub fn event_message(epath: &str, token: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(epath.len() + token.len() + 2);
    payload.extend_from_slice(epath.as_bytes());
    payload.push(0);
    payload.extend_from_slice(token);
    payload.push(0);
    wire::encode(MsgType::WatchEvent, 0, 0, &payload)
}

impl WatchTable {
    /// Registers a watch; returns the initial event message (sent once right away).
    ///
    /// # Errors
    /// EEXIST if this connection already watches `wpath` with `token`.
    pub fn add(
        &mut self,
        conn: ConnId,
        domid: DomId,
        wpath: &ClientPath,
        token: &[u8],
    ) -> Result<Vec<u8>, XsError> {
        let list = self.by_path.entry(wpath.abs.clone()).or_default();
        if list.iter().any(|w| w.conn == conn && w.token == token) {
            return Err(XsError::Exist);
        }
        list.push(Watch {
            conn,
            domid,
            token: token.to_vec(),
            relative: wpath.relative,
        });
        *self.per_conn.entry(conn).or_insert(0) += 1;
        let epath = if wpath.relative {
            path::to_relative(&wpath.abs, domid)
        } else {
            wpath.abs.clone()
        };
        Ok(event_message(&epath, token))
    }

    /// Removes a watch.
    ///
    /// # Errors
    /// ENOENT if there is no such watch.
    pub fn remove(&mut self, conn: ConnId, wpath: &str, token: &[u8]) -> Result<(), XsError> {
        let list = self.by_path.get_mut(wpath).ok_or(XsError::NoEnt)?;
        let i = list
            .iter()
            .position(|w| w.conn == conn && w.token == token)
            .ok_or(XsError::NoEnt)?;
        list.remove(i);
        if list.is_empty() {
            self.by_path.remove(wpath);
        }
        if let Some(c) = self.per_conn.get_mut(&conn) {
            *c = c.saturating_sub(1);
        }
        Ok(())
    }

    /// Removes every watch of a connection.
    pub fn remove_conn(&mut self, conn: ConnId) {
        if self.per_conn.remove(&conn).is_none() {
            return;
        }
        self.by_path.retain(|_, list| {
            list.retain(|w| w.conn != conn);
            !list.is_empty()
        });
    }

    /// Number of watches a connection holds.
    pub fn count(&self, conn: ConnId) -> u32 {
        self.per_conn.get(&conn).copied().unwrap_or(0)
    }

    /// Total number of watches.
    pub fn total(&self) -> usize {
        self.per_conn.values().map(|c| *c as usize).sum()
    }

    /// Appends the WATCH_EVENT messages `ev` fires to `out`, in a stable order.
    /// `can_read(domid, perms)` decides whether a watcher may see the node.
    pub fn fire(
        &self,
        ev: &Event,
        can_read: &dyn Fn(DomId, &Perms) -> bool,
        out: &mut Vec<(ConnId, Vec<u8>)>,
    ) {
        if self.by_path.is_empty() {
            return;
        }
        let mut emit = |list: &[Watch], epath_abs: &str| {
            for w in list {
                if !can_read(w.domid, &ev.perms) {
                    continue;
                }
                let epath = if w.relative {
                    path::to_relative(epath_abs, w.domid)
                } else {
                    epath_abs.to_owned()
                };
                out.push((w.conn, event_message(&epath, &w.token)));
            }
        };
        if ev.path.starts_with('@') {
            if let Some(list) = self.by_path.get(&ev.path) {
                emit(list, &ev.path);
            }
            return;
        }
        for anc in ancestors(&ev.path) {
            if let Some(list) = self.by_path.get(anc) {
                emit(list, &ev.path);
            }
        }
        if ev.kind == EventKind::Removed {
            let mut inside: Vec<&String> = self
                .by_path
                .keys()
                .filter(|w| w.as_str() != ev.path && path::is_ancestor_or_self(&ev.path, w))
                .collect();
            inside.sort();
            for w in inside {
                emit(&self.by_path[w], w);
            }
        }
    }
}

/// `/`, then each proper prefix at a component boundary, then `path` itself.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let root = std::iter::once("/");
    let inner = path
        .match_indices('/')
        .skip(1)
        .map(move |(i, _)| &path[..i]);
    let own = (path != "/").then_some(path);
    root.chain(inner).chain(own)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(p: &str) -> ClientPath {
        ClientPath {
            abs: p.to_owned(),
            relative: false,
        }
    }

    fn all(_: DomId, _: &Perms) -> bool {
        true
    }

    fn ev(path: &str, kind: EventKind) -> Event {
        Event {
            path: path.into(),
            kind,
            perms: Perms::owned_by(DomId(0)),
        }
    }

    fn payloads(out: &[(ConnId, Vec<u8>)]) -> Vec<(ConnId, String)> {
        out.iter()
            .map(|(c, m)| (*c, String::from_utf8_lossy(&m[16..]).into_owned()))
            .collect()
    }

    #[test]
    fn ancestors_in_order() {
        assert_eq!(
            ancestors("/a/b/c").collect::<Vec<_>>(),
            vec!["/", "/a", "/a/b", "/a/b/c"]
        );
        assert_eq!(ancestors("/").collect::<Vec<_>>(), vec!["/"]);
    }

    #[test]
    fn fires_on_self_and_descendants_only() {
        let mut t = WatchTable::default();
        let first = t.add(ConnId(1), DomId(0), &cp("/a"), b"tok").unwrap();
        assert_eq!(&first[16..], b"/a\0tok\0");
        t.add(ConnId(2), DomId(0), &cp("/a/b/c"), b"deep").unwrap();
        let mut out = Vec::new();
        t.fire(&ev("/a/b", EventKind::Changed), &all, &mut out);
        assert_eq!(payloads(&out), vec![(ConnId(1), "/a/b\0tok\0".into())]);
        out.clear();
        t.fire(&ev("/ab", EventKind::Changed), &all, &mut out);
        assert!(out.is_empty());
        t.fire(&ev("/a", EventKind::Removed), &all, &mut out);
        assert_eq!(
            payloads(&out),
            vec![
                (ConnId(1), "/a\0tok\0".into()),
                (ConnId(2), "/a/b/c\0deep\0".into())
            ],
            "removal of a parent reports the watch's own path"
        );
    }

    #[test]
    fn relative_watches_report_relative_paths() {
        let mut t = WatchTable::default();
        let wp = ClientPath {
            abs: "/local/domain/3/data".into(),
            relative: true,
        };
        let first = t.add(ConnId(1), DomId(3), &wp, b"t").unwrap();
        assert_eq!(&first[16..], b"data\0t\0");
        let mut out = Vec::new();
        t.fire(
            &ev("/local/domain/3/data/x", EventKind::Changed),
            &all,
            &mut out,
        );
        assert_eq!(payloads(&out), vec![(ConnId(1), "data/x\0t\0".into())]);
    }

    #[test]
    fn duplicates_unwatch_and_permissions() {
        let mut t = WatchTable::default();
        t.add(ConnId(1), DomId(5), &cp("/a"), b"t").unwrap();
        assert_eq!(
            t.add(ConnId(1), DomId(5), &cp("/a"), b"t"),
            Err(XsError::Exist)
        );
        t.add(ConnId(1), DomId(5), &cp("@releaseDomain"), b"r")
            .unwrap();
        assert_eq!(t.count(ConnId(1)), 2);
        let mut out = Vec::new();
        t.fire(
            &ev("/a", EventKind::Changed),
            &|d, p| p.access_of(d).allows(crate::perms::Want::Read),
            &mut out,
        );
        assert!(out.is_empty(), "dom5 cannot read an n0 node");
        t.fire(&ev("@releaseDomain", EventKind::Changed), &all, &mut out);
        assert_eq!(
            payloads(&out),
            vec![(ConnId(1), "@releaseDomain\0r\0".into())]
        );
        assert_eq!(t.remove(ConnId(1), "/a", b"x"), Err(XsError::NoEnt));
        t.remove(ConnId(1), "/a", b"t").unwrap();
        t.remove_conn(ConnId(1));
        assert_eq!(t.total(), 0);
    }
}
