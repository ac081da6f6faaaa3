//! `xl top` / `xentop [-b] [-i N] [-d SECONDS] [-v] [-x] [-n] [-z] [-f] [-r]`: a live view of the domains
//! (state, CPU seconds and %, memory, vCPUs, NICs, disks) as xentop shows it. xl's `top` runs xentop;
//! Domus answers as `xentop` itself when invoked under that name. With `-b` (batch) it prints, every
//! delay, xentop's header and one row per domain — no summary, no terminal control — for scripts; `-i N`
//! stops after N rounds. Without `-b`, the summary lines are added and the screen is redrawn until
//! `q` (or N rounds, or Ctrl-C).
//!
//! Formats: `crate::xentop`.

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use clap::Args as ClapArgs;
use domus_api::messages::DomainInfo;
use rustix::event::{poll, PollFd, PollFlags};
use rustix::termios::{self, LocalModes, OptionalActions, Termios};

use super::Ctx;
use crate::{api, xentop};

/// Options of `top` (xentop's).
#[derive(Debug, ClapArgs)]
#[command(disable_version_flag = true)]
pub struct Args {
    /// Batch mode: plain text on stdout, no user input.
    #[arg(short = 'b', long = "batch")]
    pub batch: bool,
    /// Rounds before exiting (default: until interrupted).
    #[arg(short = 'i', long = "iterations")]
    pub iterations: Option<u64>,
    /// Seconds between rounds (default 3; 1 to 86400).
    #[arg(short = 'd', long = "delay", default_value_t = 3,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub delay: u64,
    /// Show each domain's vCPUs and their CPU seconds.
    #[arg(short = 'v', long = "vcpus")]
    pub vcpus: bool,
    /// Show each domain's virtual block devices.
    #[arg(short = 'x', long = "vbds")]
    pub vbds: bool,
    /// Show each domain's network interfaces.
    #[arg(short = 'n', long = "networks")]
    pub networks: bool,
    /// Repeat the header before each domain.
    #[arg(short = 'r', long = "repeat-header")]
    pub repeat_header: bool,
    /// Full domain names (not cut at 10 characters).
    #[arg(short = 'f', long = "full-name")]
    pub full_name: bool,
    /// Domain-0 first, then the others sorted.
    #[arg(short = 'z', long = "dom0-first")]
    pub dom0_first: bool,
    /// Print xentop's version and exit.
    #[arg(short = 'V', long = "version")]
    pub version: bool,
}

/// Runs `top`.
///
/// # Errors
/// When domusd is unreachable.
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    if args.version {
        println!("xentop 1.0 (Domus {})", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    let c = api::client();
    let _term = if args.batch { None } else { KeyMode::enter() };
    let mut prev: Option<(Instant, HashMap<u32, u64>)> = None;
    let mut round = 0u64;
    loop {
        let now = Instant::now();
        let mut domains = c.list()?;
        xentop::sort(&mut domains);
        if args.dom0_first {
            domains.sort_by_key(|d| d.domid != 0);
        }
        let host = c.host()?;
        let mut out = String::new();
        if !args.batch {
            out.push_str("\x1b[H\x1b[2J");
            out.push_str(&xentop::summary(
                &crate::clock::hms_now(),
                &format!("domus {}", host.domus_version),
                &domains,
                host.total_memory_mib * 1024,
                host.free_memory_mib * 1024,
                host.nr_cpus,
                host.cpu_mhz,
            ));
        }
        render(
            &mut out,
            &args,
            &domains,
            prev.as_ref(),
            now,
            host.total_memory_mib * 1024,
        );
        let mut stdout = io::stdout().lock();
        stdout.write_all(out.as_bytes())?;
        stdout.flush()?;
        drop(stdout);
        prev = Some((
            now,
            domains.iter().map(|d| (d.domid, d.cpu_time_ns)).collect(),
        ));
        round += 1;
        if args.iterations.is_some_and(|n| round >= n) {
            return Ok(());
        }
        if wait_or_quit(Duration::from_secs(args.delay.max(1)), args.batch) {
            return Ok(());
        }
    }
}

/// Appends the header and the rows of one round.
fn render(
    out: &mut String,
    args: &Args,
    domains: &[DomainInfo],
    prev: Option<&(Instant, HashMap<u32, u64>)>,
    now: Instant,
    total_kib: u64,
) {
    let elapsed_us = prev.map_or(0.0, |(t, _)| now.duration_since(*t).as_secs_f64() * 1e6);
    for (i, d) in domains.iter().enumerate() {
        if i == 0 || args.repeat_header {
            out.push_str(&xentop::header());
            out.push('\n');
        }
        let sample = xentop::Sample {
            dom: d,
            prev_cpu_ns: prev.and_then(|(_, m)| m.get(&d.domid).copied()),
            elapsed_us,
        };
        let mut row = xentop::row(&sample, total_kib);
        if args.full_name && d.name.chars().count() > 10 {
            row.replace_range(..10, &d.name);
        }
        out.push_str(&row);
        out.push('\n');
        if args.vcpus {
            out.push_str(&xentop::vcpu_lines(d));
        }
        if args.networks {
            out.push_str(&xentop::net_lines(d));
        }
        if args.vbds {
            out.push_str(&xentop::vbd_lines(d));
        }
    }
}

/// Sleeps `delay`; in the interactive view returns early with `true` when `q` is typed.
fn wait_or_quit(delay: Duration, batch: bool) -> bool {
    let stdin = io::stdin();
    if batch || !termios::isatty(stdin.as_fd()) {
        std::thread::sleep(delay);
        return false;
    }
    let deadline = Instant::now() + delay;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
        let ts = rustix::event::Timespec {
            tv_sec: i64::from(ms / 1000),
            tv_nsec: i64::from(ms % 1000) * 1_000_000,
        };
        if poll(&mut fds, Some(&ts)).unwrap_or(0) > 0 {
            let mut b = [0u8; 1];
            if rustix::io::read(&stdin, &mut b).unwrap_or(0) == 0 {
                return false;
            }
            if matches!(b[0], b'q' | b'Q' | 0x1b) {
                return true;
            }
        }
    }
}

/// Keys without Enter and without echo while the live view runs; restored when dropped.
struct KeyMode {
    saved: Termios,
}

impl KeyMode {
    fn enter() -> Option<Self> {
        let stdin = io::stdin();
        if !termios::isatty(stdin.as_fd()) {
            return None;
        }
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut keys = saved.clone();
        keys.local_modes
            .remove(LocalModes::ICANON | LocalModes::ECHO);
        termios::tcsetattr(stdin.as_fd(), OptionalActions::Now, &keys).ok()?;
        Some(Self { saved })
    }
}

impl Drop for KeyMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(io::stdin().as_fd(), OptionalActions::Now, &self.saved);
    }
}
