//! `xl shutdown [-w] [-a] [-F] [DOMAIN]`: press each guest's ACPI power button; with `-w` wait until they
//! are down. `--timeout SECS` (default 120 with `-a -w`, as xendomains does) destroys what is still up.
//!
//! Invoked as `xm`, xm's `-H`/`--halt` (shut down and stay off: the default) and `-R`/`--reboot` (shut
//! down and reboot: `reboot`) are accepted too; xl refuses them as xl does.

use std::time::Duration;

use clap::Args as ClapArgs;
use domus_api::messages::ShutdownRequest;

use super::{Ctx, Prog};
use crate::api;

/// Options of `shutdown`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Shut down every domain.
    #[arg(short = 'a', long = "all")]
    pub all: bool,
    /// Wait for the domains to finish shutting down.
    #[arg(short = 'w', long = "wait")]
    pub wait: bool,
    /// Use the ACPI power button even without PV drivers (the only way here anyway).
    #[arg(short = 'F')]
    pub force: bool,
    /// With -w: seconds to wait before destroying domains still running (default: 120 with -a, else none).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// xm only: shut down and reboot (as `reboot`).
    #[arg(short = 'R', long = "reboot", conflicts_with = "halt")]
    pub reboot: bool,
    /// xm only: shut down and halt (power off; the default).
    #[arg(short = 'H', long = "halt")]
    pub halt: bool,
    /// The domain (name or domid).
    pub domain: Option<String>,
}

/// Runs `shutdown`.
///
/// # Errors
/// When a domain does not exist or is not running.
pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    if (args.reboot || args.halt) && ctx.prog != Prog::Xm {
        let flag = if args.reboot { "-R" } else { "-H" };
        anyhow::bail!(
            "{flag} is an xm option (xm shutdown {flag}); with {} use `reboot` to reboot, plain `shutdown` to power off",
            ctx.prog.name()
        );
    }
    if args.reboot {
        let req = super::reboot::Args {
            all: args.all,
            wait: args.wait,
            force: false,
            timeout: args.timeout,
            domain: args.domain,
        };
        return super::reboot::run(ctx, req);
    }
    let c = api::client();
    let targets = api::running_or_named(&c, "shutdown", args.all, args.domain.as_deref())?;
    let req = ShutdownRequest { force: args.force };
    let mut failed = false;
    for (domid, name) in &targets {
        eprintln!("Shutting down domain {domid}");
        if let Err(e) = c.action(&domid.to_string(), "shutdown", Some(&req)) {
            eprintln!("shutdown of domain {domid} ({name}) failed: {e}");
            failed = true;
        }
    }
    if args.wait && !targets.is_empty() {
        let timeout = args
            .timeout
            .or(if args.all { Some(120) } else { None })
            .map(Duration::from_secs);
        eprintln!("Waiting for {} domains", targets.len());
        let ids: Vec<u32> = targets.iter().map(|t| t.0).collect();
        let left = api::wait_stopped(&c, &ids, timeout)?;
        for id in &ids {
            if !left.contains(id) {
                eprintln!("Domain {id} has been shut down");
            }
        }
        for id in &left {
            eprintln!("Domain {id} did not shut down in time; destroying it");
            if let Err(e) = c.action(&id.to_string(), "destroy", None::<&()>) {
                if !e.is_not_found() {
                    eprintln!("destroy of domain {id} failed: {e}");
                    failed = true;
                }
            }
        }
        if left.is_empty() {
            eprintln!("All domains have been shut down");
        }
    }
    if failed {
        anyhow::bail!("some domains could not be shut down");
    }
    Ok(())
}
