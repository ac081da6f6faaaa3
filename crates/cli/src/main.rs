//! `domus`, the xl-compatible command line of Domus (also invoked as `xl` or `xm` through a link).
//!
//! This file only parses the global flags, sets up logging, dispatches to `commands` and maps errors to
//! exit codes: 0 on success, 1 when the command failed (the error, located where it comes from a config
//! file, is printed on stderr), 2 for usage errors (clap's).
#![forbid(unsafe_code)]

mod api;
mod clock;
mod cmdtable;
mod commands;
mod host;
mod libxl_json;
mod output;
mod xentop;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};
use tracing_subscriber::EnvFilter;

use crate::commands::{Command, Ctx, Prog};

/// Xen's toolstack rebuilt on Linux KVM: create, list and control domains as with xl.
#[derive(Debug, Parser)]
#[command(name = "domus", version, about, long_about = None)]
struct Cli {
    /// More logging on stderr (repeat for more: -v info, -vv debug, -vvv trace).
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    verbose: u8,
    /// Dry run: do not actually execute the command (xl's global -N).
    #[arg(short = 'N')]
    dry_run: bool,
    #[command(subcommand)]
    command: Command,
}

/// Which name the binary was invoked by (`argv[0]`'s file name).
fn prog_from_argv0(argv0: Option<&OsString>) -> Prog {
    let name = argv0
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("domus");
    match name {
        "xl" => Prog::Xl,
        "xm" => Prog::Xm,
        "xentop" => Prog::Xentop,
        _ => Prog::Domus,
    }
}

/// Replaces the command word in `args` by the full command name it selects (xl's `cmdtable_lookup`:
/// see `cmdtable`); `Err` carries xl's message for a word that selects nothing Domus runs. Under the
/// name `xentop`, every argument belongs to `top`.
fn resolve_command(prog: Prog, args: &mut Vec<OsString>) -> Result<(), String> {
    if prog == Prog::Xentop {
        args.insert(1.min(args.len()), OsString::from("top"));
        return Ok(());
    }
    // The first argument that is not a global flag (-v, -N, -h, -V, --help, --version) is the command.
    let Some(pos) = args
        .iter()
        .skip(1)
        .position(|a| !a.to_string_lossy().starts_with('-'))
        .map(|p| p + 1)
    else {
        return Ok(());
    };
    let word = args[pos].to_string_lossy().into_owned();
    if word == "help" {
        return Ok(());
    }
    match cmdtable::lookup(&word) {
        cmdtable::Lookup::Command(name) => {
            if Cli::command().find_subcommand(name).is_none() {
                return Err(format!("command \"{name}\" not implemented"));
            }
            args[pos] = OsString::from(name);
            Ok(())
        }
        cmdtable::Lookup::NotFound => Err("command not implemented".to_owned()),
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("DOMUS_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let prog = prog_from_argv0(args.first());
    if let Err(msg) = resolve_command(prog, &mut args) {
        eprintln!("{msg}");
        return ExitCode::FAILURE;
    }
    let matches = Cli::command()
        .name(prog.name())
        .bin_name(prog.name())
        .get_matches_from(&args);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // `create -d` (xl's debug messages) is the global -vv.
    let verbose = match &cli.command {
        Command::Create(a) if a.debug => cli.verbose.max(2),
        _ => cli.verbose,
    };
    init_logging(verbose);
    let ctx = Ctx {
        prog,
        dry_run: cli.dry_run,
    };
    let name = cli.command.name();
    let span = tracing::info_span!("command", cmd = name);
    let _enter = span.enter();
    match commands::run(&ctx, cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{} {name}: {e:#}", prog.name());
            ExitCode::FAILURE
        }
    }
}
