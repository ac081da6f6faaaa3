//! `xl sched-credit`, `xl sched-credit2` and `xl sched-rtds`.
//!
//! A domain's weight and cap live on its cgroup (see domusd's `resources` module): the weight is
//! proportional, 256 being the default share, and the cap is a percentage of one CPU. Both credit
//! commands list and set them in xl's format (`%-33s %4d %6d %4d`); there is one pool, `Pool-0`, and
//! the host scheduler's own parameters (time slice, rate limit) are Linux's, not set through Domus, so
//! the pool line says `[sched params unavailable]` as xl does when it cannot read them. RTDS has no
//! counterpart under Linux's fair scheduler and is refused.

use anyhow::bail;
use clap::Args as ClapArgs;
use domus_api::messages::{DomainInfo, SchedCreditRequest};

use super::Ctx;
use crate::api;

/// The only cpupool.
const POOL: &str = "Pool-0";

/// Options of `sched-credit` (and `sched-credit2`, which has no `-t`/`-m`).
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The domain (name or domid).
    #[arg(short = 'd', long = "domain")]
    pub domain: Option<String>,
    /// Weight (1-65535; 256 is the default share).
    #[arg(short = 'w', long = "weight")]
    pub weight: Option<u32>,
    /// Cap: percent of one CPU (0 = none).
    #[arg(short = 'c', long = "cap")]
    pub cap: Option<u32>,
    /// The cpupool (only Pool-0 exists).
    #[arg(short = 'p', long = "cpupool")]
    pub cpupool: Option<String>,
    /// Show or set the pool's scheduler parameters.
    #[arg(short = 's', long = "schedparam")]
    pub schedparam: bool,
    /// Time slice, ms (sched-credit only).
    #[arg(short = 't', long = "tslice_ms")]
    pub tslice: Option<u32>,
    /// Rate limit, µs.
    #[arg(short = 'r', long = "ratelimit_us")]
    pub ratelimit: Option<u32>,
    /// Migration delay, µs (sched-credit only).
    #[arg(short = 'm', long = "migration_delay_us")]
    pub migration_delay: Option<u32>,
}

/// Options of `sched-rtds` (accepted so the refusal names the command, not an option).
#[derive(Debug, ClapArgs)]
pub struct RtdsArgs {
    /// Anything xl's sched-rtds takes.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

/// xl's header line for the credit schedulers.
pub fn header() -> String {
    format!("{:<33} {:>4} {:>6} {:>4}", "Name", "ID", "Weight", "Cap")
}

/// One domain's row.
pub fn row(d: &DomainInfo) -> String {
    format!(
        "{:<33} {:>4} {:>6} {:>4}",
        d.name, d.domid, d.sched.weight, d.sched.cap
    )
}

fn pool_line() -> String {
    format!("Cpupool {POOL}: [sched params unavailable]")
}

/// Runs `sched-credit` (`credit2` false) or `sched-credit2` (true).
///
/// # Errors
/// xl's refusals for bad option combinations, or as the API reports.
pub fn run(_ctx: &Ctx, args: Args, credit2: bool) -> anyhow::Result<()> {
    let domain_opts = args.domain.is_some() || args.weight.is_some() || args.cap.is_some();
    if credit2 && (args.tslice.is_some() || args.migration_delay.is_some()) {
        bail!("sched-credit2 has no -t or -m option");
    }
    if args.cpupool.is_some() && domain_opts {
        if credit2 {
            bail!("Specifying a cpupool is not allowed with other options.");
        }
        bail!("Specifying a cpupool or schedparam is not allowed with domain options.");
    }
    if !credit2 && args.schedparam && domain_opts {
        bail!("Specifying a cpupool or schedparam is not allowed with domain options.");
    }
    if args.domain.is_none() && (args.weight.is_some() || args.cap.is_some()) {
        bail!("Must specify a domain.");
    }
    let pool_params =
        args.tslice.is_some() || args.ratelimit.is_some() || args.migration_delay.is_some();
    if !args.schedparam && pool_params {
        bail!("Must specify schedparam to set schedule parameter values.");
    }
    if let Some(p) = args.cpupool.as_deref().filter(|p| *p != POOL && *p != "0") {
        bail!("unknown cpupool '{p}'");
    }
    if args.schedparam {
        if pool_params {
            bail!(
                "the host scheduler's time slice, rate limit and migration delay are Linux's (CFS): \
                 Domus does not set them; set a domain's weight and cap with -d DOMAIN -w/-c"
            );
        }
        println!("{}", pool_line());
        return Ok(());
    }
    let c = api::client();
    let Some(dom) = args.domain else {
        println!("{}", pool_line());
        println!("{}", header());
        for d in c.list()? {
            println!("{}", row(&d));
        }
        return Ok(());
    };
    if args.weight.is_none() && args.cap.is_none() {
        let d = c.get(&dom)?;
        println!("{}", header());
        println!("{}", row(&d));
        return Ok(());
    }
    c.action(
        &dom,
        "sched-credit",
        Some(&SchedCreditRequest {
            weight: args.weight,
            cap: args.cap,
        }),
    )?;
    Ok(())
}

/// Runs `sched-rtds`: refused.
///
/// # Errors
/// Always: Linux's fair scheduler has no RTDS period/budget reservations.
pub fn rtds(_ctx: &Ctx, _args: RtdsArgs) -> anyhow::Result<()> {
    bail!(
        "sched-rtds is not supported: Domus runs vCPUs as Linux threads under the fair scheduler, which \
         has no RTDS period/budget reservations; use sched-credit -d DOMAIN -w WEIGHT -c CAP"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_match_xl() {
        assert_eq!(
            header(),
            "Name                                ID Weight  Cap"
        );
        assert_eq!(pool_line(), "Cpupool Pool-0: [sched params unavailable]");
    }
}
