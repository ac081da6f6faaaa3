//! `xl vm-list`: UUID, domid and name of every domain (Domain-0 included, as libxl's `libxl_list_vm`
//! returns it), in xl's columns.

use clap::Args as ClapArgs;

use super::Ctx;
use crate::{api, output};

/// `vm-list` takes no options.
#[derive(Debug, ClapArgs)]
pub struct Args {}

/// Runs `vm-list`.
///
/// # Errors
/// When domusd is unreachable.
pub fn run(_ctx: &Ctx, _args: Args) -> anyhow::Result<()> {
    let all = api::client().list()?;
    print!("{}", output::vm_list(&all));
    Ok(())
}
