//! RELEASE `<domid>|` (xenstore.txt): dom0 only. Forgets the domain, removes every node it owns (as
//! xenstored does since 4.17, so a dead domain's leftovers cannot pile up), and fires `@releaseDomain`.

use super::{parse_domid, require_privileged, Ctx};
use crate::db::{Db, MainDb};
use crate::journal::Record;
use crate::path::RELEASE_DOMAIN;
use crate::store::Store;
use crate::watch::EventKind;
use crate::wire::XsError;
use crate::DomId;

/// Releases a domain.
pub(crate) fn apply(store: &mut Store, ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, XsError> {
    require_privileged(ctx)?;
    let domid = parse_domid(super::one_field(payload)?)?;
    if domid == DomId(0) {
        return Err(XsError::Inval);
    }
    if store.domains.remove(&domid).is_none() {
        return Err(XsError::NoEnt);
    }
    store.targets.remove(&domid);
    store.journal_record(Record::Release { domid });
    let owned = store.tree.paths_owned_by(domid);
    let mut db = MainDb {
        tree: &mut store.tree,
        events: &mut store.events,
    };
    for p in owned {
        if let Some((_, perms)) = db.node(&p) {
            let perms = perms.clone();
            db.remove(&p);
            db.fire(&p, EventKind::Removed, perms);
        }
    }
    store.fire_special(RELEASE_DOMAIN);
    Ok(super::ok())
}
