//! INTRODUCE `<domid>|<mfn>|<evtchn>|?` (xenstore.txt): dom0 only. Records the domain (persistently) and
//! fires `@introduceDomain`. Introducing an already introduced domain again is accepted silently.

use super::{ok, parse_domid, require_privileged, Ctx};
use crate::journal::Record;
use crate::path::INTRODUCE_DOMAIN;
use crate::store::{DomainInfo, Store};
use crate::wire::{split_fields, XsError};
use crate::DomId;

/// First reserved domid (`DOMID_FIRST_RESERVED`).
pub(crate) const DOMID_FIRST_RESERVED: u32 = 0x7ff0;

/// Parses `<mfn>`: signed decimal in Xen's documents, any 64-bit pattern kept.
fn parse_mfn(field: &[u8]) -> Result<u64, XsError> {
    let s = std::str::from_utf8(field).map_err(|_| XsError::Inval)?;
    if let Ok(v) = s.parse::<u64>() {
        return Ok(v);
    }
    s.parse::<i64>()
        .map(|v| u64::from_ne_bytes(v.to_ne_bytes()))
        .map_err(|_| XsError::Inval)
}

/// Introduces a domain.
pub(crate) fn apply(store: &mut Store, ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, XsError> {
    require_privileged(ctx)?;
    let f = split_fields(payload);
    if f.len() < 3 {
        return Err(XsError::Inval);
    }
    let domid = parse_domid(f[0])?;
    if domid == DomId(0) || domid.0 >= DOMID_FIRST_RESERVED {
        return Err(XsError::Inval);
    }
    let mfn = parse_mfn(f[1])?;
    let port = u32::try_from(super::parse_u64(f[2])?).map_err(|_| XsError::Inval)?;
    if store.domains.contains_key(&domid) {
        return Ok(ok());
    }
    store.domains.insert(domid, DomainInfo { mfn, port });
    store.journal_record(Record::Introduce { domid, mfn, port });
    store.fire_special(INTRODUCE_DOMAIN);
    Ok(ok())
}
