//! `xl list [-l] [-v] [DOMAIN...]`: the domains in xl's columns, Domain-0 first; `-l` prints JSON.

use clap::Args as ClapArgs;

use super::Ctx;
use crate::{api, output};

/// Options of `list`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Long output: JSON with each domain's configuration.
    #[arg(short = 'l', long = "long")]
    pub long: bool,
    /// Verbose: add UUID and shutdown reason code.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    /// Also show security labels (there are none: printed as "-").
    #[arg(short = 'Z', long = "context")]
    pub context: bool,
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
    let verbose = args.verbose || args.context;
    let mut out = output::list_header(verbose);
    out.push('\n');
    for d in &all {
        out.push_str(&output::list_row(d, verbose));
        out.push('\n');
    }
    print!("{out}");
    Ok(())
}
