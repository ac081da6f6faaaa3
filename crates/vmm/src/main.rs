//! `domus-vmm`: run one domain on KVM in the foreground until the guest stops.
//!
//! ```text
//! domus-vmm (--config FILE [KEY=VALUE ...] | --config-json FILE | --spec-json FILE)
//!           [--console stdio|pty|unix:PATH] [--control PATH] [--paused]
//! ```
//! domusd starts it with `--spec-json` (a `domus_spec::VmSpec` whose resources are inherited descriptors);
//! the other forms run one domain without a daemon and go through the same spec conversion.
//! Exit status: 0 guest powered off, 2 rebooted, 3 crashed, 1 VMM or configuration error; the last stderr
//! line names the reason. See the library docs (`domus_vmm`) for the machine and the control protocol.

#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use domus_vmm::config::{Source, VmConfig};
use domus_vmm::console::ConsoleMode;
use domus_vmm::machine::sockets::OwnedSocket as SocketPath;
use domus_vmm::machine::{self, MachineOptions, Opened};
use domus_vmm::sandbox::{self, Sandbox};

const USAGE: &str = "usage: domus-vmm (--config FILE [KEY=VALUE ...] | --config-json FILE | --spec-json FILE) \
[--console stdio|pty|unix:PATH] [--control PATH] [--paused] [--sandbox | --no-sandbox]

Runs one Domus domain on KVM in the foreground until the guest stops.
Exit status: 0 powered off, 2 rebooted, 3 crashed, 1 VMM or configuration error.

  --config FILE         xl.cfg domain configuration; KEY=VALUE arguments are appended as lines
                        (bootloader = \"pygrub\" runs the sandboxed domus-bootloader over the first disk;
                        needs root)
  --config-json FILE    domain configuration as JSON (`domus create -N` output)
  --spec-json FILE      resolved VM specification as domusd writes it (resources may be inherited fds)
  --console MODE        stdio (default), pty, or unix:PATH (any number of clients, with backlog)
  --control PATH        control socket (newline-delimited JSON; see the crate docs)
  --paused              build the domain but keep its vCPUs paused until the control socket's resume
  --sandbox             lock the VMM in (root only): empty root, own mount/IPC/UTS/network
                        namespaces, uid/gid 65534 (--jail-uid/--jail-gid N), no capabilities,
                        NoNewPrivs, per-thread seccomp filters (console pty is not available)
  --no-sandbox          run unconfined even when started sandboxed (debugging; logged loudly)
  -h, --help            this text
  -V, --version         version";

/// Command-line arguments. Hand-parsed: a VMM runs once per domain, and an argument
/// parser's resident code is a measurable part of its footprint (BENCHMARKS.md).
#[derive(Debug, Default)]
struct Args {
    config: Option<PathBuf>,
    overrides: Vec<String>,
    config_json: Option<PathBuf>,
    spec_json: Option<PathBuf>,
    console: Option<ConsoleMode>,
    control: Option<PathBuf>,
    /// Start with the vCPUs paused (`xl create -p`).
    paused: bool,
    /// Hidden: KVM device node (tests simulate a missing or forbidden /dev/kvm); env DOMUS_KVM_DEVICE.
    kvm_device: Option<PathBuf>,
    /// Hidden: seconds to keep the control socket open after the stop, waiting for ack-outcome.
    outcome_linger_s: Option<u64>,
    /// Hidden: where to keep the outcome once the guest stopped (domusd passes it).
    outcome_file: Option<PathBuf>,
    /// Hidden: boot a kernel without a config file (tests, benchmarks).
    kernel: Option<PathBuf>,
    ramdisk: Option<PathBuf>,
    cmdline: Option<String>,
    memory: Option<u64>,
    vcpus: Option<u32>,
    maxvcpus: Option<u32>,
    name: Option<String>,
    /// Hidden: restore from this snapshot image instead of booting (domusd passes `restore_fd` in
    /// the spec instead).
    restore: Option<PathBuf>,
    /// Standalone sandbox (`--sandbox`).
    sandbox: bool,
    /// Debug opt-out (`--no-sandbox`).
    no_sandbox: bool,
    /// domusd's form: the jail directory (the VMM is already in its own namespaces).
    jail: Option<PathBuf>,
    jail_uid: Option<u32>,
    jail_gid: Option<u32>,
    /// Descriptors domusd opened for the VMM.
    kvm_fd: Option<i32>,
    control_fd: Option<i32>,
    console_fd: Option<i32>,
    outcome_fd: Option<i32>,
    /// Hidden test hook: this many ms after locking in, a thread makes a call every filter denies
    /// (socket(AF_INET)), so tests see a real seccomp kill of a running VMM.
    test_denied_call_after_ms: Option<u64>,
}

/// What `main` should do.
enum Parsed {
    Run(Box<Args>),
    Print(String),
}

fn parse_args(argv: impl IntoIterator<Item = String>) -> anyhow::Result<Parsed> {
    let mut a = Args::default();
    let mut it = argv.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> anyhow::Result<String> {
            match inline.clone().or_else(|| it.next()) {
                Some(v) => Ok(v),
                None => bail!("{flag} needs a value (see --help)"),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Print(USAGE.to_owned())),
            "-V" | "--version" => {
                return Ok(Parsed::Print(format!(
                    "domus-vmm {}",
                    env!("CARGO_PKG_VERSION")
                )))
            }
            "--config" => a.config = Some(value()?.into()),
            "--config-json" => a.config_json = Some(value()?.into()),
            "--spec-json" => a.spec_json = Some(value()?.into()),
            "--console" => a.console = Some(value()?.parse()?),
            "--control" => a.control = Some(value()?.into()),
            "--paused" => a.paused = true,
            "--kvm-device" => a.kvm_device = Some(value()?.into()),
            "--outcome-linger-s" => {
                a.outcome_linger_s = Some(value()?.parse().context("--outcome-linger-s")?)
            }
            "--outcome-file" => a.outcome_file = Some(value()?.into()),
            "--kernel" => a.kernel = Some(value()?.into()),
            "--ramdisk" => a.ramdisk = Some(value()?.into()),
            "--cmdline" => a.cmdline = Some(value()?),
            "--memory" => a.memory = Some(value()?.parse().context("--memory takes MiB")?),
            "--vcpus" => a.vcpus = Some(value()?.parse().context("--vcpus takes a number")?),
            "--maxvcpus" => {
                a.maxvcpus = Some(value()?.parse().context("--maxvcpus takes a number")?);
            }
            "--name" => a.name = Some(value()?),
            "--restore" => a.restore = Some(value()?.into()),
            "--sandbox" => a.sandbox = true,
            "--no-sandbox" => a.no_sandbox = true,
            "--jail" => a.jail = Some(value()?.into()),
            "--jail-uid" => a.jail_uid = Some(value()?.parse().context("--jail-uid")?),
            "--jail-gid" => a.jail_gid = Some(value()?.parse().context("--jail-gid")?),
            "--kvm-fd" => a.kvm_fd = Some(value()?.parse().context("--kvm-fd")?),
            "--control-fd" => a.control_fd = Some(value()?.parse().context("--control-fd")?),
            "--console-fd" => a.console_fd = Some(value()?.parse().context("--console-fd")?),
            "--outcome-fd" => a.outcome_fd = Some(value()?.parse().context("--outcome-fd")?),
            "--test-denied-call-after-ms" => {
                a.test_denied_call_after_ms = Some(value()?.parse().context("--test-denied-call-after-ms")?)
            }
            f if f.starts_with('-') => bail!("unknown option {f} (see --help)"),
            _ if a.config.is_some() && arg.contains('=') => a.overrides.push(arg),
            _ => bail!(
                "unexpected argument {arg:?} (KEY=VALUE overrides follow --config FILE) (see --help)"
            ),
        }
    }
    let sources = [
        a.config.is_some(),
        a.config_json.is_some(),
        a.spec_json.is_some(),
        a.kernel.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() > 1 {
        bail!("give only one of --config, --config-json and --spec-json (see --help)");
    }
    if a.sandbox && a.no_sandbox {
        bail!("give only one of --sandbox and --no-sandbox");
    }
    Ok(Parsed::Run(Box::new(a)))
}

fn load_config(args: &Args) -> anyhow::Result<VmConfig> {
    if let Some(path) = &args.spec_json {
        return Ok(VmConfig::load_spec(path)?);
    }
    if let Some(path) = &args.config_json {
        return Ok(VmConfig::load_json(path)?);
    }
    if let Some(path) = &args.config {
        return Ok(VmConfig::load_xl(path, &args.overrides)?);
    }
    if let Some(kernel) = &args.kernel {
        return Ok(VmConfig {
            name: args.name.clone().unwrap_or_else(|| "domain".to_owned()),
            kernel: Source::path(kernel.clone()),
            ramdisk: args.ramdisk.clone().map(Source::path),
            cmdline: args.cmdline.clone().unwrap_or_default(),
            memory_mib: args.memory.unwrap_or(128),
            vcpus: args.vcpus.unwrap_or(1),
            max_vcpus: args.maxvcpus.or(args.vcpus).unwrap_or(1),
            disks: Vec::new(),
            rng: Some(domus_spec::RngSpec::default()),
            nics: Vec::new(),
            balloon: None,
            vcpu_affinity: Vec::new(),
            restore: None,
            restore_ready: None,
            lock_disks_at_start: false,
        });
    }
    bail!("no domain given: use --config FILE, --config-json FILE or --spec-json FILE")
}

/// Takes over inherited descriptor `fd` named by `flag`.
fn inherited(flag: &str, fd: i32) -> anyhow::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    if fd <= 2 || !domus_vmm::sys::fd_is_open(fd) {
        bail!("{flag} {fd}: not an open inherited descriptor");
    }
    // SAFETY: `fd` is open (checked) and was handed to this process for this one use; nothing else in
    // the process refers to it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Whether and how this run is locked in.
fn sandbox_of(args: &Args) -> anyhow::Result<Option<Sandbox>> {
    let uid = args.jail_uid.unwrap_or(sandbox::STANDALONE_ID);
    let gid = args.jail_gid.unwrap_or(sandbox::STANDALONE_ID);
    if args.no_sandbox {
        if args.jail.is_some() || args.sandbox {
            tracing::warn!(
                "SANDBOX DISABLED (--no-sandbox): this VMM runs with its launcher's privileges, \
                 namespaces and files; a guest that escapes into it owns the host"
            );
        }
        return Ok(None);
    }
    if let Some(root) = &args.jail {
        return Ok(Some(Sandbox {
            root: root.clone(),
            uid,
            gid,
            unshare: false,
        }));
    }
    if args.sandbox {
        if domus_sandbox::sys::ids().0 != 0 {
            bail!("--sandbox needs root (it unshares namespaces, pivots the root and changes uid); run without it as a non-root user");
        }
        if matches!(args.console, Some(ConsoleMode::Pty)) {
            bail!("--console pty is not available with --sandbox (use stdio or unix:PATH)");
        }
        return Ok(Some(Sandbox {
            root: PathBuf::from(sandbox::STANDALONE_JAIL),
            uid,
            gid,
            unshare: true,
        }));
    }
    Ok(None)
}

fn run(args: &Args) -> anyhow::Result<u8> {
    let mut cfg = load_config(args)?;
    if let Some(p) = &args.restore {
        cfg.restore = Some(
            std::fs::File::open(p).with_context(|| format!("cannot open image {}", p.display()))?,
        );
    }
    let kvm_path = args
        .kvm_device
        .clone()
        .or_else(|| std::env::var_os("DOMUS_KVM_DEVICE").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(domus_vmm::vstate::kvm::DEFAULT_KVM_PATH));
    let sandbox = sandbox_of(args)?;
    let mut opened = Opened::default();
    if let Some(fd) = args.kvm_fd {
        opened.kvm = Some(inherited("--kvm-fd", fd)?.into());
    }
    if let Some(fd) = args.control_fd {
        opened.control = Some(inherited("--control-fd", fd)?.into());
    }
    if let Some(fd) = args.console_fd {
        opened.console = Some(inherited("--console-fd", fd)?.into());
    }
    if let Some(fd) = args.outcome_fd {
        opened.outcome = Some(inherited("--outcome-fd", fd)?.into());
    }
    if let Some(sb) = &sandbox {
        // Everything a locked-in VMM cannot open itself is opened now.
        opened.host_is_pvm = Some(domus_vmm::vstate::kvm::is_pvm());
        for src in std::iter::once(&mut cfg.kernel).chain(cfg.ramdisk.as_mut()) {
            if src.file.is_none() {
                src.file = Some(
                    std::fs::File::open(&src.path)
                        .with_context(|| format!("opening {}", src.path.display()))?,
                );
            }
        }
        for nic in &mut cfg.nics {
            if nic.fd.is_none() {
                nic.fd = Some(domus_vmm::devices::virtio::net::open_tap(nic)?.into_fd());
            }
        }
        if opened.kvm.is_none() {
            opened.kvm = Some(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&kvm_path)
                    .with_context(|| format!("opening {}", kvm_path.display()))?,
            );
        }
        if opened.control.is_none() {
            if let Some(p) = &args.control {
                opened.control = Some(SocketPath::bind(p, "control")?.keep_path()?);
            }
        }
        if let (None, Some(ConsoleMode::Unix(p))) = (&opened.console, &args.console) {
            opened.console = Some(SocketPath::bind(p, "console")?.keep_path()?);
        }
        if let (None, Some(p)) = (&opened.outcome, &args.outcome_file) {
            opened.outcome = Some(
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(p)
                    .with_context(|| format!("opening {}", p.display()))?,
            );
        }
        sb.lock_in().context("cannot lock the VMM in its sandbox")?;
        tracing::info!(root = %sb.root.display(), uid = sb.uid, gid = sb.gid, "sandboxed");
        if let Some(ms) = args.test_denied_call_after_ms {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(ms));
                // Denied by every filter: the kernel kills the whole VMM with SIGSYS here.
                let _ = std::net::TcpListener::bind("127.0.0.1:0");
            });
        }
    }
    let opts = MachineOptions {
        console: args.console.clone().unwrap_or(ConsoleMode::Stdio),
        control: args.control.clone(),
        kvm_path,
        outcome_linger: Duration::from_secs(args.outcome_linger_s.unwrap_or(60)),
        start_paused: args.paused,
        outcome_file: args.outcome_file.clone(),
        // The binary, not the library, reads the environment.
        io_uring: std::env::var_os("DOMUS_VMM_NO_IO_URING").is_none(),
        dirty_ring: std::env::var_os("DOMUS_VMM_DIRTY_BITMAP").is_none_or(|v| v != "1"),
        opened,
    };
    let _span = tracing::info_span!("domain", domname = %cfg.name).entered();
    let outcome =
        machine::run(&cfg, opts).with_context(|| format!("cannot run domain {}", cfg.name))?;
    eprintln!("domus-vmm: domain {}: {outcome}", cfg.name);
    Ok(outcome.exit_code())
}

fn main() -> ExitCode {
    // Files and sockets get the modes this program gives them, whatever umask it inherited: owner only.
    // SAFETY: umask(2) only sets this process's file mode creation mask; it cannot fail.
    unsafe { libc::umask(0o077) };
    // A plain level from RUST_LOG (error|warn|info|debug|trace; default warn): the full EnvFilter
    // directive language is not worth its resident code in a process that runs per domain.
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::WARN);
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .init();
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(a)) => a,
        Ok(Parsed::Print(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("domus-vmm: error: {e:#}");
            return ExitCode::from(1);
        }
    };
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("domus-vmm: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> anyhow::Result<Args> {
        match parse_args(v.iter().map(|s| (*s).to_owned()))? {
            Parsed::Run(a) => Ok(*a),
            Parsed::Print(_) => anyhow::bail!("printed"),
        }
    }

    #[test]
    fn command_lines() {
        let a = parse(&[
            "--config",
            "x.cfg",
            "vcpus=2",
            "memory=64",
            "--console",
            "unix:/tmp/c",
            "--control=/tmp/k",
        ])
        .unwrap();
        assert_eq!(a.config, Some(PathBuf::from("x.cfg")));
        assert_eq!(a.overrides, ["vcpus=2", "memory=64"]);
        assert_eq!(a.console, Some(ConsoleMode::Unix("/tmp/c".into())));
        assert_eq!(a.control, Some(PathBuf::from("/tmp/k")));
        let a = parse(&["--config-json", "d.json"]).unwrap();
        assert_eq!(a.config_json, Some(PathBuf::from("d.json")));
        let a = parse(&["--spec-json", "s.json"]).unwrap();
        assert_eq!(a.spec_json, Some(PathBuf::from("s.json")));
        assert!(parse(&["--spec-json", "a", "--config-json", "b"]).is_err());
        assert!(parse(&["--config", "a", "--config-json", "b"]).is_err());
        assert!(parse(&["--console", "tcp:1"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["vcpus=2"]).is_err());
        assert!(parse(&["--control"]).is_err());
        assert!(parse(&["--memory", "lots"]).is_err());
    }
}
