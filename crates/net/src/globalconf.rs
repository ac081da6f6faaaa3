//! The xl.conf-compatible global file: `/etc/domus/xl.conf`, else `/etc/xen/xl.conf` (xl's own),
//! in xl's config syntax (parsed by domus-config). Domus reads the keys that concern vifs:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `vif.default.script` | `vif-bridge` | mode or hotplug script for vifs without `script=` |
//! | `vif.default.bridge` | `xenbr0` | bridge for vifs without `bridge=` |
//! | `vif.default.gatewaydev` | none | uplink for route mode's proxy ARP and NAT's masquerade |
//! | `domus.nat.subnet` | `192.168.122.0/24` | the NAT network's private subnet (Domus's own key; xl ignores unknown keys) |
//! | `domus.nat.bridge` | `domusnat0` | the NAT network's bridge |
//!
//! Other keys (xl's `autoballoon`, `lockfile`, ...) are ignored here, as xl ignores keys it does
//! not know.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use domus_config::Value;

/// Where the global file is looked for, in order.
pub const SEARCH_PATH: [&str; 2] = ["/etc/domus/xl.conf", "/etc/xen/xl.conf"];

/// What went wrong reading the global file.
#[derive(Debug, thiserror::Error)]
pub enum GlobalConfError {
    /// Unreadable.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Not in xl's syntax.
    #[error("{0}")]
    Syntax(#[from] domus_config::ConfigError),
    /// A known key with a wrong value.
    #[error("{path}: `{key}`: {detail}")]
    Value {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// The vif defaults and the NAT network's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetDefaults {
    /// The file they came from (None: built-in defaults).
    pub source: Option<PathBuf>,
    /// `vif.default.script`.
    pub script: String,
    /// `vif.default.bridge`.
    pub bridge: String,
    /// `vif.default.gatewaydev`.
    pub gatewaydev: Option<String>,
    /// The NAT subnet's network address.
    pub nat_network: Ipv4Addr,
    /// The NAT subnet's prefix length (8..=30).
    pub nat_prefix: u8,
    /// The NAT network's bridge.
    pub nat_bridge: String,
}

impl Default for NetDefaults {
    fn default() -> Self {
        Self {
            source: None,
            script: "vif-bridge".into(),
            bridge: "xenbr0".into(),
            gatewaydev: None,
            nat_network: Ipv4Addr::new(192, 168, 122, 0),
            nat_prefix: 24,
            nat_bridge: "domusnat0".into(),
        }
    }
}

impl NetDefaults {
    /// Reads the first file of [`SEARCH_PATH`] that exists; none: the built-in defaults.
    pub fn load() -> Result<Self, GlobalConfError> {
        Self::load_from(&SEARCH_PATH.map(PathBuf::from))
    }

    /// Reads the first of `paths` that exists.
    pub fn load_from(paths: &[PathBuf]) -> Result<Self, GlobalConfError> {
        for p in paths {
            match std::fs::read_to_string(p) {
                Ok(text) => return Self::parse(p, &text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(GlobalConfError::Read {
                        path: p.clone(),
                        source,
                    })
                }
            }
        }
        Ok(Self::default())
    }

    /// Parses the text of the global file `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, GlobalConfError> {
        let cfg = domus_config::parse(&path.display().to_string(), text)?;
        let mut d = Self {
            source: Some(path.to_owned()),
            ..Self::default()
        };
        let string = |key: &'static str| -> Result<Option<String>, GlobalConfError> {
            match cfg.get(key).map(|s| &s.value.value) {
                None => Ok(None),
                Some(Value::Str(s)) => Ok(Some(s.clone())),
                Some(v) => Err(GlobalConfError::Value {
                    path: path.to_owned(),
                    key,
                    detail: format!("expected a string, found a {}", v.type_name()),
                }),
            }
        };
        let ifname = |key: &'static str, v: String| -> Result<String, GlobalConfError> {
            if crate::tap::valid_ifname(&v) {
                Ok(v)
            } else {
                Err(GlobalConfError::Value {
                    path: path.to_owned(),
                    key,
                    detail: format!("`{v}` is not an interface name"),
                })
            }
        };
        if let Some(s) = string("vif.default.script")? {
            d.script = s;
        }
        if let Some(b) = string("vif.default.bridge")? {
            d.bridge = ifname("vif.default.bridge", b)?;
        }
        if let Some(g) = string("vif.default.gatewaydev")? {
            d.gatewaydev = Some(ifname("vif.default.gatewaydev", g)?);
        }
        if let Some(b) = string("domus.nat.bridge")? {
            d.nat_bridge = ifname("domus.nat.bridge", b)?;
        }
        if let Some(s) = string("domus.nat.subnet")? {
            let (net, prefix) = parse_subnet(&s).map_err(|detail| GlobalConfError::Value {
                path: path.to_owned(),
                key: "domus.nat.subnet",
                detail,
            })?;
            d.nat_network = net;
            d.nat_prefix = prefix;
        }
        Ok(d)
    }
}

/// Parses `A.B.C.D/N` (8 ≤ N ≤ 30, no host bits set).
pub fn parse_subnet(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (a, n) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}` is not A.B.C.D/N"))?;
    let addr: Ipv4Addr = a
        .parse()
        .map_err(|_| format!("`{a}` is not an IPv4 address"))?;
    let prefix: u8 = n
        .parse()
        .ok()
        .filter(|p| (8..=30).contains(p))
        .ok_or_else(|| format!("prefix length `{n}` must be 8 to 30"))?;
    let mask = u32::MAX << (32 - prefix);
    if u32::from(addr) & !mask != 0 {
        return Err(format!(
            "`{s}` has host bits set (the network is {}/{prefix})",
            Ipv4Addr::from(u32::from(addr) & mask)
        ));
    }
    Ok((addr, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_no_file_exists() {
        let d = NetDefaults::load_from(&[PathBuf::from("/nonexistent/domus/xl.conf")])
            .expect("defaults");
        assert_eq!(d, NetDefaults::default());
        assert_eq!(d.script, "vif-bridge");
        assert_eq!(d.bridge, "xenbr0");
    }

    #[test]
    fn first_existing_file_wins_and_keys_are_read() {
        let dir = std::env::temp_dir().join(format!("domus-net-gc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let a = dir.join("a.conf");
        let b = dir.join("b.conf");
        std::fs::write(
            &a,
            "# xl.conf\nautoballoon=\"off\"\nvif.default.script=\"vif-nat\"\nvif.default.bridge=\"br1\"\nvif.default.gatewaydev=\"eth1\"\ndomus.nat.subnet=\"10.7.0.0/16\"\n",
        )
        .expect("write");
        std::fs::write(&b, "vif.default.bridge=\"other\"\n").expect("write");
        let d = NetDefaults::load_from(&[dir.join("missing"), a.clone(), b]).expect("parses");
        assert_eq!(d.source.as_deref(), Some(a.as_path()));
        assert_eq!(d.script, "vif-nat");
        assert_eq!(d.bridge, "br1");
        assert_eq!(d.gatewaydev.as_deref(), Some("eth1"));
        assert_eq!(
            (d.nat_network, d.nat_prefix),
            (Ipv4Addr::new(10, 7, 0, 0), 16)
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn bad_values_are_named() {
        let p = Path::new("/etc/domus/xl.conf");
        let e = NetDefaults::parse(p, "domus.nat.subnet=\"10.0.0.1/24\"\n").expect_err("host bits");
        assert!(
            e.to_string().contains("domus.nat.subnet") && e.to_string().contains("host bits"),
            "{e}"
        );
        let e = NetDefaults::parse(p, "vif.default.bridge=3\n").expect_err("number");
        assert!(
            e.to_string().contains("vif.default.bridge") && e.to_string().contains("string"),
            "{e}"
        );
        let e = NetDefaults::parse(p, "vif.default.bridge=\"a/b\"\n").expect_err("ifname");
        assert!(e.to_string().contains("a/b"), "{e}");
        let e = NetDefaults::parse(p, "vif.default.bridge=\n").expect_err("syntax");
        assert!(e.to_string().contains("xl.conf"), "{e}");
    }
}
