//! `domus-vmm`: run one domain on KVM in the foreground until the guest stops.
//!
//! ```text
//! domus-vmm (--config FILE [KEY=VALUE ...] | --config-json FILE) [--console stdio|pty|unix:PATH] [--control PATH]
//! ```
//! Exit status: 0 guest powered off, 2 rebooted, 3 crashed, 1 VMM or configuration error; the last stderr
//! line names the reason. See the library docs (`domus_vmm`) for the machine and the control protocol.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use domus_vmm::config::VmConfig;
use domus_vmm::console::ConsoleMode;
use domus_vmm::machine::{self, MachineOptions};

/// Run one Domus domain on KVM.
#[derive(Debug, Parser)]
#[command(name = "domus-vmm", version, about)]
struct Args {
    /// xl.cfg domain configuration file.
    #[arg(long, value_name = "FILE", conflicts_with = "config_json")]
    config: Option<PathBuf>,
    /// KEY=VALUE lines appended to the --config file (as xl does).
    #[arg(value_name = "KEY=VALUE", requires = "config")]
    overrides: Vec<String>,
    /// Domain configuration as JSON (`domus create -N` output).
    #[arg(long, value_name = "FILE")]
    config_json: Option<PathBuf>,
    /// Console: stdio, pty or unix:PATH.
    #[arg(long, default_value = "stdio")]
    console: ConsoleMode,
    /// Control socket path.
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// KVM device node (tests use this to simulate a missing or forbidden /dev/kvm).
    #[arg(long, env = "DOMUS_KVM_DEVICE", default_value = domus_vmm::vstate::kvm::DEFAULT_KVM_PATH, hide = true)]
    kvm_device: PathBuf,
    /// Seconds to keep the control socket open after the guest stopped, waiting for ack-outcome.
    #[arg(long, default_value_t = 60, hide = true)]
    outcome_linger_s: u64,
    /// Kernel (without a config file).
    #[arg(long, hide = true, conflicts_with_all = ["config", "config_json"])]
    kernel: Option<PathBuf>,
    /// Ramdisk (with --kernel).
    #[arg(long, hide = true, requires = "kernel")]
    ramdisk: Option<PathBuf>,
    /// Command line (with --kernel).
    #[arg(long, hide = true, requires = "kernel", default_value = "")]
    cmdline: String,
    /// Memory in MiB (with --kernel).
    #[arg(long, hide = true, requires = "kernel", default_value_t = 128)]
    memory: u64,
    /// vCPUs (with --kernel).
    #[arg(long, hide = true, requires = "kernel", default_value_t = 1)]
    vcpus: u32,
    /// Domain name (with --kernel).
    #[arg(long, hide = true, requires = "kernel", default_value = "domain")]
    name: String,
}

fn load_config(args: &Args) -> anyhow::Result<VmConfig> {
    if let Some(path) = &args.config_json {
        return Ok(VmConfig::load_json(path)?);
    }
    if let Some(path) = &args.config {
        return Ok(VmConfig::load_xl(path, &args.overrides)?);
    }
    if let Some(kernel) = &args.kernel {
        return Ok(VmConfig {
            name: args.name.clone(),
            kernel: kernel.clone(),
            ramdisk: args.ramdisk.clone(),
            cmdline: args.cmdline.clone(),
            memory_mib: args.memory,
            vcpus: args.vcpus,
        });
    }
    bail!("no domain given: use --config FILE or --config-json FILE")
}

fn run(args: &Args) -> anyhow::Result<u8> {
    let mut cfg = load_config(args)?;
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    cfg.resolve_paths(&cwd);
    let opts = MachineOptions {
        console: args.console.clone(),
        control: args.control.clone(),
        kvm_path: args.kvm_device.clone(),
        outcome_linger: Duration::from_secs(args.outcome_linger_s),
    };
    let _span = tracing::info_span!("domain", domname = %cfg.name).entered();
    let outcome =
        machine::run(&cfg, &opts).with_context(|| format!("cannot run domain {}", cfg.name))?;
    eprintln!("domus-vmm: domain {}: {outcome}", cfg.name);
    Ok(outcome.exit_code())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = Args::parse();
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("domus-vmm: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
