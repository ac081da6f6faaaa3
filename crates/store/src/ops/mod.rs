//! One module per xenstore operation, each with its payload parsing and its effect (xenstore.txt).
//!
//! [`dispatch`] is the only `match` on the message type. Node operations are written once against
//! [`Db`] and run either on the committed tree or inside the transaction named by the header's `tx_id`.
//! The shared rules live here: path resolution (with the path-length quota), permission checks that answer
//! EACCES rather than ENOENT when the caller may not even see the parent, and node creation with Xen's
//! inheritance (a new node takes its parent's permissions; an unprivileged creator becomes its owner).

mod control;
mod directory;
mod directory_part;
mod get_domain_path;
mod get_perms;
mod introduce;
mod is_domain_introduced;
mod mkdir;
mod quota;
mod read;
mod release;
mod reset_watches;
mod resume;
mod rm;
mod set_perms;
mod set_target;
mod transaction_end;
mod transaction_start;
mod unwatch;
mod watch;
mod write;

use crate::db::{Db, MainDb};
use crate::path::{self, ClientPath};
use crate::perms::{Perms, Want};
use crate::quota::Quotas;
use crate::store::Store;
use crate::transaction::TxDb;
use crate::watch::EventKind;
use crate::wire::{split_fields, Header, MsgType, XsError};
use crate::{ConnId, DomId};

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx {
    pub(crate) conn: ConnId,
    pub(crate) domid: DomId,
    pub(crate) target: Option<DomId>,
    pub(crate) quotas: Quotas,
}

impl Ctx {
    pub(crate) fn privileged(&self) -> bool {
        self.domid.is_privileged()
    }
}

/// The `OK` reply payload.
pub(crate) fn ok() -> Vec<u8> {
    b"OK\0".to_vec()
}

/// Routes a request to its operation.
pub(crate) fn dispatch(
    store: &mut Store,
    conn: ConnId,
    h: &Header,
    payload: &[u8],
) -> Result<Vec<u8>, XsError> {
    let domid = store.domid_of(conn).ok_or(XsError::Inval)?;
    let ctx = Ctx {
        conn,
        domid,
        target: store.targets.get(&domid).copied(),
        quotas: store.quotas_of(domid),
    };
    use MsgType::*;
    match h.ty {
        Read => with_db(store, &ctx, h.tx_id, |db| read::apply(db, &ctx, payload)),
        Write => with_db(store, &ctx, h.tx_id, |db| write::apply(db, &ctx, payload)),
        Mkdir => with_db(store, &ctx, h.tx_id, |db| mkdir::apply(db, &ctx, payload)),
        Rm => with_db(store, &ctx, h.tx_id, |db| rm::apply(db, &ctx, payload)),
        Directory => with_db(store, &ctx, h.tx_id, |db| {
            directory::apply(db, &ctx, payload)
        }),
        DirectoryPart => with_db(store, &ctx, h.tx_id, |db| {
            directory_part::apply(db, &ctx, payload)
        }),
        GetPerms => get_perms::apply(store, &ctx, h.tx_id, payload),
        SetPerms => set_perms::apply(store, &ctx, h.tx_id, payload),
        Watch => watch::apply(store, &ctx, payload),
        Unwatch => unwatch::apply(store, &ctx, payload),
        ResetWatches => reset_watches::apply(store, &ctx),
        TransactionStart => transaction_start::apply(store, &ctx, h.tx_id),
        TransactionEnd => transaction_end::apply(store, &ctx, h.tx_id, payload),
        Introduce => introduce::apply(store, &ctx, payload),
        Release => release::apply(store, &ctx, payload),
        IsDomainIntroduced => is_domain_introduced::apply(store, payload),
        GetDomainPath => get_domain_path::apply(payload),
        Resume => resume::apply(store, &ctx, payload),
        SetTarget => set_target::apply(store, &ctx, payload),
        Control => control::apply(&ctx, payload),
        GetQuota => quota::get(store, &ctx, payload),
        SetQuota => quota::set(store, &ctx, payload),
        WatchEvent | Error => Err(XsError::Inval),
        GetFeature | SetFeature | Unknown(_) => Err(XsError::NoSys),
    }
}

/// Runs `f` on the committed tree (tx_id 0) or on the caller's transaction `tx_id`.
pub(crate) fn with_db<T>(
    store: &mut Store,
    ctx: &Ctx,
    tx_id: u32,
    f: impl FnOnce(&mut dyn Db) -> Result<T, XsError>,
) -> Result<T, XsError> {
    if tx_id == 0 {
        let mut db = MainDb {
            tree: &mut store.tree,
            events: &mut store.events,
        };
        return f(&mut db);
    }
    let conn = store.conns.get_mut(&ctx.conn).ok_or(XsError::Inval)?;
    let tx = conn.txs.get_mut(&tx_id).ok_or(XsError::NoEnt)?;
    let mut db = TxDb {
        tree: &store.tree,
        tx,
    };
    f(&mut db)
}

/// The payload as exactly one NUL-terminated string (terminator optional).
pub(crate) fn one_field(payload: &[u8]) -> Result<&[u8], XsError> {
    let body = payload.strip_suffix(b"\0").unwrap_or(payload);
    if body.contains(&0) {
        return Err(XsError::Inval);
    }
    Ok(body)
}

/// The payload's fields; exactly `n` of them.
pub(crate) fn fields(payload: &[u8], n: usize) -> Result<Vec<&[u8]>, XsError> {
    let f = split_fields(payload);
    if f.len() != n {
        return Err(XsError::Inval);
    }
    Ok(f)
}

/// Parses a decimal domid field.
pub(crate) fn parse_domid(field: &[u8]) -> Result<DomId, XsError> {
    let n = parse_u64(field)?;
    u32::try_from(n)
        .ok()
        .filter(|d| *d <= 0xffff)
        .map(DomId)
        .ok_or(XsError::Inval)
}

/// Parses an unsigned decimal field.
pub(crate) fn parse_u64(field: &[u8]) -> Result<u64, XsError> {
    if field.is_empty() || field.len() > 20 || !field.iter().all(u8::is_ascii_digit) {
        return Err(XsError::Inval);
    }
    std::str::from_utf8(field)
        .map_err(|_| XsError::Inval)?
        .parse()
        .map_err(|_| XsError::Inval)
}

/// Resolves a node path, applying the path-length quota to unprivileged callers.
pub(crate) fn node_path(ctx: &Ctx, raw: &[u8]) -> Result<ClientPath, XsError> {
    let p = path::resolve(raw, ctx.domid, false)?;
    if !ctx.privileged() && path::quota_len(&p.abs, ctx.domid) > ctx.quotas.path_max as usize {
        return Err(XsError::Inval);
    }
    Ok(p)
}

/// The nearest existing ancestor-or-self of `path` and its permissions.
pub(crate) fn nearest_existing(db: &mut dyn Db, path: &str) -> (String, Perms) {
    let mut p = path;
    loop {
        if let Some((_, perms)) = db.node(p) {
            return (p.to_owned(), perms.clone());
        }
        match path::parent(p) {
            Some(parent) => p = parent,
            None => return ("/".to_owned(), Perms::owned_by(DomId(0))),
        }
    }
}

/// Checks `want` on an existing node and returns its permissions. For a missing node: ENOENT if the caller
/// could read its nearest existing ancestor, EACCES otherwise (so names it may not see stay hidden).
pub(crate) fn check(db: &mut dyn Db, ctx: &Ctx, path: &str, want: Want) -> Result<Perms, XsError> {
    if let Some((_, perms)) = db.node(path) {
        let perms = perms.clone();
        if !perms.allows(ctx.domid, ctx.target, want) {
            return Err(XsError::Acces);
        }
        return Ok(perms);
    }
    let (_, perms) = nearest_existing(db, path);
    if perms.allows(ctx.domid, ctx.target, Want::Read) {
        Err(XsError::NoEnt)
    } else {
        Err(XsError::Acces)
    }
}

/// Creates `path` and its missing parents (WRITE, MKDIR); `value` goes to `path` itself.
/// The caller knows `path` does not exist.
pub(crate) fn create(
    db: &mut dyn Db,
    ctx: &Ctx,
    path: &str,
    value: Vec<u8>,
) -> Result<(), XsError> {
    let mut missing = vec![path.to_owned()];
    let mut cur = path;
    let parent_perms = loop {
        let Some(parent) = path::parent(cur) else {
            return Err(XsError::Inval);
        };
        if let Some((_, perms)) = db.node(parent) {
            break perms.clone();
        }
        missing.push(parent.to_owned());
        cur = parent;
    };
    if !parent_perms.allows(ctx.domid, ctx.target, Want::Write) {
        return Err(XsError::Acces);
    }
    let perms = if ctx.privileged() {
        parent_perms
    } else {
        parent_perms.with_owner(ctx.domid)
    };
    if !ctx.privileged() {
        let q = &ctx.quotas;
        if db.owned_by(perms.owner()) + missing.len() as u64 > u64::from(q.nodes)
            || value.len() > q.node_size as usize
            || db.touched() + missing.len() > q.transaction_nodes as usize
        {
            return Err(XsError::NoSpc);
        }
    }
    let mut value = Some(value);
    for p in missing.iter().rev() {
        let v = if p == path {
            value.take().unwrap_or_default()
        } else {
            Vec::new()
        };
        db.put(p, v, perms.clone());
    }
    db.fire(path, EventKind::Changed, perms);
    Ok(())
}

/// Checks the per-transaction node quota before changing one existing node.
pub(crate) fn check_touch(db: &dyn Db, ctx: &Ctx) -> Result<(), XsError> {
    if !ctx.privileged() && db.touched() >= ctx.quotas.transaction_nodes as usize {
        return Err(XsError::NoSpc);
    }
    Ok(())
}

/// Rejects callers other than dom0.
pub(crate) fn require_privileged(ctx: &Ctx) -> Result<(), XsError> {
    if ctx.privileged() {
        Ok(())
    } else {
        Err(XsError::Acces)
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
