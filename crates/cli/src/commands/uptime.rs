//! `xl uptime [-s] [DOMAIN...]`.

use clap::Args as ClapArgs;

use super::Ctx;
use crate::{api, output};

/// Options of `uptime`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Short format, like uptime(1).
    #[arg(short = 's')]
    pub short: bool,
    /// Domains (all when none).
    pub domains: Vec<String>,
}

/// Runs `uptime`.
///
/// # Errors
/// When a named domain does not exist.
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let c = api::client();
    let all = api::named_or_all(&c, &args.domains)?;
    if !args.short {
        println!("{}", output::uptime_header());
    }
    for d in &all {
        if args.short {
            println!(
                "up {}, {} ({})",
                output::uptime_string(d.uptime_s as u64, true),
                d.name,
                d.domid
            );
        } else {
            println!("{}", output::uptime_row(d));
        }
    }
    Ok(())
}
