//! `xl console [-t TYPE] [-n NUM] DOMAIN`: attach the terminal to the domain's serial console. Ctrl-]
//! detaches. The terminal is put in raw mode while attached (when stdin is a terminal) and restored after.
//!
//! The CLI connects straight to the VMM's console socket (domusd tells where); the VMM serves any number of
//! clients at once, each first receiving the recent backlog, so `create -c` never misses the greeting.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::Context;
use clap::Args as ClapArgs;
use rustix::event::{poll, PollFd, PollFlags};
use rustix::termios::{self, OptionalActions, Termios};

use super::Ctx;
use crate::api;

/// The detach key, Ctrl-] (as xl's console).
pub const ESCAPE: u8 = 0x1d;

/// Options of `console`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Console type (`pv` or `serial`): both name the one serial console here.
    #[arg(short = 't')]
    pub console_type: Option<String>,
    /// Console number (only 0 exists).
    #[arg(short = 'n', default_value_t = 0)]
    pub num: u32,
    /// The domain (name or domid).
    pub domain: String,
}

/// Restores the terminal's mode when dropped.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> Option<Self> {
        let stdin = io::stdin();
        if !termios::isatty(stdin.as_fd()) {
            return None;
        }
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw).ok()?;
        Some(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(io::stdin().as_fd(), OptionalActions::Now, &self.saved);
    }
}

/// Attaches the terminal to the console socket until Ctrl-] or until the console closes.
///
/// # Errors
/// When the socket cannot be reached or the terminal fails.
pub fn attach(socket: &Path) -> anyhow::Result<()> {
    let mut sock = UnixStream::connect(socket)
        .with_context(|| format!("connecting to console {}", socket.display()))?;
    let _raw = RawMode::enter();
    let stdin = io::stdin();
    let mut stdout = io::stdout();
    let mut stdin_open = true;
    let mut buf = [0u8; 4096];
    loop {
        let mut fds = vec![PollFd::new(&sock, PollFlags::IN)];
        if stdin_open {
            fds.push(PollFd::new(&stdin, PollFlags::IN));
        }
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(io::Error::from(e)).context("waiting for console input"),
        }
        let sock_ready = !fds[0].revents().is_empty();
        let stdin_ready = stdin_open && !fds[1].revents().is_empty();
        drop(fds);
        if sock_ready {
            let n = match sock.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            if n == 0 {
                return Ok(());
            }
            stdout
                .write_all(&buf[..n])
                .context("writing to the terminal")?;
            stdout.flush().context("writing to the terminal")?;
        }
        if stdin_ready {
            let n = match stdin.lock().read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            if n == 0 {
                stdin_open = false;
                continue;
            }
            let data = &buf[..n];
            if let Some(i) = data.iter().position(|b| *b == ESCAPE) {
                let _ = sock.write_all(&data[..i]);
                return Ok(());
            }
            if sock.write_all(data).is_err() {
                return Ok(());
            }
        }
    }
}

/// Runs `console`.
///
/// # Errors
/// When the domain does not exist, has no console, or the terminal fails.
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    if args.num != 0 {
        anyhow::bail!(
            "console {} does not exist: each domain has one console (number 0)",
            args.num
        );
    }
    if let Some(t) = &args.console_type {
        if t != "pv" && t != "serial" {
            anyhow::bail!("console type '{t}' is invalid: use pv or serial");
        }
    }
    let d = api::client().get(&args.domain)?;
    let Some(path) = d.console_path else {
        anyhow::bail!(
            "domain {} ({}) has no console: it is not running",
            d.domid,
            d.name
        );
    };
    attach(Path::new(&path))
}
