//! TRANSACTION_END `T|` or `F|` (xenstore.txt): commit or abort. After it the id is gone either way.
//! Commit fails with EAGAIN when something the transaction read or wrote changed meanwhile; its watch
//! events fire only on a successful commit.

use super::{ok, one_field, Ctx};
use crate::store::Store;
use crate::wire::XsError;

/// Ends the transaction named by the header's tx_id.
pub(crate) fn apply(
    store: &mut Store,
    ctx: &Ctx,
    tx_id: u32,
    payload: &[u8],
) -> Result<Vec<u8>, XsError> {
    let commit = match one_field(payload)? {
        b"T" => true,
        b"F" => false,
        _ => return Err(XsError::Inval),
    };
    let conn = store.conns.get_mut(&ctx.conn).ok_or(XsError::Inval)?;
    let tx = conn.txs.remove(&tx_id).ok_or(XsError::NoEnt)?;
    if commit {
        let events = tx.commit(&mut store.tree)?;
        store.events.extend(events);
    }
    Ok(ok())
}
