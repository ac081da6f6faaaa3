//! RM `<path>|` (xenstore.txt): removes the node and its subtree. A missing node is fine if its parent
//! exists; removing `/` is refused.

use super::{check, check_touch, node_path, ok, one_field, Ctx};
use crate::db::Db;
use crate::path;
use crate::perms::Want;
use crate::watch::EventKind;
use crate::wire::XsError;

/// Removes the subtree.
pub(crate) fn apply(db: &mut dyn Db, ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, XsError> {
    let p = node_path(ctx, one_field(payload)?)?;
    let Some(parent) = path::parent(&p.abs) else {
        return Err(XsError::Inval);
    };
    if db.node(&p.abs).is_none() {
        check(db, ctx, parent, Want::Read)?;
        return Ok(ok());
    }
    let perms = check(db, ctx, &p.abs, Want::Write)?;
    check_touch(db, ctx)?;
    db.remove(&p.abs);
    db.fire(&p.abs, EventKind::Removed, perms);
    Ok(ok())
}
