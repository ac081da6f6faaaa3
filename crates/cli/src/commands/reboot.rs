//! `xl reboot [-w] [-a] [-F] [--timeout SECS] DOMAIN`: a graceful reboot, as libvirt's ACPI reboot: domusd
//! presses the guest's power button and marks the domain "reboot requested"; when the guest powers off,
//! its on_reboot action applies (by default the domain comes back under the same name with a new domid).
//! `-F` resets the guest at once instead; with `-w`, a guest still up after the timeout is reset.

use std::time::{Duration, Instant};

use clap::Args as ClapArgs;
use domus_api::client::ApiClient;
use domus_api::messages::RebootRequest;

use super::Ctx;
use crate::api;

/// Options of `reboot`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Reboot every domain.
    #[arg(short = 'a', long = "all")]
    pub all: bool,
    /// Wait for the reboot to happen (resetting guests that do not power off in time).
    #[arg(short = 'w', long = "wait")]
    pub wait: bool,
    /// Hard reset instead of pressing the power button.
    #[arg(short = 'F')]
    pub force: bool,
    /// With -w: seconds to wait for the guest to power off before resetting it (default 60).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// The domain (name or domid).
    pub domain: Option<String>,
}

/// Whether instance `domid` is still the running one (not yet rebooted).
fn still_up(c: &ApiClient, domid: u32) -> bool {
    c.get(&domid.to_string())
        .is_ok_and(|d| d.domid == domid && d.pid.is_some())
}

/// Waits until none of `ids` runs any more (or `timeout` passes); returns those still up.
fn wait_rebooted(c: &ApiClient, ids: &[u32], timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<u32> = ids.iter().copied().filter(|&id| still_up(c, id)).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `reboot`.
///
/// # Errors
/// When a domain does not exist or is not running.
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let c = api::client();
    let targets = api::running_or_named(&c, "reboot", args.all, args.domain.as_deref())?;
    let req = RebootRequest { force: args.force };
    for (domid, _) in &targets {
        eprintln!("Rebooting domain {domid}");
        c.action(&domid.to_string(), "reboot", Some(&req))?;
    }
    if args.wait && !targets.is_empty() {
        let ids: Vec<u32> = targets.iter().map(|t| t.0).collect();
        let timeout = Duration::from_secs(args.timeout.unwrap_or(60));
        // The old domid goes away when the guest powers off or resets (restart gives a new one).
        let left = wait_rebooted(&c, &ids, timeout);
        let force = RebootRequest { force: true };
        for id in &left {
            eprintln!("Domain {id} did not reboot in time; resetting it");
            if let Err(e) = c.action(&id.to_string(), "reboot", Some(&force)) {
                if !e.is_not_found() {
                    anyhow::bail!("reset of domain {id} failed: {e}");
                }
            }
        }
        let left = wait_rebooted(&c, &left, Duration::from_secs(30));
        if !left.is_empty() {
            anyhow::bail!("domains {left:?} did not reboot");
        }
    }
    Ok(())
}
