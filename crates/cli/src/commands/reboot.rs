//! `xl reboot [-w] [-a] [-F] DOMAIN`: reset the guest; its on_reboot action then applies (by default the
//! domain comes back under the same name with a new domid).

use clap::Args as ClapArgs;

use super::Ctx;
use crate::api;

/// Options of `reboot`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Reboot every domain.
    #[arg(short = 'a', long = "all")]
    pub all: bool,
    /// Wait for the reboot to happen.
    #[arg(short = 'w', long = "wait")]
    pub wait: bool,
    /// Fallback for guests without PV drivers (the reset is all there is here).
    #[arg(short = 'F')]
    pub force: bool,
    /// The domain (name or domid).
    pub domain: Option<String>,
}

/// Runs `reboot`.
///
/// # Errors
/// When a domain does not exist or is not running.
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let c = api::client();
    let targets: Vec<(u32, String)> = if args.all {
        api::guests(&c)?
            .into_iter()
            .map(|d| (d.domid, d.name))
            .collect()
    } else {
        let Some(dom) = &args.domain else {
            anyhow::bail!("'xl reboot' requires at least one argument (a domain), or -a")
        };
        let d = c.get(dom)?;
        vec![(d.domid, d.name)]
    };
    for (domid, _) in &targets {
        c.action(&domid.to_string(), "reboot", None::<&()>)?;
    }
    if args.wait {
        let ids: Vec<u32> = targets.iter().map(|t| t.0).collect();
        // The old domid goes away when the guest resets (restart gives a new one).
        loop {
            let mut gone = true;
            for id in &ids {
                if c.get(&id.to_string())
                    .is_ok_and(|d| d.domid == *id && d.pid.is_some())
                {
                    gone = false;
                }
            }
            if gone {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    Ok(())
}
