//! IS_DOMAIN_INTRODUCED `<domid>|` → `T|` or `F|` (xenstore.txt). Dom0 is always introduced.

use super::{one_field, parse_domid};
use crate::store::Store;
use crate::wire::XsError;

/// Answers whether the domain is introduced.
pub(crate) fn apply(store: &Store, payload: &[u8]) -> Result<Vec<u8>, XsError> {
    let domid = parse_domid(one_field(payload)?)?;
    let yes = domid.is_privileged() || store.domains.contains_key(&domid);
    Ok(if yes {
        b"T\0".to_vec()
    } else {
        b"F\0".to_vec()
    })
}
