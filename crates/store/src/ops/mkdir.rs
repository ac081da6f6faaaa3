//! MKDIR `<path>|` (xenstore.txt): makes sure the path exists; existing values are left alone.

use super::{check, create, node_path, ok, one_field, Ctx};
use crate::db::Db;
use crate::perms::Want;
use crate::wire::XsError;

/// Creates the node and missing parents, if needed.
pub(crate) fn apply(db: &mut dyn Db, ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, XsError> {
    let p = node_path(ctx, one_field(payload)?)?;
    if db.node(&p.abs).is_some() {
        check(db, ctx, &p.abs, Want::Write)?;
        return Ok(ok());
    }
    create(db, ctx, &p.abs, Vec::new())?;
    Ok(ok())
}
