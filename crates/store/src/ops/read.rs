//! READ `<path>|` → `<value|>` (xenstore.txt): needs read permission.

use super::{check, node_path, one_field, Ctx};
use crate::db::Db;
use crate::perms::Want;
use crate::wire::XsError;

/// Returns the node's value.
pub(crate) fn apply(db: &mut dyn Db, ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, XsError> {
    let p = node_path(ctx, one_field(payload)?)?;
    check(db, ctx, &p.abs, Want::Read)?;
    db.node(&p.abs)
        .map(|(v, _)| v.to_vec())
        .ok_or(XsError::NoEnt)
}
