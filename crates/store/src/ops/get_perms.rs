//! GET_PERMS `<path>|` → `<perm-as-string>|+` (xenstore.txt). Special `@` names have permissions too.

use super::{check, one_field, with_db, Ctx};
use crate::path;
use crate::perms::Want;
use crate::store::Store;
use crate::wire::XsError;

/// Returns the permission list.
pub(crate) fn apply(
    store: &mut Store,
    ctx: &Ctx,
    tx_id: u32,
    payload: &[u8],
) -> Result<Vec<u8>, XsError> {
    let p = path::resolve(one_field(payload)?, ctx.domid, true)?;
    if p.abs.starts_with('@') {
        let perms = store.special_perms(&p.abs);
        if !perms.allows(ctx.domid, ctx.target, Want::Read) {
            return Err(XsError::Acces);
        }
        return Ok(perms.to_wire());
    }
    let p = super::node_path(ctx, one_field(payload)?)?;
    with_db(store, ctx, tx_id, |db| {
        check(db, ctx, &p.abs, Want::Read).map(|perms| perms.to_wire())
    })
}
