//! `domusd`: the Domus supervisor daemon. Parses flags, sets up logging, and runs the supervisor in
//! `daemon/` in the foreground (systemd's `Type=simple`; see dist/systemd/domusd.service).
//!
//! Running domains never depend on this process: each domain's domus-vmm runs in its own session, and a
//! restarted domusd re-adopts them from `$DOMUS_STATE_DIR/domains/`.

mod daemon;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use domus_api::paths::Paths;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

use daemon::{dmesg::DmesgRing, server, store::XenStore, Daemon, Options};

/// Command line of domusd. Every path flag overrides the matching DOMUS_* variable.
#[derive(Debug, Parser)]
#[command(name = "domusd", version, about = "Domus supervisor daemon")]
struct Args {
    /// Stay in the foreground (domusd never daemonizes itself; accepted for xl/xenstored habits).
    #[arg(short = 'F', long)]
    foreground: bool,
    /// Runtime directory (sockets) [env DOMUS_RUNTIME_DIR, default /run/domus].
    #[arg(long)]
    runtime_dir: Option<PathBuf>,
    /// State directory (domain records, store journal) [env DOMUS_STATE_DIR, default /var/lib/domus].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Log directory (console logs) [env DOMUS_LOG_DIR, default /var/log/domus].
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Config directory [env DOMUS_CONFIG_DIR, default /etc/domus then /etc/xen].
    #[arg(long)]
    config_dir: Option<PathBuf>,
    /// The domus-vmm binary [env DOMUS_VMM, default: next to domusd].
    #[arg(long)]
    vmm: Option<PathBuf>,
    /// The domus-bootloader helper (pygrub) [env DOMUS_BOOTLOADER, default: next to domusd].
    #[arg(long)]
    bootloader: Option<PathBuf>,
    /// Milliseconds between state polls of a VMM while its domain is changing (created, shut down, ...).
    #[arg(long, default_value_t = 100)]
    poll_ms: u64,
    /// Milliseconds between state polls of a VMM otherwise (bounds how late a guest's own poweroff or crash
    /// is noticed).
    #[arg(long, default_value_t = 1000)]
    idle_poll_ms: u64,
    /// Console log size (bytes) before rotation.
    #[arg(long, default_value_t = 1024 * 1024)]
    console_log_max_bytes: u64,
    /// Memory (MiB) kept for the host: a domain starts only if it, every running domain and this fit the
    /// host's memory.
    #[arg(long, default_value_t = 512)]
    host_reserve_mib: u64,
    /// Admit domains beyond the host's memory (each such admission is logged).
    #[arg(long)]
    overcommit_memory: bool,
    /// Count admission against this much host memory (MiB) instead of /proc/meminfo's MemTotal.
    #[arg(long, hide = true)]
    host_memory_mib: Option<u64>,
    /// Restart-loop guard: at most RESTARTS on_*="restart" restarts of a domain within SECONDS; the next
    /// stop leaves it shut down (crashed) with an error in the log. `off` disables the guard.
    #[arg(long, value_name = "RESTARTS/SECONDS", default_value = "5/60")]
    restart_limit: daemon::restart_guard::RestartLimitArg,
    /// Name of the Domus parent cgroup, made inside domusd's own cgroup (v1 or v2, detected): each
    /// domain's VMM runs in a cgroup of its own under it. A domusd owns its parent: at start it
    /// removes the domain cgroups in it that none of its domains claim, so two domusds on one host
    /// need two parents [env DOMUS_CGROUP_PARENT; default: domus].
    #[arg(long)]
    cgroup_parent: Option<String>,
    /// Run domains without cgroups (no CPU weight/cap, memory or task limits).
    #[arg(long)]
    no_cgroups: bool,
    /// Start every domus-vmm unsandboxed: as root, with all capabilities, in the host's namespaces,
    /// without seccomp filters (debugging only; logged loudly) [env DOMUS_NO_SANDBOX=1].
    #[arg(long)]
    no_sandbox: bool,
    /// First uid/gid of the VMM range: domain D's VMM runs as uid and gid BASE + D
    /// [env DOMUS_VMM_UID_BASE, default 200000].
    #[arg(long, value_name = "BASE")]
    vmm_uid_base: Option<u32>,
    /// Let sandboxed VMMs leave core files (they contain guest memory) [env DOMUS_VMM_CORE_DUMPS=1].
    #[arg(long)]
    vmm_core_dumps: bool,
    /// Group (name or number) whose members may use the API socket (mode 0660) and read console logs
    /// [env DOMUS_GROUP, default domus]; if it does not exist, the socket is root-only (0600).
    #[arg(long, value_name = "GROUP")]
    api_group: Option<String>,
}

/// `DOMUS_*` boolean variables: set and not "0"/"false"/empty.
fn env_flag(k: &str) -> bool {
    env(k).is_some_and(|v| !matches!(v.as_str(), "" | "0" | "false" | "no"))
}

/// How VMMs are sandboxed, from flags and environment.
fn sandbox_settings(args: &Args) -> anyhow::Result<Option<daemon::jail::SandboxSettings>> {
    if args.no_sandbox || env_flag("DOMUS_NO_SANDBOX") {
        tracing::warn!(
            "VMM SANDBOX DISABLED (--no-sandbox / DOMUS_NO_SANDBOX): every domus-vmm runs as root with \
             all capabilities in the host's namespaces and without seccomp filters; a guest that \
             escapes into its VMM owns this host. Use this for debugging only."
        );
        return Ok(None);
    }
    let uid_base = match args.vmm_uid_base {
        Some(b) => b,
        None => match env("DOMUS_VMM_UID_BASE") {
            Some(v) => v
                .parse()
                .with_context(|| format!("DOMUS_VMM_UID_BASE={v:?} is not a uid"))?,
            None => daemon::jail::DEFAULT_UID_BASE,
        },
    };
    if uid_base == 0 {
        anyhow::bail!("the VMM uid base must not be 0 (VMMs never run as root)");
    }
    Ok(Some(daemon::jail::SandboxSettings {
        uid_base,
        core_dumps: args.vmm_core_dumps || env_flag("DOMUS_VMM_CORE_DUMPS"),
    }))
}

/// The Domus parent cgroup's name: one directory name (it is made inside domusd's own cgroup).
fn cgroup_parent(args: &Args) -> anyhow::Result<String> {
    let name = args
        .cgroup_parent
        .clone()
        .or_else(|| env("DOMUS_CGROUP_PARENT"))
        .unwrap_or_else(|| "domus".to_owned());
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        anyhow::bail!(
            "--cgroup-parent / DOMUS_CGROUP_PARENT {name:?}: must be one directory name (no '/', not '.' or '..')"
        );
    }
    Ok(name)
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

fn options(args: &Args) -> anyhow::Result<Options> {
    let mut paths = Paths::from_lookup(env);
    if let Some(d) = &args.runtime_dir {
        paths.runtime_dir.clone_from(d);
    }
    if let Some(d) = &args.state_dir {
        paths.state_dir.clone_from(d);
    }
    if let Some(d) = &args.log_dir {
        paths.log_dir.clone_from(d);
    }
    if let Some(d) = &args.config_dir {
        paths.config_dirs = vec![d.clone()];
    }
    let vmm_exe = match args
        .vmm
        .clone()
        .or_else(|| env("DOMUS_VMM").map(PathBuf::from))
    {
        Some(p) => p,
        None => {
            // Next to domusd (a build tree), else ../bin/ (the package: /usr/sbin/domusd, /usr/bin/domus-vmm).
            let exe = std::env::current_exe().context("locating domusd's own binary")?;
            let sibling = exe.with_file_name("domus-vmm");
            let bin = exe
                .parent()
                .and_then(|d| d.parent())
                .map(|d| d.join("bin/domus-vmm"));
            match bin {
                Some(b) if !sibling.is_file() && b.is_file() => b,
                _ => sibling,
            }
        }
    };
    Ok(Options {
        paths,
        vmm_exe,
        bootloader_exe: args
            .bootloader
            .clone()
            .or_else(|| env("DOMUS_BOOTLOADER").map(PathBuf::from)),
        poll_interval: Duration::from_millis(args.poll_ms.max(1)),
        idle_poll_interval: Duration::from_millis(args.idle_poll_ms.max(args.poll_ms).max(1)),
        console_log_max_bytes: args.console_log_max_bytes.max(4096),
        start_timeout: Duration::from_secs(30),
        destroy_timeout: Duration::from_secs(5),
        host_reserve_mib: args.host_reserve_mib,
        overcommit: args.overcommit_memory,
        host_memory_mib: args.host_memory_mib,
        restart_limit: args.restart_limit.0,
        cgroup_parent: if args.no_cgroups {
            None
        } else {
            Some(cgroup_parent(args)?)
        },
        sandbox: sandbox_settings(args)?,
    })
}

fn run(args: &Args, ring: DmesgRing) -> anyhow::Result<()> {
    let opts = options(args)?;
    // State, records and journal 0700/0600; runtime and log directories 0750 (files in them 0600,
    // sockets root-only): set explicitly, whatever the directories were before.
    let console_dir = opts.paths.log_dir.join("console");
    for (d, mode) in [
        (&opts.paths.runtime_dir, 0o750),
        (&opts.paths.state_dir, 0o700),
        (&opts.paths.log_dir, 0o750),
        (&console_dir, 0o750),
    ] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("restricting {}", d.display()))?;
    }
    // The door (daemon/door.rs): members of the API group reach the API socket and read console logs.
    let group_spec = args
        .api_group
        .clone()
        .or_else(|| env("DOMUS_GROUP"))
        .unwrap_or_else(|| "domus".to_owned());
    let gid = daemon::door::resolve_group(&group_spec);
    daemon::door::set_group(gid);
    match gid {
        Some(gid) => {
            info!(group = %group_spec, gid, "API socket mode 0660 for group {group_spec}");
            for d in [&opts.paths.runtime_dir, &opts.paths.log_dir, &console_dir] {
                daemon::door::share(d, 0o750, 0o750)
                    .with_context(|| format!("giving {} to group {group_spec}", d.display()))?;
            }
        }
        None => tracing::warn!(
            group = %group_spec,
            "group {group_spec} does not exist: the API socket is root-only (0600); create the group \
             (groupadd {group_spec}) or pass --api-group to let its members use domus"
        ),
    }
    if !opts.vmm_exe.exists() {
        anyhow::bail!(
            "domus-vmm not found at {} (build the workspace, or pass --vmm PATH)",
            opts.vmm_exe.display()
        );
    }
    let listener = server::bind(&opts.paths.api_socket())?;
    let api = opts.paths.api_socket();
    let store_socket = opts.paths.xenstored_socket();
    let mut sockets = vec![store_socket.clone()];
    if opts.paths.is_default_runtime() {
        // Xen's own clients find the store at its usual path on a Domus host.
        sockets.push(PathBuf::from(domus_api::paths::XEN_XENSTORED_SOCKET));
    }
    for s in &sockets {
        if let Some(dir) = s.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        // A kill -9 leaves the socket file behind; the store binds afresh.
        let _ = std::fs::remove_file(s);
    }
    let store_state = opts.paths.state_dir.join("xenstore");
    let store_server =
        domus_store::server::spawn(domus_store::server::ServerConfig::new(store_state, sockets))
            .context("starting the store")?;
    info!(socket = %store_socket.display(), "store serving");
    let daemon = Daemon::new(opts, Box::new(XenStore::new(store_socket.clone())), ring)?;
    daemon.publish_host();
    daemon.recover().context("re-adopting domains")?;
    daemon::control_watch::spawn(daemon.clone(), store_socket)
        .context("starting the control/shutdown watcher")?;
    // SIGTERM/SIGINT (systemctl stop/restart): stop the store cleanly (journal synced) and leave every
    // guest running; the next domusd re-adopts them.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .context("installing signal handlers")?;
    let api_for_exit = api.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                info!(signal = sig, "stopping domusd; domains keep running");
                if let Err(e) = store_server.shutdown() {
                    error!("stopping the store: {e:#}");
                }
                let _ = std::fs::remove_file(&api_for_exit);
                std::process::exit(0);
            }
        })
        .context("starting the signal thread")?;
    info!(socket = %api.display(), "domusd ready");
    server::serve(&daemon, &listener);
    Ok(())
}

/// Hidden: `domusd --generate-man FILE` writes domusd(8) from this command line's definition (the
/// packaging script runs it, so the page lists every flag).
fn generate_man(path: &std::path::Path) -> std::io::Result<()> {
    use clap::CommandFactory;
    let mut buf = Vec::new();
    clap_mangen::Man::new(Args::command())
        .section("8")
        .render(&mut buf)?;
    std::fs::write(path, buf)
}

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.len() == 3 && argv[1] == "--generate-man" {
        return match generate_man(std::path::Path::new(&argv[2])) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("domusd --generate-man: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // Every file and socket gets the mode domusd gives it, whatever umask it inherited: nothing it
    // creates is readable or writable by group or others unless a mode above says so.
    // SAFETY: umask(2) only sets this process's file mode creation mask; it cannot fail.
    unsafe { libc::umask(0o077) };
    let args = Args::parse();
    let ring = DmesgRing::default();
    tracing_subscriber::fmt()
        .with_env_filter(
            // netlink-packet-route warns about every kernel attribute newer than itself.
            EnvFilter::try_from_env("DOMUS_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info,netlink_packet_route=error")),
        )
        .with_ansi(false)
        .with_writer(ring.clone())
        .init();
    match run(&args, ring) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent_of(argv: &[&str]) -> anyhow::Result<String> {
        cgroup_parent(&Args::try_parse_from(argv).unwrap())
    }

    #[test]
    fn cgroup_parent_is_one_directory_name() {
        assert_eq!(
            parent_of(&["domusd", "--cgroup-parent", "dx"]).unwrap(),
            "dx"
        );
        for bad in ["", ".", "..", "a/b", "/domus"] {
            let err = parent_of(&["domusd", "--cgroup-parent", bad]).unwrap_err();
            assert!(
                err.to_string().contains("--cgroup-parent"),
                "{bad:?}: {err}"
            );
        }
    }
}
