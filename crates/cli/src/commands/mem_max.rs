//! `xl mem-max DOMAIN MEM`: the domain's maximum memory (MEM in MiB, or with a unit suffix: k, m, g).

use clap::Args as ClapArgs;
use domus_api::messages::MemMaxRequest;

use super::Ctx;
use crate::api;

/// Options of `mem-max`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The domain (name or domid).
    pub domain: String,
    /// New maximum: a number of MiB, or with suffix b/k/m/g/t.
    pub mem: String,
}

/// Parses xl's memory argument (default unit MiB) into MiB, rounding up.
///
/// # Errors
/// A message naming the bad value.
pub fn parse_mib(s: &str) -> anyhow::Result<u64> {
    let t = s.trim();
    let (num, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&t[..i], t[i..].to_ascii_lowercase()),
        None => (t, "m".to_owned()),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid memory size '{s}'"))?;
    let kib = match unit.as_str() {
        "b" => n.div_ceil(1024),
        "k" | "kb" => n,
        "m" | "mb" => n.saturating_mul(1024),
        "g" | "gb" => n.saturating_mul(1024 * 1024),
        "t" | "tb" => n.saturating_mul(1024 * 1024 * 1024),
        _ => anyhow::bail!("invalid memory size '{s}' (units: b, k, m, g, t)"),
    };
    Ok(kib.div_ceil(1024))
}

/// Runs `mem-max`.
///
/// # Errors
/// Bad size, or as the API reports.
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let mib = parse_mib(&args.mem)?;
    api::client().action(&args.domain, "mem-max", Some(&MemMaxRequest { mib }))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_mib("64").unwrap(), 64);
        assert_eq!(parse_mib("1g").unwrap(), 1024);
        assert_eq!(parse_mib("2048k").unwrap(), 2);
        assert_eq!(parse_mib("1025k").unwrap(), 2);
        assert!(parse_mib("x").is_err());
        assert!(parse_mib("5q").is_err());
    }
}
