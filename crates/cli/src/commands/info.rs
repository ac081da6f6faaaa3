//! `xl info [-n] [NAME]`: host facts in xl's `key : value` layout and order; `-n` adds the CPU topology,
//! device topology and NUMA tables; `NAME` prints only the values of the fields whose name starts with
//! it (xl's filter).

use clap::Args as ClapArgs;

use super::Ctx;
use crate::{api, host, output};

/// Options of `info`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Also list the host's CPU topology, device topology and NUMA nodes.
    #[arg(short = 'n', long = "numa")]
    pub numa: bool,
    /// Print only the value(s) of this field (a prefix, as xl matches it); ignored with -n.
    pub field: Option<String>,
}

/// Runs `info`.
///
/// # Errors
/// When domusd is unreachable.
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let h = api::client().host()?;
    let f = host::local_facts();
    match args.field.filter(|_| !args.numa) {
        Some(name) => print!("{}", output::info_field(&h, &f, &name)),
        None => print!("{}", output::info(&h, &f, args.numa)),
    }
    Ok(())
}
