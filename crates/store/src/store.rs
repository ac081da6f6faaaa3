//! The store engine: committed tree, domains, watches, quotas, per-connection transactions, journal.
//!
//! It is a plain single-threaded state machine: the server feeds it one request at a time
//! ([`Store::handle`]) and gets back the reply, while watch events pile up in an outbox in commit order
//! ([`Store::take_outbox`]). Changes are queued for the journal as they are applied; [`Store::flush`]
//! hands them to write(2), and the server calls it before sending any reply of a batch. The fuzz target and
//! unit tests drive the same engine without sockets.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::journal::{Journal, Loaded, Record, Syncer};
use crate::path::{INTRODUCE_DOMAIN, RELEASE_DOMAIN};
use crate::perms::{Perms, Want};
use crate::quota::{QuotaTable, Quotas};
use crate::transaction::Transaction;
use crate::tree::Tree;
use crate::watch::{Event, EventKind, WatchTable};
use crate::wire::{self, Header, MsgType, XsError};
use crate::{ops, ConnId, DomId, StoreError};

/// An introduced domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainInfo {
    /// Store ring page frame, as INTRODUCE gave it.
    pub mfn: u64,
    /// Event channel, as INTRODUCE gave it.
    pub port: u32,
}

/// Per-connection state owned by the store.
#[derive(Debug)]
pub(crate) struct ConnState {
    pub(crate) domid: DomId,
    pub(crate) txs: HashMap<u32, Transaction>,
    pub(crate) next_tx: u32,
}

/// The store engine.
#[derive(Debug)]
pub struct Store {
    pub(crate) tree: Tree,
    pub(crate) watches: WatchTable,
    pub(crate) quotas: QuotaTable,
    pub(crate) domains: BTreeMap<DomId, DomainInfo>,
    pub(crate) targets: HashMap<DomId, DomId>,
    pub(crate) special_perms: HashMap<String, Perms>,
    pub(crate) conns: HashMap<ConnId, ConnState>,
    pub(crate) events: Vec<Event>,
    outbox: Vec<(ConnId, Vec<u8>)>,
    journal: Option<Journal>,
    next_conn: u64,
}

impl Store {
    /// A store that keeps nothing on disk (tests, fuzzing, benchmarks of the engine itself).
    pub fn in_memory(quotas: Quotas) -> Store {
        Store {
            tree: Tree::new(),
            watches: WatchTable::default(),
            quotas: QuotaTable::new(quotas),
            domains: BTreeMap::new(),
            targets: HashMap::new(),
            special_perms: HashMap::new(),
            conns: HashMap::new(),
            events: Vec::new(),
            outbox: Vec::new(),
            journal: None,
            next_conn: 1,
        }
    }

    /// Opens the persistent store in `state_dir`, replaying snapshot and journal.
    ///
    /// `compact_min_bytes`: the journal is folded into a new snapshot once it is larger than this and
    /// twice the last snapshot.
    ///
    /// # Errors
    /// I/O errors and a damaged snapshot.
    pub fn open(
        state_dir: &Path,
        quotas: Quotas,
        compact_min_bytes: u64,
    ) -> Result<(Store, Loaded), StoreError> {
        let (journal, loaded) = Journal::open(state_dir, compact_min_bytes)?;
        let mut store = Store::in_memory(quotas);
        // A snapshot holds the whole tree; a journal alone starts from the initial nodes, which are
        // never journaled (they exist in every fresh store).
        if loaded.from_snapshot {
            store.tree = Tree::empty();
        }
        for rec in &loaded.records {
            store.replay(rec);
        }
        store.tree.take_log();
        store.journal = Some(journal);
        tracing::info!(
            path = %state_dir.display(), nodes = store.tree.len(), domains = store.domains.len(),
            records = loaded.records.len(), "store state loaded"
        );
        Ok((
            store,
            Loaded {
                records: Vec::new(),
                dropped_bytes: loaded.dropped_bytes,
                from_snapshot: loaded.from_snapshot,
            },
        ))
    }

    fn replay(&mut self, rec: &Record) {
        match rec {
            Record::Put { path, value, perms } => self.tree.put(path, value.clone(), perms.clone()),
            Record::Del { path } => {
                self.tree.remove(path);
            }
            Record::Introduce { domid, mfn, port } => {
                self.domains.insert(
                    *domid,
                    DomainInfo {
                        mfn: *mfn,
                        port: *port,
                    },
                );
            }
            Record::Release { domid } => {
                self.domains.remove(domid);
                self.targets.remove(domid);
            }
            Record::SetTarget { domid, target } => {
                self.targets.insert(*domid, *target);
            }
            Record::SpecialPerms { name, perms } => {
                self.special_perms.insert(name.clone(), perms.clone());
            }
            Record::Quota { domid, name, value } => {
                if !self.quotas.set(*domid, name, *value) {
                    tracing::warn!(quota = %name, "journal names an unknown quota; ignoring it");
                }
            }
            Record::End => {}
        }
    }

    /// The whole state as records (for snapshots).
    fn state_records(&self) -> Vec<Record> {
        let mut out: Vec<Record> = self
            .tree
            .walk()
            .into_iter()
            .map(|(path, n)| Record::Put {
                path,
                value: n.value.clone(),
                perms: n.perms.clone(),
            })
            .collect();
        out.extend(self.domains.iter().map(|(d, i)| Record::Introduce {
            domid: *d,
            mfn: i.mfn,
            port: i.port,
        }));
        out.extend(self.targets.iter().map(|(d, t)| Record::SetTarget {
            domid: *d,
            target: *t,
        }));
        out.extend(
            self.special_perms
                .iter()
                .map(|(n, p)| Record::SpecialPerms {
                    name: n.clone(),
                    perms: p.clone(),
                }),
        );
        let q = &self.quotas;
        out.extend(q.set_names().map(|name| Record::Quota {
            domid: None,
            name: name.to_owned(),
            value: q.global.get(name).unwrap_or(0),
        }));
        for (d, quotas) in &q.per_domain {
            out.extend(crate::quota::NAMES.iter().map(|name| Record::Quota {
                domid: Some(*d),
                name: (*name).to_owned(),
                value: quotas.get(name).unwrap_or(0),
            }));
        }
        out
    }

    /// Registers a connection acting as `domid` (0: privileged).
    pub fn connect(&mut self, domid: DomId) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(
            id,
            ConnState {
                domid,
                txs: HashMap::new(),
                next_tx: 1,
            },
        );
        id
    }

    /// Forgets a connection: its watches and open transactions end with it.
    pub fn disconnect(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
        self.watches.remove_conn(conn);
        self.outbox.retain(|(c, _)| *c != conn);
    }

    /// The domain a connection acts as.
    pub fn domid_of(&self, conn: ConnId) -> Option<DomId> {
        self.conns.get(&conn).map(|c| c.domid)
    }

    /// The quotas that apply to `domid`.
    pub fn quotas_of(&self, domid: DomId) -> Quotas {
        *self.quotas.of(domid)
    }

    /// Handles one request and returns the encoded reply (a message of the request's type, or ERROR).
    pub fn handle(&mut self, conn: ConnId, header: &Header, payload: &[u8]) -> Vec<u8> {
        let result = ops::dispatch(self, conn, header, payload);
        self.after_op();
        match result {
            Ok(body) if body.len() <= wire::PAYLOAD_MAX => {
                wire::encode(header.ty, header.req_id, header.tx_id, &body)
            }
            Ok(_) => error_reply(header, XsError::TooBig),
            Err(e) => {
                tracing::debug!(conn = conn.0, req_id = header.req_id, tx_id = header.tx_id, ty = %header.ty, error = e.name(), "request failed");
                error_reply(header, e)
            }
        }
    }

    /// Fires the events of the last operation and queues its changes for the journal.
    fn after_op(&mut self) {
        if !self.events.is_empty() {
            let events = std::mem::take(&mut self.events);
            let targets = &self.targets;
            let can_read = |d: DomId, p: &Perms| p.allows(d, targets.get(&d).copied(), Want::Read);
            for ev in &events {
                self.watches.fire(ev, &can_read, &mut self.outbox);
            }
        }
        if self.tree.has_log() {
            let log = self.tree.take_log();
            if let Some(j) = self.journal.as_mut() {
                for r in &log {
                    j.append(r);
                }
            }
        }
    }

    /// Queues a non-tree record (domains, special permissions) for the journal.
    pub(crate) fn journal_record(&mut self, rec: Record) {
        if let Some(j) = self.journal.as_mut() {
            j.append(&rec);
        }
    }

    /// Queues a special event (`@introduceDomain`, `@releaseDomain`).
    pub(crate) fn fire_special(&mut self, name: &str) {
        let perms = self.special_perms(name);
        self.events.push(Event {
            path: name.to_owned(),
            kind: EventKind::Changed,
            perms,
        });
    }

    /// Permissions of a special node (default `n0`).
    pub(crate) fn special_perms(&self, name: &str) -> Perms {
        self.special_perms
            .get(name)
            .cloned()
            .unwrap_or_else(|| Perms::owned_by(DomId(0)))
    }

    /// Queues a message for a connection (initial watch events).
    pub(crate) fn push_out(&mut self, conn: ConnId, msg: Vec<u8>) {
        self.outbox.push((conn, msg));
    }

    /// Takes the watch events queued since the last call, in order.
    pub fn take_outbox(&mut self) -> Vec<(ConnId, Vec<u8>)> {
        std::mem::take(&mut self.outbox)
    }

    /// Hands queued journal records to write(2) and compacts the journal when it has grown.
    ///
    /// # Errors
    /// The journal could not be written: the batch must not be acknowledged.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        let Some(j) = self.journal.as_mut() else {
            return Ok(());
        };
        j.flush()?;
        if j.wants_compaction() {
            let state = self.state_records();
            if let Some(j) = self.journal.as_mut() {
                j.compact(&state)?;
            }
        }
        Ok(())
    }

    /// Journal bytes queued and not yet written (non-zero while the disk refuses them).
    pub fn unflushed_bytes(&self) -> usize {
        self.journal.as_ref().map_or(0, Journal::unflushed_bytes)
    }

    /// Writes and fdatasyncs the journal (clean shutdown).
    ///
    /// # Errors
    /// I/O errors.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        match self.journal.as_mut() {
            Some(j) => j.sync(),
            None => Ok(()),
        }
    }

    /// Starts the once-a-second fdatasync thread (persistent stores only).
    pub fn start_syncer(&self) -> Option<Syncer> {
        self.journal.as_ref().map(Journal::start_syncer)
    }

    /// Number of nodes in the committed tree.
    pub fn node_count(&self) -> usize {
        self.tree.len()
    }

    /// Introduced domains.
    pub fn domains(&self) -> &BTreeMap<DomId, DomainInfo> {
        &self.domains
    }

    /// Journal size in bytes (0 for in-memory stores).
    pub fn journal_bytes(&self) -> u64 {
        self.journal.as_ref().map_or(0, Journal::len_bytes)
    }

    /// Registers special watch names as valid (they need no node).
    pub fn is_special(name: &str) -> bool {
        name == INTRODUCE_DOMAIN || name == RELEASE_DOMAIN
    }
}

/// Encodes an ERROR reply for `header`.
pub fn error_reply(header: &Header, e: XsError) -> Vec<u8> {
    let mut payload = e.name().as_bytes().to_vec();
    payload.push(0);
    wire::encode(MsgType::Error, header.req_id, header.tx_id, &payload)
}
