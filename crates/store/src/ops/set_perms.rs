//! SET_PERMS `<path>|<perm-as-string>|+` (xenstore.txt). Needs write permission; only dom0 may change the
//! owner (EPERM otherwise); lists longer than the `permissions` quota are ENOSPC for unprivileged callers.

use super::{check, check_touch, ok, with_db, Ctx};
use crate::journal::Record;
use crate::path;
use crate::perms::{Perms, Want};
use crate::store::Store;
use crate::watch::EventKind;
use crate::wire::{split_fields, XsError};

/// Replaces the permission list.
pub(crate) fn apply(
    store: &mut Store,
    ctx: &Ctx,
    tx_id: u32,
    payload: &[u8],
) -> Result<Vec<u8>, XsError> {
    let f = split_fields(payload);
    let (raw, list) = f.split_first().ok_or(XsError::Inval)?;
    let p = path::resolve(raw, ctx.domid, true)?;
    let perms = Perms::parse(list)?;
    if !ctx.privileged() && perms.entries().len() > ctx.quotas.permissions as usize {
        return Err(XsError::NoSpc);
    }
    if p.abs.starts_with('@') {
        super::require_privileged(ctx)?;
        store.special_perms.insert(p.abs.clone(), perms.clone());
        store.journal_record(Record::SpecialPerms { name: p.abs, perms });
        return Ok(ok());
    }
    let p = super::node_path(ctx, raw)?;
    with_db(store, ctx, tx_id, |db| {
        let old = check(db, ctx, &p.abs, Want::Write)?;
        if !ctx.privileged() && perms.owner() != old.owner() {
            return Err(XsError::Perm);
        }
        check_touch(db, ctx)?;
        let value = db.node(&p.abs).map(|(v, _)| v.to_vec()).unwrap_or_default();
        db.put(&p.abs, value, perms.clone());
        db.fire(&p.abs, EventKind::Changed, perms);
        Ok(ok())
    })
}
