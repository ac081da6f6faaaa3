//! UNWATCH `<wpath>|<token>|?` (xenstore.txt): removes one watch of this connection.

use super::{ok, Ctx};
use crate::path;
use crate::store::Store;
use crate::wire::{split_fields, XsError};

/// Removes the watch.
pub(crate) fn apply(store: &mut Store, ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, XsError> {
    let f = split_fields(payload);
    if f.len() < 2 {
        return Err(XsError::Inval);
    }
    let wpath = path::resolve(f[0], ctx.domid, true)?;
    store.watches.remove(ctx.conn, &wpath.abs, f[1])?;
    Ok(ok())
}
