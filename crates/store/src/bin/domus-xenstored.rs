//! `domus-xenstored`: the store as a standalone foreground daemon.
//!
//! `domus-xenstored --socket PATH --state-dir DIR [--domain-socket DOMID:PATH]... [--quota NAME=VALUE]...`
//! Clients on `--socket` act as dom0; clients on a `--domain-socket` act as that domain. SIGTERM or SIGINT
//! stop it cleanly: the journal is written and fdatasync'ed, the sockets removed. Logs go to stderr
//! (`RUST_LOG` filters them; default `info`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Parser;
use domus_store::server::{self, ServerConfig};
use domus_store::{DomId, Quotas};

/// xenstore-compatible, crash-safe store daemon.
#[derive(Debug, Parser)]
#[command(name = "domus-xenstored", version)]
struct Args {
    /// Socket for privileged (dom0) clients; point XENSTORED_PATH at it. Repeatable.
    #[arg(long, required = true)]
    socket: Vec<PathBuf>,
    /// Directory for the journal and snapshot (created if missing).
    #[arg(long)]
    state_dir: PathBuf,
    /// DOMID:PATH — a socket whose clients act as domain DOMID. Repeatable.
    #[arg(long, value_name = "DOMID:PATH")]
    domain_socket: Vec<String>,
    /// NAME=VALUE — a quota for unprivileged domains (nodes, watches, transactions, outstanding,
    /// node-size, permissions, path-max, transaction-nodes). Repeatable.
    #[arg(long, value_name = "NAME=VALUE")]
    quota: Vec<String>,
    /// Most simultaneous connections.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
}

fn parse_domain_socket(s: &str) -> anyhow::Result<(DomId, PathBuf)> {
    let Some((d, p)) = s.split_once(':') else {
        bail!("--domain-socket {s:?}: expected DOMID:PATH")
    };
    let domid: u32 = d
        .parse()
        .with_context(|| format!("--domain-socket {s:?}: bad domid {d:?}"))?;
    if domid == 0 || domid > 0xffff {
        bail!("--domain-socket {s:?}: domid must be in 1..=65535 (dom0 uses --socket)");
    }
    Ok((DomId(domid), PathBuf::from(p)))
}

fn run(args: Args) -> anyhow::Result<()> {
    let mut config = ServerConfig::new(args.state_dir.clone(), args.socket.clone());
    config.max_connections = args.max_connections;
    config.domain_sockets = args
        .domain_socket
        .iter()
        .map(|s| parse_domain_socket(s))
        .collect::<Result<_, _>>()?;
    let mut quotas = Quotas::default();
    for q in &args.quota {
        let Some((name, value)) = q.split_once('=') else {
            bail!("--quota {q:?}: expected NAME=VALUE")
        };
        let value: u32 = value
            .parse()
            .with_context(|| format!("--quota {q:?}: bad value"))?;
        if !quotas.set(name, value) {
            bail!("--quota {q:?}: unknown quota name {name:?}");
        }
    }
    config.quotas = quotas;
    let handle = server::spawn(config).with_context(|| {
        format!(
            "starting the store with state in {}",
            args.state_dir.display()
        )
    })?;
    let trigger = handle.trigger();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .context("installing signal handlers")?;
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            tracing::info!(signal = sig, "stopping");
            trigger.trigger();
        }
    });
    handle.wait().context("store server failed")
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("domus-xenstored: {e:#}");
            ExitCode::FAILURE
        }
    }
}
