//! WRITE `<path>|<value|>` (xenstore.txt): stores the value, creating missing parents with empty values.

use super::{check_touch, create, node_path, ok, Ctx};
use crate::db::Db;
use crate::perms::Want;
use crate::watch::EventKind;
use crate::wire::XsError;

/// Writes the value.
pub(crate) fn apply(db: &mut dyn Db, ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, XsError> {
    let nul = payload.iter().position(|b| *b == 0).ok_or(XsError::Inval)?;
    let (raw, value) = (&payload[..nul], &payload[nul + 1..]);
    let p = node_path(ctx, raw)?;
    let existing = db.node(&p.abs).map(|(_, perms)| perms.clone());
    match existing {
        None => create(db, ctx, &p.abs, value.to_vec())?,
        Some(perms) => {
            if !perms.allows(ctx.domid, ctx.target, Want::Write) {
                return Err(XsError::Acces);
            }
            if !ctx.privileged() && value.len() > ctx.quotas.node_size as usize {
                return Err(XsError::NoSpc);
            }
            check_touch(db, ctx)?;
            db.put(&p.abs, value.to_vec(), perms.clone());
            db.fire(&p.abs, EventKind::Changed, perms);
        }
    }
    Ok(ok())
}
