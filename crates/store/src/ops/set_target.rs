//! SET_TARGET `<domid>|<tdomid>|` (xenstore.txt): dom0 only. `<domid>` then acts with `<tdomid>`'s rights
//! as well as its own (device models serving a guest).

use super::{fields, ok, parse_domid, require_privileged, Ctx};
use crate::journal::Record;
use crate::store::Store;
use crate::wire::XsError;

/// Sets a target.
pub(crate) fn apply(store: &mut Store, ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, XsError> {
    require_privileged(ctx)?;
    let f = fields(payload, 2)?;
    let domid = parse_domid(f[0])?;
    let target = parse_domid(f[1])?;
    if domid.is_privileged() {
        return Err(XsError::Inval);
    }
    store.targets.insert(domid, target);
    store.journal_record(Record::SetTarget { domid, target });
    Ok(ok())
}
