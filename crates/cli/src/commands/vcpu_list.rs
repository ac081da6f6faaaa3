//! `xl vcpu-list [DOMAIN...]`.

use clap::Args as ClapArgs;

use super::Ctx;
use crate::{api, output};

/// Options of `vcpu-list`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Domains (all when none).
    pub domains: Vec<String>,
}

/// Runs `vcpu-list`.
///
/// # Errors
/// When a named domain does not exist.
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let c = api::client();
    let nr = c.host()?.nr_cpus;
    let all = if args.domains.is_empty() {
        api::guests(&c)?
    } else {
        args.domains
            .iter()
            .map(|d| c.get(d))
            .collect::<Result<Vec<_>, _>>()?
    };
    println!("{}", output::vcpu_header());
    for d in &all {
        for row in output::vcpu_rows(d, nr) {
            println!("{row}");
        }
    }
    Ok(())
}
