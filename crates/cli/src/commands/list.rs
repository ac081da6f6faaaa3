//! `xl list [-l] [-v] [-Z] [-c] [-n] [DOMAIN...]`: the domains in xl's columns, Domain-0 first; `-l`
//! prints libxl's JSON, `--json` Domus's own.

use clap::Args as ClapArgs;

use super::Ctx;
use crate::output::ListColumns;
use crate::{api, output};

/// Options of `list`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Long output: libxl's JSON of each domain's configuration (as xl prints it).
    #[arg(short = 'l', long = "long")]
    pub long: bool,
    /// Domus's own JSON of each domain (state, times, pid, restarts, configuration).
    #[arg(long = "json", conflicts_with = "long")]
    pub json: bool,
    /// Verbose: add UUID, shutdown reason code and security label.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    /// Add the security label column (there are none: "-"); xm's `--label` too.
    #[arg(short = 'Z', long = "context", visible_alias = "label")]
    pub context: bool,
    /// Add the cpupool column.
    #[arg(short = 'c', long = "cpupool")]
    pub cpupool: bool,
    /// Add the NUMA node affinity column.
    #[arg(short = 'n', long = "numa")]
    pub numa: bool,
    /// Domains to list (names or domids); all when none.
    pub domains: Vec<String>,
}

/// Runs `list`.
///
/// # Errors
/// When domusd is unreachable or a named domain does not exist.
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let c = api::client();
    let all = api::named_or_all(&c, &args.domains)?;
    if args.long {
        println!("{}", output::list_long(&all));
        return Ok(());
    }
    if args.json {
        println!("{}", output::list_json(&all));
        return Ok(());
    }
    let cols = ListColumns {
        verbose: args.verbose,
        context: args.context,
        cpupool: args.cpupool,
        numa: args.numa,
    };
    let mut out = output::list_header(cols);
    out.push('\n');
    for d in &all {
        out.push_str(&output::list_row(d, cols));
        out.push('\n');
    }
    print!("{out}");
    Ok(())
}
