//! The resolved machine configuration the VMM runs: no `Option`s left for things a machine needs.
//!
//! It comes from `domus_config::DomainConfig` (xl.cfg or its JSON, see `main.rs`) or, for tests, from
//! explicit flags. Paths are resolved against the VMM's current directory here (xl's rule), and every
//! value is checked before any KVM resource is created.

use std::path::{Path, PathBuf};

/// Largest guest RAM we accept regardless of the host (1 TiB): a typo guard before asking the host.
const MAX_MEMORY_MIB: u64 = 1 << 20;

/// What the VMM needs to build and boot one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// Domain name (used in logs).
    pub name: String,
    /// Kernel image (absolute after [`VmConfig::resolve_paths`]).
    pub kernel: PathBuf,
    /// Optional initial ramdisk.
    pub ramdisk: Option<PathBuf>,
    /// Kernel command line, already composed (xl's `cmdline`, or `root=` + `extra`).
    pub cmdline: String,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// Number of vCPUs.
    pub vcpus: u32,
}

/// A configuration value the VMM cannot run with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// memory = 0.
    #[error("memory must be at least 1 MiB (got 0)")]
    MemoryZero,
    /// Too small to hold the fixed low-memory layout plus a kernel.
    #[error("memory = {memory_mib} MiB is too small: the machine needs at least {min_mib} MiB")]
    MemoryTooSmall {
        /// Requested.
        memory_mib: u64,
        /// Minimum.
        min_mib: u64,
    },
    /// More than the host can give.
    #[error("memory = {memory_mib} MiB is more than this host can give ({available_mib} MiB of RAM + swap)")]
    MemoryTooLarge {
        /// Requested.
        memory_mib: u64,
        /// Host RAM + swap.
        available_mib: u64,
    },
    /// vcpus = 0.
    #[error("vcpus must be at least 1 (got 0)")]
    VcpusZero,
    /// Over KVM's limit.
    #[error("vcpus = {vcpus} is over KVM's limit of {max} vCPUs per VM on this host")]
    VcpusTooMany {
        /// Requested.
        vcpus: u32,
        /// KVM_CAP_MAX_VCPUS (also bounded by the 254 APIC ids the MADT/MP table can describe).
        max: u32,
    },
    /// No kernel in the config.
    #[error("no kernel given: set `kernel = \"PATH\"` in the domain config")]
    NoKernel,
}

impl VmConfig {
    /// Makes `kernel` and `ramdisk` absolute against `cwd` (xl resolves them against its current directory).
    pub fn resolve_paths(&mut self, cwd: &Path) {
        if self.kernel.is_relative() {
            self.kernel = cwd.join(&self.kernel);
        }
        if let Some(r) = &self.ramdisk {
            if r.is_relative() {
                self.ramdisk = Some(cwd.join(r));
            }
        }
    }

    /// Checks memory and vCPU counts against the host (`host_mem_mib`: RAM + swap) and KVM (`max_vcpus`).
    ///
    /// # Errors
    /// One [`ConfigError`] naming the bad value and the limit.
    pub fn validate(&self, host_mem_mib: u64, max_vcpus: u32) -> Result<(), ConfigError> {
        if self.memory_mib == 0 {
            return Err(ConfigError::MemoryZero);
        }
        let min_mib = 4;
        if self.memory_mib < min_mib {
            return Err(ConfigError::MemoryTooSmall {
                memory_mib: self.memory_mib,
                min_mib,
            });
        }
        if self.memory_mib > host_mem_mib.min(MAX_MEMORY_MIB) {
            return Err(ConfigError::MemoryTooLarge {
                memory_mib: self.memory_mib,
                available_mib: host_mem_mib,
            });
        }
        if self.vcpus == 0 {
            return Err(ConfigError::VcpusZero);
        }
        let max = max_vcpus.min(254);
        if self.vcpus > max {
            return Err(ConfigError::VcpusTooMany {
                vcpus: self.vcpus,
                max,
            });
        }
        Ok(())
    }
}

/// The fields of a domus-config `DomainConfig` (contract 1 JSON, as `domus create -N` prints it) that the
/// VMM uses; the others (disks, vifs, actions, ...) belong to domusd and are ignored here.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct DomainJson {
    /// Domain name.
    pub name: String,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// Kernel path as written (relative to the VMM's cwd).
    pub kernel: Option<String>,
    /// Ramdisk path.
    pub ramdisk: Option<String>,
    /// Composed command line.
    pub cmdline: Option<String>,
}

/// A config that cannot be turned into a [`VmConfig`].
#[derive(Debug, thiserror::Error)]
pub enum DomainJsonError {
    /// Malformed JSON.
    #[error("invalid domain JSON")]
    Json(#[from] serde_json::Error),
    /// No kernel.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl VmConfig {
    /// From a domain's JSON (contract 1); paths stay as written.
    ///
    /// # Errors
    /// Malformed JSON or no kernel.
    pub fn from_domain_json(text: &str) -> Result<Self, DomainJsonError> {
        let d: DomainJson = serde_json::from_str(text)?;
        Self::from_parts(d)
    }

    /// From the fields of a domain config.
    ///
    /// # Errors
    /// No kernel.
    pub fn from_parts(d: DomainJson) -> Result<Self, DomainJsonError> {
        let kernel = d
            .kernel
            .filter(|k| !k.is_empty())
            .ok_or(ConfigError::NoKernel)?;
        Ok(Self {
            name: d.name,
            kernel: PathBuf::from(kernel),
            ramdisk: d.ramdisk.filter(|r| !r.is_empty()).map(PathBuf::from),
            cmdline: d.cmdline.unwrap_or_default(),
            memory_mib: d.memory_mib,
            vcpus: d.vcpus,
        })
    }
}

/// Host RAM + swap in MiB from `/proc/meminfo` (what an overcommitting host could at most give).
pub fn host_memory_mib() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mut total_kib = 0u64;
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let key = it.next().unwrap_or("");
        let val: u64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        if key == "MemTotal:" || key == "SwapTotal:" {
            total_kib = total_kib.saturating_add(val);
        }
    }
    if total_kib == 0 {
        u64::MAX
    } else {
        total_kib / 1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> VmConfig {
        VmConfig {
            name: "t".into(),
            kernel: "k".into(),
            ramdisk: Some("r".into()),
            cmdline: String::new(),
            memory_mib: 64,
            vcpus: 1,
        }
    }

    #[test]
    fn validate_limits() {
        assert!(cfg().validate(1024, 8).is_ok());
        let mut c = cfg();
        c.memory_mib = 0;
        assert!(matches!(c.validate(1024, 8), Err(ConfigError::MemoryZero)));
        c.memory_mib = 2048;
        assert!(matches!(
            c.validate(1024, 8),
            Err(ConfigError::MemoryTooLarge { .. })
        ));
        let mut c = cfg();
        c.vcpus = 0;
        assert!(matches!(c.validate(1024, 8), Err(ConfigError::VcpusZero)));
        c.vcpus = 9;
        assert!(matches!(
            c.validate(1024, 8),
            Err(ConfigError::VcpusTooMany { max: 8, .. })
        ));
    }

    #[test]
    fn from_contract_json() {
        let text = r#"{"name":"hello","uuid":"u","type":"pvh","memory_mib":64,"maxmem_mib":64,"vcpus":2,
            "maxvcpus":2,"cpus":null,"kernel":"target/debug/domus-probe","ramdisk":null,
            "cmdline":"probe=hello","bootloader":null,"on_poweroff":"destroy","on_reboot":"restart",
            "on_crash":"destroy","on_watchdog":"destroy","disks":[],"vifs":[],"pci":[],"warnings":[]}"#;
        let c = VmConfig::from_domain_json(text).unwrap();
        assert_eq!(c.name, "hello");
        assert_eq!(c.vcpus, 2);
        assert_eq!(c.kernel, PathBuf::from("target/debug/domus-probe"));
        assert_eq!(c.cmdline, "probe=hello");
        let no_kernel = text.replace(r#""kernel":"target/debug/domus-probe""#, r#""kernel":null"#);
        assert!(VmConfig::from_domain_json(&no_kernel).is_err());
        assert!(VmConfig::from_domain_json("{").is_err());
    }

    #[test]
    fn relative_paths_resolve_against_cwd() {
        let mut c = cfg();
        c.resolve_paths(Path::new("/a/b"));
        assert_eq!(c.kernel, PathBuf::from("/a/b/k"));
        assert_eq!(c.ramdisk, Some(PathBuf::from("/a/b/r")));
        c.resolve_paths(Path::new("/x"));
        assert_eq!(c.kernel, PathBuf::from("/a/b/k"));
    }
}
