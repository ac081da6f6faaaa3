//! RESUME `<domid>|` (xenstore.txt): dom0 only; accepted for introduced domains. There is no shutdown
//! state machine to re-arm here (domusd fires `@releaseDomain` through RELEASE).

use super::{ok, one_field, parse_domid, require_privileged, Ctx};
use crate::store::Store;
use crate::wire::XsError;

/// Resumes a domain.
pub(crate) fn apply(store: &Store, ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, XsError> {
    require_privileged(ctx)?;
    let domid = parse_domid(one_field(payload)?)?;
    if !store.domains.contains_key(&domid) {
        return Err(XsError::NoEnt);
    }
    Ok(ok())
}
