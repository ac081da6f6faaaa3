//! Where Domus keeps its files, shared by domusd and the CLI so both honour the same variables.
//!
//! | variable | default | holds |
//! |---|---|---|
//! | `DOMUS_RUNTIME_DIR` | `/run/domus` | `domusd.sock`, `xenstored/socket`, `domains/<domid>/` (VMM sockets) |
//! | `DOMUS_STATE_DIR` | `/var/lib/domus` | domain records, the store's journal |
//! | `DOMUS_LOG_DIR` | `/var/log/domus` | `console/guest-NAME.log`, `domus-vmm-NAME.log` |
//! | `DOMUS_CONFIG_DIR` | `/etc/domus`, then `/etc/xen` | domain configs, `auto/` |
//!
//! This module never reads the environment itself: callers pass a lookup function.

use std::path::{Path, PathBuf};

/// Default runtime directory.
pub const DEFAULT_RUNTIME_DIR: &str = "/run/domus";
/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/domus";
/// Default log directory.
pub const DEFAULT_LOG_DIR: &str = "/var/log/domus";
/// Default config directories, searched in order.
pub const DEFAULT_CONFIG_DIRS: [&str; 2] = ["/etc/domus", "/etc/xen"];
/// Xen's own xenstored socket path, served too when domusd runs with the default paths.
pub const XEN_XENSTORED_SOCKET: &str = "/run/xenstored/socket";

/// The resolved directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Runtime directory (sockets).
    pub runtime_dir: PathBuf,
    /// Persistent state directory.
    pub state_dir: PathBuf,
    /// Log directory.
    pub log_dir: PathBuf,
    /// Config directories, searched in order.
    pub config_dirs: Vec<PathBuf>,
}

impl Paths {
    /// Resolves the paths from `DOMUS_*` variables given by `lookup` (empty values count as unset).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| lookup(k).filter(|v| !v.is_empty());
        Self {
            runtime_dir: get("DOMUS_RUNTIME_DIR")
                .map_or_else(|| DEFAULT_RUNTIME_DIR.into(), PathBuf::from),
            state_dir: get("DOMUS_STATE_DIR")
                .map_or_else(|| DEFAULT_STATE_DIR.into(), PathBuf::from),
            log_dir: get("DOMUS_LOG_DIR").map_or_else(|| DEFAULT_LOG_DIR.into(), PathBuf::from),
            config_dirs: get("DOMUS_CONFIG_DIR").map_or_else(
                || DEFAULT_CONFIG_DIRS.iter().map(PathBuf::from).collect(),
                |d| vec![PathBuf::from(d)],
            ),
        }
    }

    /// The API socket.
    pub fn api_socket(&self) -> PathBuf {
        self.runtime_dir.join("domusd.sock")
    }

    /// The store's socket under the runtime directory.
    pub fn xenstored_socket(&self) -> PathBuf {
        self.runtime_dir.join("xenstored").join("socket")
    }

    /// Whether the runtime directory is the default (then the store is also served at Xen's path).
    pub fn is_default_runtime(&self) -> bool {
        self.runtime_dir == Path::new(DEFAULT_RUNTIME_DIR)
    }

    /// Per-domain runtime directory (the VMM's sockets).
    pub fn domain_runtime_dir(&self, domid: u32) -> PathBuf {
        self.runtime_dir.join("domains").join(domid.to_string())
    }

    /// Console log of the domain named `name`.
    pub fn console_log(&self, name: &str) -> PathBuf {
        self.log_dir
            .join("console")
            .join(format!("guest-{name}.log"))
    }

    /// The VMM's own stderr log for the domain named `name`.
    pub fn vmm_log(&self, name: &str) -> PathBuf {
        self.log_dir.join(format!("domus-vmm-{name}.log"))
    }

    /// The autostart directory: `auto/` under the first config directory.
    pub fn autostart_dir(&self) -> PathBuf {
        self.config_dirs
            .first()
            .map_or_else(|| PathBuf::from("/etc/domus/auto"), |d| d.join("auto"))
    }

    /// Finds a config as xl does: the name as given if it exists, else the name under each config dir.
    pub fn find_config(&self, given: &str) -> Option<PathBuf> {
        let p = Path::new(given);
        if p.exists() {
            return Some(p.to_path_buf());
        }
        if p.is_absolute() {
            return None;
        }
        self.config_dirs
            .iter()
            .map(|d| d.join(p))
            .find(|c| c.exists())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_and_overrides() {
        let d = Paths::from_lookup(|_| None);
        assert_eq!(d.api_socket(), Path::new("/run/domus/domusd.sock"));
        assert_eq!(
            d.config_dirs,
            vec![PathBuf::from("/etc/domus"), PathBuf::from("/etc/xen")]
        );
        assert!(d.is_default_runtime());
        let env: HashMap<&str, &str> = [
            ("DOMUS_RUNTIME_DIR", "/tmp/r"),
            ("DOMUS_CONFIG_DIR", "/tmp/c"),
            ("DOMUS_LOG_DIR", ""),
        ]
        .into();
        let p = Paths::from_lookup(|k| env.get(k).map(|v| (*v).to_owned()));
        assert_eq!(p.xenstored_socket(), Path::new("/tmp/r/xenstored/socket"));
        assert_eq!(p.domain_runtime_dir(7), Path::new("/tmp/r/domains/7"));
        assert_eq!(
            p.console_log("a"),
            Path::new("/var/log/domus/console/guest-a.log")
        );
        assert_eq!(p.autostart_dir(), Path::new("/tmp/c/auto"));
        assert!(!p.is_default_runtime());
    }

    #[test]
    fn config_lookup_searches_dirs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("foo"), "x").unwrap();
        let p = Paths {
            runtime_dir: "/r".into(),
            state_dir: "/s".into(),
            log_dir: "/l".into(),
            config_dirs: vec!["/nonexistent".into(), dir.path().to_path_buf()],
        };
        assert_eq!(p.find_config("foo"), Some(dir.path().join("foo")));
        assert_eq!(p.find_config("bar"), None);
    }
}
