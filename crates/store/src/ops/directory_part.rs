//! DIRECTORY_PART `<path>|<offset>` → `<gencnt>|<child-leaf-name>|*` (xenstore.txt).
//!
//! `<offset>` is a byte offset into the full NUL-separated children list. The reply carries as many whole
//! names from there as fit; when it reaches the end of the list an extra empty string (a second NUL) marks
//! completion. `<gencnt>` changes whenever the children list changes.

use super::{check, node_path, parse_u64, Ctx};
use crate::db::Db;
use crate::perms::Want;
use crate::wire::{split_fields, XsError, PAYLOAD_MAX};

/// Lists part of the children.
pub(crate) fn apply(db: &mut dyn Db, ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, XsError> {
    let f = split_fields(payload);
    if f.len() != 2 {
        return Err(XsError::Inval);
    }
    let p = node_path(ctx, f[0])?;
    let offset = usize::try_from(parse_u64(f[1])?).map_err(|_| XsError::Inval)?;
    check(db, ctx, &p.abs, Want::Read)?;
    let children = db.children(&p.abs).ok_or(XsError::NoEnt)?;
    let mut all = Vec::new();
    for c in children {
        all.extend_from_slice(c.as_bytes());
        all.push(0);
    }
    if offset > all.len() || (offset > 0 && all[offset - 1] != 0) {
        return Err(XsError::Inval);
    }
    let mut out = format!("{}", db.children_gen(&p.abs)).into_bytes();
    out.push(0);
    let room = PAYLOAD_MAX - out.len() - 1;
    let rest = &all[offset..];
    if rest.len() <= room {
        out.extend_from_slice(rest);
        out.push(0);
        return Ok(out);
    }
    let cut = rest[..room]
        .iter()
        .rposition(|b| *b == 0)
        .map_or(0, |i| i + 1);
    out.extend_from_slice(&rest[..cut]);
    Ok(out)
}
