//! The list of subcommands: one variant per xl command, each wrapping `<name>::Args` and dispatched to
//! `<name>::run(&Ctx, Args)`. This is the only place that lists them.

pub mod create;

use clap::Subcommand;

/// The name the binary was invoked by: `domus`, or `xl`/`xm` through a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prog {
    /// `domus`
    Domus,
    /// `xl`
    Xl,
    /// `xm`
    Xm,
}

impl Prog {
    /// The program name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Prog::Domus => "domus",
            Prog::Xl => "xl",
            Prog::Xm => "xm",
        }
    }
}

/// What every command gets from `main`: the global flags.
#[derive(Debug)]
pub struct Ctx {
    /// The name the binary was invoked by.
    pub prog: Prog,
    /// xl's global `-N`: dry run.
    pub dry_run: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a domain from a config file (xl create).
    Create(create::Args),
}

impl Command {
    /// The subcommand's xl name, for messages and the `cmd` log field.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Create(_) => "create",
        }
    }
}

/// Runs `command`.
///
/// # Errors
/// Whatever the command reports; `main` prints it and exits 1.
pub fn run(ctx: &Ctx, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Create(args) => create::run(ctx, args),
    }
}
