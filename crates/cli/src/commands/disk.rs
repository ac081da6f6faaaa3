//! `domus disk create PATH SIZE [--sparse] [--force]`: a raw disk image for `disk = [...]`.
//!
//! Preallocated by default (zeros written, so every block exists on the host: the HOWTO warns that
//! sparse images can lock up a guest when the host file system fills), with a progress bar on a
//! terminal; `--sparse` only sets the length. An existing PATH is never overwritten without `--force`.
//! SIZE is bytes, or a number with a K/M/G/T suffix (powers of 1024); it must be a whole number of
//! 512-byte sectors.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args as ClapArgs, Subcommand};

use super::Ctx;

/// Options of `disk`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
}

/// `disk` subcommands.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// Create a raw disk image.
    Create {
        /// Image path.
        path: PathBuf,
        /// Size: bytes, or with a K/M/G/T suffix.
        size: String,
        /// Only set the length (blocks are allocated when written).
        #[arg(long)]
        sparse: bool,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

/// Parses `10G`, `512M`, `4096`, `1.5G` is refused (whole numbers only).
///
/// # Errors
/// Not a number, unknown suffix, zero, overflow or not a multiple of 512.
pub fn parse_size(text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let (num, mult) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        Some('T') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: u64 = num.parse().with_context(|| {
        format!("invalid size {text:?}: use bytes or a whole number with K, M, G or T")
    })?;
    let bytes = n
        .checked_mul(mult)
        .with_context(|| format!("size {text:?} is too large"))?;
    if bytes == 0 {
        bail!("size must be greater than 0");
    }
    if bytes % 512 != 0 {
        bail!("size {bytes} is not a multiple of 512 bytes (the disk sector size)");
    }
    Ok(bytes)
}

/// Runs `disk`.
///
/// # Errors
/// Bad size, existing file without --force, or any I/O error (the partial file is removed).
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let Action::Create {
        path,
        size,
        sparse,
        force,
    } = args.action;
    let bytes = parse_size(&size)?;
    let mut o = std::fs::OpenOptions::new();
    o.write(true);
    if force {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    let file = o.open(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} already exists: not overwriting it (use --force)",
                path.display()
            )
        } else {
            anyhow::Error::new(e).context(format!("cannot create {}", path.display()))
        }
    })?;
    let result = fill(&file, bytes, sparse);
    if result.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    result.with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "created {} ({bytes} bytes, {})",
        path.display(),
        if sparse { "sparse" } else { "preallocated" }
    );
    Ok(())
}

fn fill(mut file: &std::fs::File, bytes: u64, sparse: bool) -> std::io::Result<()> {
    if sparse {
        return file.set_len(bytes);
    }
    let chunk = vec![0u8; 4 << 20];
    let tty = std::io::stderr().is_terminal();
    let mut done = 0u64;
    let mut shown = u64::MAX;
    while done < bytes {
        let n = (bytes - done).min(chunk.len() as u64) as usize;
        file.write_all(chunk.get(..n).unwrap_or_default())?;
        done += n as u64;
        let pct = done * 100 / bytes;
        if tty && pct != shown {
            shown = pct;
            let bar = "#".repeat((pct / 5) as usize);
            eprint!("\r[{bar:<20}] {pct:3}% {} MiB", done >> 20);
        }
    }
    if tty {
        eprintln!();
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("10M").unwrap(), 10 << 20);
        assert_eq!(parse_size("2g").unwrap(), 2 << 30);
        assert_eq!(parse_size("1T").unwrap(), 1 << 40);
        assert!(parse_size("0").is_err());
        assert!(parse_size("1000").is_err());
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("x").is_err());
        assert!(parse_size("99999999999999999999T").is_err());
    }
}
