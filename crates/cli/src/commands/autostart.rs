//! `domus autostart`: create every domain configured in `$DOMUS_CONFIG_DIR/auto/` (default
//! `/etc/domus/auto/`) that is not already running, as Xen's xendomains script does at host boot.
//! `domus shutdown -a -w` is its counterpart at host shutdown (see dist/systemd/domus-autostart.service).

use std::path::PathBuf;

use clap::Args as ClapArgs;
use domus_api::messages::CreateRequest;

use super::{create, Ctx};
use crate::api;

/// Options of `autostart`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The directory to read instead of `<config dir>/auto`.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Runs `autostart`.
///
/// # Errors
/// When the directory cannot be read, or any domain failed to start (the others still start).
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let dir = args.dir.unwrap_or_else(|| api::paths().autostart_dir());
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd.filter_map(Result::ok).map(|e| e.path()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("no autostart directory {}: nothing to start", dir.display());
            return Ok(());
        }
        Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", dir.display())),
    };
    files.retain(|p| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        p.is_file()
            && !name.starts_with('.')
            && !name.ends_with('~')
            && !name.ends_with(".dpkg-old")
    });
    files.sort();
    let c = api::client();
    let running: Vec<String> = c.list()?.into_iter().map(|d| d.name).collect();
    let mut failed = 0;
    for f in files {
        let result = (|| -> anyhow::Result<Option<(u32, String)>> {
            let config = create::load(&create::Args::for_file(f.clone()))?;
            if running.contains(&config.name) {
                eprintln!("Domain {} already running", config.name);
                return Ok(None);
            }
            let config = api::prepare_config(config)?;
            let d = c.create(&CreateRequest {
                config,
                paused: false,
            })?;
            Ok(Some((d.domid, d.name)))
        })();
        match result {
            Ok(Some((domid, name))) => println!("Started domain {name} (id={domid})"),
            Ok(None) => {}
            Err(e) => {
                eprintln!("autostart of {} failed: {e:#}", f.display());
                failed += 1;
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} domain(s) failed to start");
    }
    Ok(())
}
