//! `xl mem-max DOMAIN MEM`: the domain's maximum memory (MEM in MiB, or with a unit suffix: b, k, m,
//! g, t), the ceiling of later `mem-set`s.

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

/// Parses xl's memory argument into MiB, as xl's `parse_mem_size_kb` reads it: a decimal number
/// and at most one unit letter (case-insensitive): `t`, `g`, `m` (the default), `k`, or `b` (bytes,
/// cut to whole KiB). Domus keeps memory in MiB, so a size in KiB is rounded up to the next MiB.
///
/// # Errors
/// A message naming the bad value.
pub fn parse_mib(s: &str) -> anyhow::Result<u64> {
    let bad = || {
        anyhow::anyhow!(
            "invalid memory size '{s}' (a number with an optional unit: b, k, m, g or t)"
        )
    };
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits);
    let n: u64 = num.parse().map_err(|_| bad())?;
    // Saturating: an absurd size becomes one the daemon refuses as out of range.
    let shift = |k: u32| n.saturating_mul(1u64 << k);
    let kib = match unit.to_ascii_lowercase().as_str() {
        "t" => shift(30),
        "g" => shift(20),
        "" | "m" => shift(10),
        "k" => n,
        "b" => n >> 10,
        _ => return Err(bad()),
    };
    Ok(kib.div_ceil(1024))
}

/// Runs `mem-max`.
///
/// # Errors
/// Bad size, or as the API reports.
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let mib =
        parse_mib(&args.mem).map_err(|_| anyhow::anyhow!("invalid memory size: {}", args.mem))?;
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
        assert_eq!(parse_mib("64M").unwrap(), 64);
        assert_eq!(parse_mib("1t").unwrap(), 1 << 20);
        assert_eq!(parse_mib("2097152b").unwrap(), 2);
        assert_eq!(parse_mib("1023b").unwrap(), 0, "bytes are cut to whole KiB");
        for bad in [
            "x",
            "5q",
            "",
            "1kb",
            "64 ",
            " 64",
            "-5",
            "1.5g",
            "99999999999999999999",
        ] {
            assert!(parse_mib(bad).is_err(), "{bad:?}");
        }
    }
}
