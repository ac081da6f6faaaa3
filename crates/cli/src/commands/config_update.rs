//! `xl config-update DOMAIN CONFIG [KEY=VALUE ...]`: replace the configuration a running domain uses from
//! its next restart (its name and uuid are kept).

use std::path::PathBuf;

use clap::Args as ClapArgs;
use domus_api::messages::ConfigUpdateRequest;

use super::{create, Ctx};
use crate::api;

/// Options of `config-update`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The domain (name or domid).
    pub domain: String,
    /// The new config file, then KEY=VALUE overrides.
    #[arg(required = true)]
    pub args: Vec<String>,
}

/// Runs `config-update`.
///
/// # Errors
/// Config errors (located), or as the API reports.
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let mut load_args = create::Args::for_file(PathBuf::from(&args.args[0]));
    load_args.args = args.args[1..].to_vec();
    let config = create::load(&load_args)?;
    let config = api::prepare_config(config)?;
    api::client().action(
        &args.domain,
        "config-update",
        Some(&ConfigUpdateRequest { config }),
    )?;
    eprintln!(
        "WARNING: the new configuration applies when domain {} next restarts (reboot).",
        args.domain
    );
    Ok(())
}
