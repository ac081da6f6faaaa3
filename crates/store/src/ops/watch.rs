//! WATCH `<wpath>|<token>|?` (xenstore.txt): registers a watch and fires it once right away (after the
//! reply). Unprivileged callers past the `watches` quota get E2BIG, as from xenstored.

use super::{ok, Ctx};
use crate::path;
use crate::store::Store;
use crate::wire::{split_fields, XsError};

/// Adds the watch.
pub(crate) fn apply(store: &mut Store, ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, XsError> {
    let f = split_fields(payload);
    if f.len() < 2 {
        return Err(XsError::Inval);
    }
    let wpath = path::resolve(f[0], ctx.domid, true)?;
    let token = f[1];
    if !ctx.privileged() && store.watches.count(ctx.conn) >= ctx.quotas.watches {
        return Err(XsError::TooBig);
    }
    let first = store.watches.add(ctx.conn, ctx.domid, &wpath, token)?;
    store.push_out(ctx.conn, first);
    Ok(ok())
}
