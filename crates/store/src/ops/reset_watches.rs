//! RESET_WATCHES `|` (xenstore.txt): drops every watch and open transaction of the caller.

use super::{ok, Ctx};
use crate::store::Store;
use crate::wire::XsError;

/// Resets the connection's watches and transactions.
pub(crate) fn apply(store: &mut Store, ctx: &Ctx) -> Result<Vec<u8>, XsError> {
    store.watches.remove_conn(ctx.conn);
    if let Some(c) = store.conns.get_mut(&ctx.conn) {
        c.txs.clear();
    }
    Ok(ok())
}
