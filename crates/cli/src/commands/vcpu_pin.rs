//! `xl vcpu-pin DOMAIN VCPU|all CPUS [SOFT]`: pin vCPU threads to host CPUs (`all`, `0-3`, `1,3`, `^2`).

use clap::Args as ClapArgs;
use domus_api::messages::VcpuPinRequest;

use super::Ctx;
use crate::api;

/// Options of `vcpu-pin`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The domain (name or domid).
    pub domain: String,
    /// vCPU number, or `all`.
    pub vcpu: String,
    /// Hard affinity: `all`, ranges like `0-3,5`, exclusions like `^1`; `-` leaves it alone.
    pub cpus: String,
    /// Soft affinity, same forms (stored and shown by vcpu-list; Linux does not enforce it); `-` or
    /// absent leaves it alone.
    pub soft: Option<String>,
}

/// Parses xl's CPU list syntax against `nr` host CPUs.
///
/// # Errors
/// A message naming the bad part.
pub fn parse_cpus(s: &str, nr: u32) -> anyhow::Result<Vec<u32>> {
    let mut set = std::collections::BTreeSet::new();
    for part in s.split(',').map(str::trim) {
        let (neg, body) = match part.strip_prefix('^') {
            Some(b) => (true, b),
            None => (false, part),
        };
        let range: Vec<u32> = if body == "all" {
            (0..nr).collect()
        } else if let Some((a, b)) = body.split_once('-') {
            let (a, b): (u32, u32) = (a.trim().parse()?, b.trim().parse()?);
            if a > b {
                anyhow::bail!("invalid CPU range '{part}'");
            }
            (a..=b).collect()
        } else {
            vec![body.parse().map_err(|_| {
                anyhow::anyhow!("invalid CPU '{part}' (expected all, N, N-M or ^N)")
            })?]
        };
        for c in range {
            if c >= nr {
                anyhow::bail!("CPU {c} does not exist (this host has {nr})");
            }
            if neg {
                set.remove(&c);
            } else {
                set.insert(c);
            }
        }
    }
    if set.is_empty() {
        anyhow::bail!("CPU list '{s}' selects no CPU");
    }
    Ok(set.into_iter().collect())
}

/// Runs `vcpu-pin`.
///
/// # Errors
/// Bad arguments, or as the API reports.
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    let c = api::client();
    let soft_given = args.soft.as_deref().filter(|s| *s != "-");
    if args.cpus == "-" && soft_given.is_none() {
        return Ok(());
    }
    let nr = c.host()?.nr_cpus;
    let vcpu = if args.vcpu == "all" {
        None
    } else {
        Some(
            args.vcpu
                .parse::<u32>()
                .map_err(|_| anyhow::anyhow!("Error: Invalid argument {} as VCPU.", args.vcpu))?,
        )
    };
    let mask = |s: &str| -> anyhow::Result<Vec<u32>> {
        if s == "all" {
            Ok(Vec::new())
        } else {
            parse_cpus(s, nr)
        }
    };
    let hard_unchanged = args.cpus == "-";
    let cpus = if hard_unchanged {
        Vec::new()
    } else {
        mask(&args.cpus)?
    };
    let soft = soft_given.map(mask).transpose()?;
    c.action(
        &args.domain,
        "vcpu-pin",
        Some(&VcpuPinRequest {
            vcpu,
            cpus,
            hard_unchanged,
            soft,
        }),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpus("0-2,^1", 4).unwrap(), vec![0, 2]);
        assert_eq!(parse_cpus("all,^0", 2).unwrap(), vec![1]);
        assert_eq!(parse_cpus("3", 4).unwrap(), vec![3]);
        assert!(parse_cpus("5", 4).is_err());
        assert!(parse_cpus("2-1", 4).is_err());
        assert!(parse_cpus("x", 4).is_err());
        assert!(parse_cpus("^0", 1).is_err());
    }
}
