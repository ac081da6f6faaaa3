//! Per-domain quotas (Xen 4.17 C xenstored defaults), settable per domain with SET_QUOTA.
//!
//! Quotas bind unprivileged domains only; dom0 is exempt, as in xenstored. GET_QUOTA/SET_QUOTA use the
//! names in [`NAMES`]. Exceeding a node, size, permission or transaction quota answers ENOSPC; exceeding the
//! watch quota answers E2BIG (as xenstored does); `outstanding` bounds the unread replies of a connection
//! before the server stops reading its requests.

use std::collections::{BTreeSet, HashMap};

use crate::DomId;

/// Quota names as GET_QUOTA/SET_QUOTA spell them.
pub const NAMES: [&str; 8] = [
    "nodes",
    "watches",
    "transactions",
    "outstanding",
    "node-size",
    "permissions",
    "path-max",
    "transaction-nodes",
];

/// Limits for one domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Nodes a domain may own (default 1000).
    pub nodes: u32,
    /// Watches per connection (default 128).
    pub watches: u32,
    /// Open transactions per connection (default 10).
    pub transactions: u32,
    /// Unread replies before the connection stops being read (default 20).
    pub outstanding: u32,
    /// Bytes in a node's value (default 2048).
    pub node_size: u32,
    /// Entries in a node's permission list (default 5).
    pub permissions: u32,
    /// Path length, counted relative to the domain's home when inside it (default 2048).
    pub path_max: u32,
    /// Nodes one transaction may touch (default 1024).
    pub transaction_nodes: u32,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            nodes: 1000,
            watches: 128,
            transactions: 10,
            outstanding: 20,
            node_size: 2048,
            permissions: 5,
            path_max: 2048,
            transaction_nodes: 1024,
        }
    }
}

impl Quotas {
    /// The value of a named quota.
    pub fn get(&self, name: &str) -> Option<u32> {
        Some(match name {
            "nodes" => self.nodes,
            "watches" => self.watches,
            "transactions" => self.transactions,
            "outstanding" => self.outstanding,
            "node-size" => self.node_size,
            "permissions" => self.permissions,
            "path-max" => self.path_max,
            "transaction-nodes" => self.transaction_nodes,
            _ => return None,
        })
    }

    /// Sets a named quota; `false` for an unknown name.
    pub fn set(&mut self, name: &str, value: u32) -> bool {
        let slot = match name {
            "nodes" => &mut self.nodes,
            "watches" => &mut self.watches,
            "transactions" => &mut self.transactions,
            "outstanding" => &mut self.outstanding,
            "node-size" => &mut self.node_size,
            "permissions" => &mut self.permissions,
            "path-max" => &mut self.path_max,
            "transaction-nodes" => &mut self.transaction_nodes,
            _ => return false,
        };
        *slot = value;
        true
    }
}

/// Global quotas plus per-domain overrides.
///
/// The global limits start from the configured ones; a global SET_QUOTA overrides one name, and only the
/// names set that way are persisted ([`QuotaTable::set_names`]), so a restart with a new configuration
/// changes the others. A domain's own limits are persisted whole: they start as a copy of the global
/// limits when SET_QUOTA first names the domain.
#[derive(Debug, Clone, Default)]
pub struct QuotaTable {
    /// Limits for domains without an override.
    pub global: Quotas,
    /// Per-domain overrides.
    pub per_domain: HashMap<DomId, Quotas>,
    set_globally: BTreeSet<&'static str>,
}

impl QuotaTable {
    /// A table with `global` limits.
    pub fn new(global: Quotas) -> QuotaTable {
        QuotaTable {
            global,
            per_domain: HashMap::new(),
            set_globally: BTreeSet::new(),
        }
    }

    /// The limits that apply to `domid`.
    pub fn of(&self, domid: DomId) -> &Quotas {
        self.per_domain.get(&domid).unwrap_or(&self.global)
    }

    /// Sets the quota `name` globally (`domid` None) or for one domain; `false` for an unknown name.
    pub fn set(&mut self, domid: Option<DomId>, name: &str, value: u32) -> bool {
        let Some(name) = NAMES.iter().find(|n| **n == name).copied() else {
            return false;
        };
        match domid {
            None => {
                self.set_globally.insert(name);
                self.global.set(name, value)
            }
            Some(d) => {
                let global = self.global;
                self.per_domain.entry(d).or_insert(global).set(name, value)
            }
        }
    }

    /// The global quota names changed by SET_QUOTA since the store was created.
    pub fn set_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.set_globally.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xen_defaults_and_names() {
        let q = Quotas::default();
        assert_eq!(
            (
                q.nodes,
                q.watches,
                q.transactions,
                q.node_size,
                q.permissions
            ),
            (1000, 128, 10, 2048, 5)
        );
        for n in NAMES {
            assert!(q.get(n).is_some(), "{n}");
            let mut q2 = q;
            assert!(q2.set(n, 7));
            assert_eq!(q2.get(n), Some(7));
        }
        assert_eq!(q.get("bogus"), None);
    }

    #[test]
    fn per_domain_override() {
        let mut t = QuotaTable::new(Quotas::default());
        let q = Quotas {
            nodes: 3,
            ..Quotas::default()
        };
        t.per_domain.insert(DomId(4), q);
        assert_eq!(t.of(DomId(4)).nodes, 3);
        assert_eq!(t.of(DomId(5)).nodes, 1000);
    }
}
