//! `xl restore [-p] [-d] [-e] [CONFIG] FILE`: recreates a domain saved with `save` — same name and
//! UUID, a new domid — and lets it run on where it stopped (`-p`: paused). CONFIG names an xl config
//! file to use instead of the one embedded in the image (it must describe the same machine). A damaged,
//! truncated or foreign image is refused and nothing is created; so is a name already in use.

use anyhow::Context;
use clap::Args as ClapArgs;
use domus_api::messages::{DomainInfo, RestoreRequest};

use super::Ctx;
use crate::api;

/// Arguments of `restore`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Leave the domain paused after restoring it.
    #[arg(short = 'p')]
    pub paused: bool,
    /// Debug messages (xl's -d): as the global -vv.
    #[arg(short = 'd')]
    pub debug: bool,
    /// Do not wait for the domain's death (xl's -e): the CLI never does; domusd supervises the domain.
    #[arg(short = 'e')]
    pub no_wait: bool,
    /// `[CONFIG] FILE`: the image, optionally preceded by a config file to use instead of its own.
    #[arg(required = true, num_args = 1..=2, value_name = "[CONFIG] FILE")]
    pub args: Vec<std::path::PathBuf>,
}

/// Runs `restore`.
///
/// # Errors
/// The image unreadable or damaged, the name in use, or the VMM refusing the saved state.
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let (config_file, file) = match args.args.as_slice() {
        [file] => (None, file),
        [config, file] => (Some(config), file),
        _ => anyhow::bail!("restore takes [CONFIG] FILE"),
    };
    let path =
        std::path::absolute(file).with_context(|| format!("cannot resolve {}", file.display()))?;
    let config = match config_file {
        Some(f) => Some(api::prepare_config(super::create::load(
            &super::create::Args::for_file(f.clone()),
        )?)?),
        None => None,
    };
    let req = RestoreRequest {
        path: path.display().to_string(),
        paused: args.paused,
        config,
        incoming: false,
        passed: false,
    };
    let started = std::time::Instant::now();
    let d: DomainInfo = api::client().call("POST", "/v1/restore", Some(&req))?;
    eprintln!(
        "Restored domain {} (domid {}) from {} in {:.2} s",
        d.name,
        d.domid,
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
