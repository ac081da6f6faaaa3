//! TRANSACTION_START `|` → `<transid>|` (xenstore.txt). A non-zero tx_id in the request is EBUSY
//! (nested transactions do not exist); unprivileged callers past the `transactions` quota get ENOSPC.

use super::Ctx;
use crate::store::Store;
use crate::transaction::Transaction;
use crate::wire::XsError;

/// Opens a transaction.
pub(crate) fn apply(store: &mut Store, ctx: &Ctx, tx_id: u32) -> Result<Vec<u8>, XsError> {
    if tx_id != 0 {
        return Err(XsError::Busy);
    }
    let conn = store.conns.get_mut(&ctx.conn).ok_or(XsError::Inval)?;
    if !ctx.privileged() && conn.txs.len() >= ctx.quotas.transactions as usize {
        return Err(XsError::NoSpc);
    }
    let mut id = conn.next_tx;
    while id == 0 || conn.txs.contains_key(&id) {
        id = id.wrapping_add(1);
    }
    conn.next_tx = id.wrapping_add(1);
    conn.txs.insert(id, Transaction::new());
    let mut out = id.to_string().into_bytes();
    out.push(0);
    Ok(out)
}
