//! `xl vcpu-set [-i] DOMAIN N`: how many of the domain's vCPUs are online (1 to its `maxvcpus`).

use clap::Args as ClapArgs;
use domus_api::messages::VcpuSetRequest;

use super::Ctx;
use crate::api;

/// Options of `vcpu-set`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Allow more vCPUs than the host has CPUs.
    #[arg(short = 'i', long = "ignore-host")]
    pub ignore_host: bool,
    /// The domain (name or domid).
    pub domain: String,
    /// vCPUs online.
    pub vcpus: String,
}

/// Runs `vcpu-set`.
///
/// # Errors
/// xl's refusals (a bad number, overcommitting the host without `-i`), or the daemon's refusal
/// followed by xl's "libxl_set_vcpuonline failed" line.
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let n: u32 = args
        .vcpus
        .parse()
        .map_err(|_| anyhow::anyhow!("Error: Invalid argument {} as VCPU.", args.vcpus))?;
    let c = api::client();
    let d = c.get(&args.domain)?;
    if !args.ignore_host {
        let host = c.host()?.nr_cpus;
        if n > d.vcpus && n > host {
            anyhow::bail!(
                "You are overcommmitting! You have {host} physical CPUs and want {n} vCPUs! Aborting, use --ignore-host to continue"
            );
        }
    }
    c.action(&args.domain, "vcpu-set", Some(&VcpuSetRequest { vcpus: n }))
        .map_err(|e| {
            anyhow::anyhow!(
                "{e}\nlibxl_set_vcpuonline failed domid={} max_vcpus={n}, rc: -3",
                d.domid
            )
        })
}
