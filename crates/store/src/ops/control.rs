//! CONTROL `<command>|[<parameters>|]` (xenstore.txt): dom0 only; the harmless commands `check`, `log`,
//! `print` and `help`. Anything else is EINVAL.

use super::{ok, require_privileged, Ctx};
use crate::wire::{split_fields, XsError};

/// Commands this server understands.
const HELP: &[u8] = b"check\nlog on|off\nprint <string>\nhelp\n\0";

/// Runs a control command.
pub(crate) fn apply(ctx: &Ctx, payload: &[u8]) -> Result<Vec<u8>, XsError> {
    require_privileged(ctx)?;
    let f = split_fields(payload);
    match f.first().copied() {
        Some(b"check") => Ok(ok()),
        Some(b"log") => match f.get(1).copied() {
            Some(b"on" | b"off") => Ok(ok()),
            _ => Err(XsError::Inval),
        },
        Some(b"print") => {
            let len = f.get(1).map_or(0, |s| s.len());
            tracing::info!(conn = ctx.conn.0, len, "CONTROL print");
            Ok(ok())
        }
        Some(b"help") => Ok(HELP.to_vec()),
        _ => Err(XsError::Inval),
    }
}
