//! GET_DOMAIN_PATH `<domid>|` → `<path>|` (xenstore.txt): `/local/domain/<domid>`.

use super::{one_field, parse_domid};
use crate::path::domain_path;
use crate::wire::XsError;

/// Returns the domain's home path.
pub(crate) fn apply(payload: &[u8]) -> Result<Vec<u8>, XsError> {
    let domid = parse_domid(one_field(payload)?)?;
    let mut out = domain_path(domid).into_bytes();
    out.push(0);
    Ok(out)
}
