//! `xl mem-set DOMAIN MEM`: the domain's memory target (MEM in MiB, or with a unit suffix), within its
//! `maxmem`; the balloon driver in the guest follows it.

use clap::Args as ClapArgs;
use domus_api::messages::MemSetRequest;

use super::mem_max::parse_mib;
use super::Ctx;
use crate::api;

/// Options of `mem-set`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The domain (name or domid).
    pub domain: String,
    /// New target: a number of MiB, or with suffix b/k/m/g/t.
    pub mem: String,
}

/// Runs `mem-set`.
///
/// # Errors
/// xl's "invalid memory size", or the refusal followed by xl's "cannot set domid N dynamic max memory
/// to : MEM".
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let mib =
        parse_mib(&args.mem).map_err(|_| anyhow::anyhow!("invalid memory size: {}", args.mem))?;
    let c = api::client();
    let domid = c.get(&args.domain)?.domid;
    c.action(&args.domain, "mem-set", Some(&MemSetRequest { mib }))
        .map_err(|e| {
            anyhow::anyhow!(
                "{e}\ncannot set domid {domid} dynamic max memory to : {}",
                args.mem
            )
        })
}
