//! GET_QUOTA `[[<domid>|]<quota>|]` → `<value>|` or the list of quota names; SET_QUOTA
//! `[<domid>|]<quota>|<value>|` (Xen 4.19 xenstore.txt). Dom0 only. Without a domid they act on the global
//! limits; with one, on that domain's own limits. Changes are journaled like every other change, so they
//! survive a restart (see [`crate::quota::QuotaTable`] for what exactly is kept).

use super::{ok, parse_domid, parse_u64, require_privileged, Ctx};
use crate::journal::Record;
use crate::quota::NAMES;
use crate::store::Store;
use crate::wire::{split_fields, XsError};

fn name(field: &[u8]) -> Result<&str, XsError> {
    let s = std::str::from_utf8(field).map_err(|_| XsError::Inval)?;
    NAMES
        .iter()
        .find(|n| **n == s)
        .copied()
        .ok_or(XsError::Inval)
}

/// Reads a quota, or lists the names.
pub(crate) fn get(store: &Store, ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, XsError> {
    require_privileged(ctx)?;
    let f = split_fields(payload);
    let value = match f.as_slice() {
        [] | [b""] => {
            let mut out = Vec::new();
            for n in NAMES {
                out.extend_from_slice(n.as_bytes());
                out.push(0);
            }
            return Ok(out);
        }
        [q] => store.quotas.global.get(name(q)?),
        [d, q] => store.quotas.of(parse_domid(d)?).get(name(q)?),
        _ => return Err(XsError::Inval),
    };
    let mut out = value.ok_or(XsError::Inval)?.to_string().into_bytes();
    out.push(0);
    Ok(out)
}

/// Sets a quota.
pub(crate) fn set(store: &mut Store, ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, XsError> {
    require_privileged(ctx)?;
    let f = split_fields(payload);
    let (domid, q, v) = match f.as_slice() {
        [q, v] => (None, name(q)?, v),
        [d, q, v] => (Some(parse_domid(d)?), name(q)?, v),
        _ => return Err(XsError::Inval),
    };
    let value = u32::try_from(parse_u64(v)?).map_err(|_| XsError::Inval)?;
    store.quotas.set(domid, q, value);
    // A domain's limits are journaled whole: they were copied from the global ones when first set.
    let names: &[&str] = if domid.is_some() { &NAMES } else { &[q] };
    let slot = match domid {
        Some(d) => *store.quotas.of(d),
        None => store.quotas.global,
    };
    for n in names {
        store.journal_record(Record::Quota {
            domid,
            name: (*n).to_owned(),
            value: slot.get(n).unwrap_or(value),
        });
    }
    Ok(ok())
}
