//! `create [-N] CONFIG [KEY=VALUE ...]`: parse a domain config (plus overrides, appended as config lines
//! as xl does) and have domusd create the domain (domusd checks it against the host first). With `-N`
//! (or the global `-N`), print the resulting configuration on stdout instead, generated values (uuid,
//! MACs) filled in — as libxl's JSON with `"domid": null`, as xl prints it (`--json`: Domus's own
//! configuration JSON, what domusd is sent) — then run the same check domusd runs
//! (`domus_spec::prepare`): a config domusd would refuse exits 1 with every problem, located.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use domus_api::messages::{DomainState, ShutdownReason};
use domus_config::DomainConfig;

use super::Ctx;

/// Directories searched for a config given by bare name that is not in the current directory.
const CONFIG_DIRS: [&str; 2] = ["/etc/domus", "/etc/xen"];

/// Arguments of `create`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dry run: print the resulting configuration as libxl's JSON (as xl does) and create nothing.
    #[arg(short = 'N', short_alias = 'n', long = "dryrun")]
    pub dry_run: bool,
    /// With -N: print Domus's own configuration JSON (what domusd is sent) instead of libxl's.
    #[arg(long = "json")]
    pub json: bool,
    /// Attach to the domain's console once it is created.
    #[arg(short = 'c')]
    pub console: bool,
    /// Leave the domain paused after it is created.
    #[arg(short = 'p')]
    pub paused: bool,
    /// Quiet: no "Parsing config from ..." line.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Stay in the foreground until the domain is gone, printing xl's monitor lines (xl's -F).
    #[arg(short = 'F')]
    pub foreground: bool,
    /// Do not wait for the domain's death (xl's -e): the CLI never does; domusd supervises the domain.
    #[arg(short = 'e')]
    pub no_wait: bool,
    /// Debug messages (xl's -d): as the global -vv.
    #[arg(short = 'd')]
    pub debug: bool,
    /// The config file (xl's -f form; then every positional argument is a KEY=VALUE override).
    #[arg(short = 'f', long = "defconfig", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// The config file, then KEY=VALUE lines appended to it (e.g. memory=256 'name="web2"').
    #[arg(value_name = "CONFIG | KEY=VALUE")]
    pub args: Vec<String>,
}

impl Args {
    /// Arguments that load `file` with no overrides and no output besides errors.
    pub fn for_file(file: PathBuf) -> Self {
        Args {
            dry_run: false,
            json: false,
            console: false,
            paused: false,
            quiet: true,
            foreground: false,
            no_wait: false,
            debug: false,
            config_file: Some(file),
            args: Vec::new(),
        }
    }
}

/// Where a config named without a directory is looked for (after the current directory).
fn search_dirs() -> Vec<PathBuf> {
    std::env::var_os("DOMUS_CONFIG_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain(CONFIG_DIRS.iter().map(PathBuf::from))
        .collect()
}

/// Finds the config file: as given, else (for a bare name) in /etc/domus, then /etc/xen, as xm did.
fn locate(path: &Path) -> PathBuf {
    if path.exists() || path.components().count() != 1 {
        return path.to_path_buf();
    }
    for dir in search_dirs() {
        let candidate = dir.join(path);
        if candidate.is_file() {
            return candidate;
        }
    }
    path.to_path_buf()
}

/// Parses the config named by `args` and its overrides.
///
/// # Errors
/// No config file named, the file unreadable, or the config invalid (a located error).
pub fn load(args: &Args) -> anyhow::Result<DomainConfig> {
    let mut positional = args.args.iter();
    let given = match &args.config_file {
        Some(file) => file.clone(),
        None => match positional.next() {
            Some(first) if !first.contains('=') => PathBuf::from(first),
            _ => bail!("no config file given: expected `create [-N] CONFIG [KEY=VALUE ...]`"),
        },
    };
    let overrides: Vec<String> = positional.cloned().collect();
    let path = locate(&given);
    let shown = path.display().to_string();
    if !args.quiet {
        eprintln!("Parsing config from {shown}");
    }
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        // A bare name found nowhere: say where it was looked for.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && given.components().count() == 1 => {
            let dirs: Vec<String> = search_dirs()
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            bail!(
                "cannot read config file {shown}: {e} (looked in the current directory, then {})",
                dirs.join(", ")
            );
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read config file {shown}"));
        }
    };
    let config = DomainConfig::from_xl(&shown, &text, &overrides)?;
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(config)
}

/// Runs `create`.
///
/// # Errors
/// As [`load`]; without `-N`, that domain creation is not available yet.
pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let mut config = load(&args)?;
    if args.dry_run || ctx.dry_run {
        resolve_nics(&mut config);
        if args.json {
            let json =
                serde_json::to_string_pretty(&config).context("serialising the configuration")?;
            println!("{json}");
        } else {
            // xl's printf_info: one {"domid": null, "config": {...}} object.
            println!(
                "{}",
                crate::libxl_json::to_string(&crate::libxl_json::domain(None, &config))
            );
        }
        let resolved = crate::api::prepare_config(config)?;
        let prepared = domus_spec::prepare(&resolved, &domus_spec::HostLimits::probe())
            .map_err(|e| refusal(&resolved.name, &e))?;
        // With `bootloader = "pygrub"`, the conversion ran it (sandboxed): what it chose.
        for line in &prepared.boot {
            eprintln!("{line}");
        }
        eprintln!("{}", prepared.spec.boot_line());
        return Ok(());
    }
    tracing::debug!(prog = ctx.prog.name(), domname = %config.name, console = args.console, paused = args.paused, "create requested");
    create_domain(&args, config)
}

/// Fills each vif's script, bridge and gateway device from the global defaults (`/etc/domus/xl.conf`,
/// then `/etc/xen/xl.conf`, else xl's `vif-bridge` and `xenbr0`), as domusd records them, so `-N`
/// shows the nics a create would get.
fn resolve_nics(config: &mut domus_config::DomainConfig) {
    let d = domus_net::globalconf::NetDefaults::load().unwrap_or_default();
    for v in &mut config.vifs {
        let script = v.script.get_or_insert_with(|| d.script.clone());
        if !matches!(script.as_str(), "vif-route" | "vif-nat") && v.bridge.is_none() {
            v.bridge = Some(d.bridge.clone());
        }
        if v.gatewaydev.is_none() {
            v.gatewaydev.clone_from(&d.gatewaydev);
        }
    }
}

/// The error for a config the spec conversion refuses: every problem on its own line.
fn refusal(name: &str, e: &domus_spec::SpecErrors) -> anyhow::Error {
    let detail: String = match e.0.as_slice() {
        [one] => format!(" {one}"),
        many => many.iter().map(|m| format!("\n  {m}")).collect(),
    };
    anyhow::anyhow!("cannot start domain '{name}':{detail}")
}

/// Sends the parsed config to domusd, then attaches the console (`-c`) or waits for the end (`-F`).
fn create_domain(args: &Args, config: DomainConfig) -> anyhow::Result<()> {
    let config = crate::api::prepare_config(config)?;
    let client = crate::api::client();
    let d = client.create(&domus_api::messages::CreateRequest {
        config,
        paused: args.paused,
    })?;
    for line in &d.boot {
        eprintln!("{line}");
    }
    tracing::info!(domid = d.domid, domname = %d.name, "domain created");
    if args.console {
        if let Some(path) = &d.console_path {
            super::console::attach(Path::new(path))?;
        }
    } else if args.foreground {
        follow(&client, d.domid, &d.name)?;
    }
    Ok(())
}

/// `-F`: stays until the domain is gone, printing xl's monitor lines; a restart (same name, new domid)
/// is followed as xl follows it.
fn follow(c: &domus_api::client::ApiClient, first: u32, name: &str) -> anyhow::Result<()> {
    let mut domid = first;
    loop {
        eprintln!(
            "Waiting for domain {name} (domid {domid}) to die [pid {}]",
            std::process::id()
        );
        let next = loop {
            match c.get(&domid.to_string()) {
                Ok(d) if matches!(d.state, DomainState::Shutdown | DomainState::Crashed) => {
                    let code = d.shutdown_reason.map_or(0, ShutdownReason::code);
                    eprintln!("Domain {domid} has shut down, reason code {code} 0x{code:x}");
                    eprintln!("Done. Exiting now");
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) if e.is_not_found() => break c.get(name).ok().filter(|d| d.domid != domid),
                Err(e) => return Err(e.into()),
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        match next {
            Some(d) => {
                eprintln!("Done. Rebooting now");
                domid = d.domid;
            }
            None => {
                eprintln!("Domain {domid} has been destroyed.");
                return Ok(());
            }
        }
    }
}
