//! The `cpus` spec (xl.cfg(5)): which host CPUs the domain's vCPUs may run on.
//!
//! A comma-separated list of items, applied left to right: `all` (every host CPU), `N` or `N-M` (add
//! CPUs), `^N` or `^N-M` (remove CPUs). Example: `"all,^0-1"`. xl's NUMA forms (`nodes:...`) are not
//! supported and are reported as such.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// CPU numbers above this are rejected (bounds any allocation on hostile input).
pub const MAX_CPU: u32 = 4095;

/// A malformed `cpus` spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CpusError {
    /// An item is not `all`, `N`, `N-M`, `^N` or `^N-M`.
    #[error(
        "invalid cpus item `{found}`: expected `all`, `N`, `N-M`, `^N` or `^N-M` (comma-separated)"
    )]
    Malformed {
        /// The item found.
        found: String,
    },
    /// A range whose end is below its start.
    #[error("invalid cpus range `{found}`: expected the first CPU <= the last")]
    Reversed {
        /// The item found.
        found: String,
    },
    /// A CPU number above [`MAX_CPU`].
    #[error("cpu number in `{found}` is too large: expected at most 4095")]
    TooLarge {
        /// The item found.
        found: String,
    },
    /// NUMA node forms.
    #[error("`{found}`: NUMA node affinity (nodes:) is not supported: expected CPU numbers")]
    Nodes {
        /// The item found.
        found: String,
    },
}

/// One item of a `cpus` spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuItem {
    /// `all`
    All,
    /// `N-M` (or `N`, with first == last); `exclude` for the `^` forms.
    Range {
        /// First CPU of the range.
        first: u32,
        /// Last CPU of the range (inclusive).
        last: u32,
        /// Whether the range is removed (`^`) rather than added.
        exclude: bool,
    },
}

/// A parsed `cpus` spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpusSpec {
    /// The items, in order.
    pub items: Vec<CpuItem>,
}

impl CpusSpec {
    /// The CPUs this spec selects on a host with `host_cpus` CPUs (numbered `0..host_cpus`), ascending.
    /// CPUs the host does not have are dropped.
    pub fn resolve(&self, host_cpus: u32) -> Vec<u32> {
        let mut set = BTreeSet::new();
        for item in &self.items {
            match *item {
                CpuItem::All => set.extend(0..host_cpus),
                CpuItem::Range {
                    first,
                    last,
                    exclude,
                } => {
                    for cpu in first..=last.min(host_cpus.saturating_sub(1)) {
                        if exclude {
                            set.remove(&cpu);
                        } else {
                            set.insert(cpu);
                        }
                    }
                }
            }
        }
        set.into_iter().collect()
    }
}

fn parse_cpu(text: &str, item: &str) -> Result<u32, CpusError> {
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_digit()) {
        return Err(CpusError::Malformed { found: item.into() });
    }
    match text.parse::<u32>() {
        Ok(n) if n <= MAX_CPU => Ok(n),
        _ => Err(CpusError::TooLarge { found: item.into() }),
    }
}

impl FromStr for CpusSpec {
    type Err = CpusError;

    fn from_str(s: &str) -> Result<Self, CpusError> {
        let mut items = Vec::new();
        for raw in s.split(',') {
            let item = raw.trim();
            if item == "all" {
                items.push(CpuItem::All);
                continue;
            }
            if item.starts_with("node") || item.starts_with("^node") {
                return Err(CpusError::Nodes { found: item.into() });
            }
            let (exclude, range) = match item.strip_prefix('^') {
                Some(rest) => (true, rest),
                None => (false, item),
            };
            let (first, last) = match range.split_once('-') {
                Some((a, b)) => (parse_cpu(a, item)?, parse_cpu(b, item)?),
                None => {
                    let n = parse_cpu(range, item)?;
                    (n, n)
                }
            };
            if last < first {
                return Err(CpusError::Reversed { found: item.into() });
            }
            items.push(CpuItem::Range {
                first,
                last,
                exclude,
            });
        }
        Ok(Self { items })
    }
}

impl fmt::Display for CpusSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match *item {
                CpuItem::All => f.write_str("all")?,
                CpuItem::Range {
                    first,
                    last,
                    exclude,
                } => {
                    if exclude {
                        f.write_str("^")?;
                    }
                    if first == last {
                        write!(f, "{first}")?;
                    } else {
                        write!(f, "{first}-{last}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_resolve() {
        let cases: &[(&str, u32, &[u32])] = &[
            ("all", 4, &[0, 1, 2, 3]),
            ("0", 4, &[0]),
            ("1-2", 4, &[1, 2]),
            ("0,2-3", 4, &[0, 2, 3]),
            ("all,^1", 4, &[0, 2, 3]),
            ("all,^0-1", 4, &[2, 3]),
            ("0-7,^2-5", 8, &[0, 1, 6, 7]),
            ("2-9", 4, &[2, 3]),
            ("^1", 4, &[]),
            (" 1 , 3 ", 4, &[1, 3]),
        ];
        for (text, host, want) in cases {
            let spec: CpusSpec = text.parse().unwrap();
            assert_eq!(spec.resolve(*host), *want, "{text}");
            let again: CpusSpec = spec.to_string().parse().unwrap();
            assert_eq!(again, spec, "{text} round trip");
        }
    }

    #[test]
    fn bad_specs() {
        let cases: &[(&str, &str)] = &[
            ("", "invalid cpus item ``"),
            ("1,,2", "invalid cpus item ``"),
            ("a", "invalid cpus item `a`"),
            ("3-1", "invalid cpus range `3-1`"),
            ("1-", "invalid cpus item `1-`"),
            ("^", "invalid cpus item `^`"),
            ("-1", "invalid cpus item `-1`"),
            ("5000", "cpu number in `5000` is too large"),
            ("nodes:0", "`nodes:0`: NUMA node affinity"),
        ];
        for (text, want) in cases {
            let err = text.parse::<CpusSpec>().unwrap_err().to_string();
            assert!(err.starts_with(want), "{text}: {err}");
        }
    }
}
