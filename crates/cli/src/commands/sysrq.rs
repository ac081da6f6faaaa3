//! `xl sysrq DOMAIN LETTER`: a serial line BREAK followed by the letter on the domain's console, which
//! Linux's 8250 console turns into SysRq-LETTER (Xen's PV guests watch `control/sysrq` in the store
//! instead; a KVM guest's console is its 16550, so the break is how the request reaches it).

use clap::Args as ClapArgs;
use domus_api::messages::SysrqRequest;

use super::Ctx;
use crate::api;

/// Arguments of `sysrq`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The domain (name or domid).
    pub domain: String,
    /// The SysRq letter (one printable character).
    pub letter: String,
}

/// Runs `sysrq`.
///
/// # Errors
/// Not exactly one printable character, or the domain missing or not running.
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let mut chars = args.letter.chars();
    let (Some(key), None) = (chars.next(), chars.next()) else {
        anyhow::bail!("sysrq must be just one character");
    };
    api::client().action(&args.domain, "sysrq", Some(&SysrqRequest { key }))?;
    Ok(())
}
