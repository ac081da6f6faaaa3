//! `xl uptime [-s] [DOMAIN...]`: xl's table, or with `-s` one uptime(1)-like line per domain.

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
            println!("{}", output::uptime_short_row(&crate::clock::hms_now(), d));
        } else {
            println!("{}", output::uptime_row(d));
        }
    }
    Ok(())
}
