//! The `cpus` spec (xl.cfg(5)): which host CPUs the domain's vCPUs may run on.
//!
//! A comma-separated list of items, applied left to right: `all` (every host CPU), `N` or `N-M` (add
//! CPUs), `^N` or `^N-M` (remove CPUs), and the NUMA forms `node:N`, `nodes:N-M`, `^node:N` (every CPU
//! of those host nodes). Examples: `"all,^0-1"`, `"nodes:0-3,^node:2"`. A config may also give a list
//! with one such spec per vCPU ([`CpusConfig::PerVcpu`]). Node numbers are resolved against the host's
//! topology by the caller ([`CpusSpec::resolve_with_nodes`]): this crate reads no host state.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// CPU numbers above this are rejected (bounds any allocation on hostile input).
pub const MAX_CPU: u32 = 4095;

/// A malformed `cpus` spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CpusError {
    /// An item is not `all`, `N`, `N-M`, `^N`, `^N-M` or a `node:`/`nodes:` form of them.
    #[error(
        "invalid cpus item `{found}`: expected `all`, `N`, `N-M`, `^N`, `^N-M` or `nodes:N-M` (comma-separated)"
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
    /// `nodes:N-M` (or `node:N`): every CPU of those host NUMA nodes; `exclude` for `^node:`.
    Nodes {
        /// First node.
        first: u32,
        /// Last node (inclusive).
        last: u32,
        /// Whether the nodes' CPUs are removed rather than added.
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
    /// Node forms select nothing here: use [`CpusSpec::resolve_with_nodes`] for them.
    pub fn resolve(&self, host_cpus: u32) -> Vec<u32> {
        self.resolve_with_nodes(host_cpus, &|_| Vec::new())
    }

    /// Whether any item names NUMA nodes.
    pub fn has_nodes(&self) -> bool {
        self.items
            .iter()
            .any(|i| matches!(i, CpuItem::Nodes { .. }))
    }

    /// As [`CpusSpec::resolve`], with `node_cpus(n)` giving the CPUs of host node `n` (empty when the
    /// host has no such node).
    pub fn resolve_with_nodes(
        &self,
        host_cpus: u32,
        node_cpus: &dyn Fn(u32) -> Vec<u32>,
    ) -> Vec<u32> {
        let mut set = BTreeSet::new();
        for item in &self.items {
            match *item {
                CpuItem::All => set.extend(0..host_cpus),
                CpuItem::Nodes {
                    first,
                    last,
                    exclude,
                } => {
                    for node in first..=last {
                        for cpu in node_cpus(node).into_iter().filter(|c| *c < host_cpus) {
                            if exclude {
                                set.remove(&cpu);
                            } else {
                                set.insert(cpu);
                            }
                        }
                    }
                }
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
            let (exclude, range) = match item.strip_prefix('^') {
                Some(rest) => (true, rest),
                None => (false, item),
            };
            let (nodes, range) = match range
                .strip_prefix("nodes:")
                .or_else(|| range.strip_prefix("node:"))
            {
                Some(rest) => (true, rest),
                None => (false, range),
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
            items.push(if nodes {
                CpuItem::Nodes {
                    first,
                    last,
                    exclude,
                }
            } else {
                CpuItem::Range {
                    first,
                    last,
                    exclude,
                }
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
                }
                | CpuItem::Nodes {
                    first,
                    last,
                    exclude,
                } => {
                    if exclude {
                        f.write_str("^")?;
                    }
                    if matches!(item, CpuItem::Nodes { .. }) {
                        f.write_str("nodes:")?;
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

/// `cpus`/`cpus_soft` as a config gives it: one spec for every vCPU, or a list with one spec per vCPU
/// (vCPUs past the list's end may run anywhere, as xl does).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum CpusConfig {
    /// `cpus = "2-5,^3"`: every vCPU gets these CPUs.
    All(String),
    /// `cpus = ["2", "3-4"]`: vCPU i gets entry i.
    PerVcpu(Vec<String>),
}

impl CpusConfig {
    /// The spec vCPU `vcpu` gets (`None`: any CPU).
    ///
    /// # Errors
    /// A malformed spec (configs are validated when parsed, so only hand-written JSON gets here).
    pub fn for_vcpu(&self, vcpu: u32) -> Result<Option<CpusSpec>, CpusError> {
        let text = match self {
            CpusConfig::All(t) => Some(t.as_str()),
            CpusConfig::PerVcpu(v) => usize::try_from(vcpu)
                .ok()
                .and_then(|i| v.get(i))
                .map(String::as_str),
        };
        text.map(str::parse).transpose()
    }

    /// Every spec in it, checked.
    ///
    /// # Errors
    /// The first malformed one.
    pub fn validate(&self) -> Result<(), CpusError> {
        match self {
            CpusConfig::All(t) => t.parse::<CpusSpec>().map(drop),
            CpusConfig::PerVcpu(v) => v.iter().try_for_each(|t| t.parse::<CpusSpec>().map(drop)),
        }
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
    fn node_forms_resolve_through_the_topology() {
        let topo = |n: u32| match n {
            0 => vec![0, 1],
            1 => vec![2, 3],
            _ => Vec::new(),
        };
        let cases: &[(&str, &[u32])] = &[
            ("nodes:0", &[0, 1]),
            ("node:1", &[2, 3]),
            ("nodes:0-1,^node:0", &[2, 3]),
            ("all,^node:1", &[0, 1]),
            ("nodes:0-1,^3", &[0, 1, 2]),
            ("nodes:5", &[]),
        ];
        for (text, want) in cases {
            let spec: CpusSpec = text.parse().unwrap();
            assert!(spec.has_nodes() || !text.contains("node"));
            assert_eq!(spec.resolve_with_nodes(4, &topo), *want, "{text}");
            let again: CpusSpec = spec.to_string().parse().unwrap();
            assert_eq!(again, spec, "{text} round trip");
        }
    }

    #[test]
    fn per_vcpu_lists() {
        let c = CpusConfig::PerVcpu(vec!["1".into(), "0-1".into()]);
        assert_eq!(c.for_vcpu(0).unwrap().unwrap().resolve(2), [1]);
        assert_eq!(c.for_vcpu(1).unwrap().unwrap().resolve(2), [0, 1]);
        assert_eq!(c.for_vcpu(2).unwrap(), None);
        let one = CpusConfig::All("all,^0".into());
        assert_eq!(one.for_vcpu(7).unwrap().unwrap().resolve(2), [1]);
        assert!(CpusConfig::PerVcpu(vec!["x".into()]).validate().is_err());
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#"["1","0-1"]"#);
        assert_eq!(
            serde_json::from_str::<CpusConfig>(r#""all""#).unwrap(),
            CpusConfig::All("all".into())
        );
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
            ("nodes:", "invalid cpus item `nodes:`"),
            ("node:2-1", "invalid cpus range `node:2-1`"),
            ("nodes:x", "invalid cpus item `nodes:x`"),
        ];
        for (text, want) in cases {
            let err = text.parse::<CpusSpec>().unwrap_err().to_string();
            assert!(err.starts_with(want), "{text}: {err}");
        }
    }
}
