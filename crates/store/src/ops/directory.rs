//! DIRECTORY `<path>|` → `<child-leaf-name>|*` (xenstore.txt). A listing past the payload limit is E2BIG
//! (clients then use DIRECTORY_PART).

use super::{check, node_path, one_field, Ctx};
use crate::db::Db;
use crate::perms::Want;
use crate::wire::XsError;

/// Lists the children.
pub(crate) fn apply(db: &mut dyn Db, ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, XsError> {
    let p = node_path(ctx, one_field(payload)?)?;
    check(db, ctx, &p.abs, Want::Read)?;
    let mut out = Vec::new();
    if !db.list_children(&p.abs, &mut out) {
        return Err(XsError::NoEnt);
    }
    Ok(out)
}
