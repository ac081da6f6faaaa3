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
    /// Disks in config order (virtio-mmio slot i = disk i); targets absolute after `resolve_paths`.
    pub disks: Vec<domus_config::DiskConfig>,
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
        for d in &mut self.disks {
            if let Some(t) = &d.target {
                if Path::new(t).is_relative() {
                    d.target = Some(cwd.join(t).to_string_lossy().into_owned());
                }
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

/// The domain configuration cannot be read or used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file cannot be read.
    #[error("cannot read config file {path}")]
    Read {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// xl.cfg syntax or values (domus-config's located error).
    #[error(transparent)]
    Xl(#[from] domus_config::ConfigError),
    /// Malformed JSON.
    #[error("invalid domain JSON in {path}")]
    Json {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// Something the VMM cannot run.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// HVM needs firmware.
    #[error("type = \"hvm\" needs firmware this VMM does not have: boot the kernel directly with type = \"pvh\" and kernel = \"...\"")]
    Hvm,
    /// Bootloader without kernel.
    #[error("bootloader = \"{0}\" is not supported: set kernel (and ramdisk) to boot the domain's kernel directly")]
    Bootloader(String),
}

impl VmConfig {
    /// From domus-config's typed domain (contract 1); paths stay as written.
    ///
    /// # Errors
    /// No kernel, an HVM domain, or a bootloader instead of a kernel.
    pub fn from_domain_config(d: &domus_config::DomainConfig) -> Result<Self, LoadError> {
        for w in &d.warnings {
            tracing::warn!(domname = %d.name, "{w}");
        }
        if d.domain_type == domus_config::DomainType::Hvm {
            return Err(LoadError::Hvm);
        }
        let kernel = match (d.kernel.as_deref().filter(|k| !k.is_empty()), &d.bootloader) {
            (Some(k), _) => k,
            (None, Some(b)) => return Err(LoadError::Bootloader(b.clone())),
            (None, None) => return Err(ConfigError::NoKernel.into()),
        };
        Ok(Self {
            name: d.name.clone(),
            kernel: PathBuf::from(kernel),
            ramdisk: d
                .ramdisk
                .as_deref()
                .filter(|r| !r.is_empty())
                .map(PathBuf::from),
            cmdline: d.cmdline.clone().unwrap_or_default(),
            memory_mib: d.memory_mib,
            vcpus: d.vcpus,
            disks: d.disks.clone(),
        })
    }

    /// `--config FILE [KEY=VALUE ...]`: xl.cfg through `DomainConfig::from_xl`.
    ///
    /// # Errors
    /// [`LoadError`].
    pub fn load_xl(path: &Path, overrides: &[String]) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let d = domus_config::DomainConfig::from_xl(&path.to_string_lossy(), &text, overrides)?;
        Self::from_domain_config(&d)
    }

    /// `--config-json FILE`: a `DomainConfig` as JSON.
    ///
    /// # Errors
    /// [`LoadError`].
    pub fn load_json(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let d: domus_config::DomainConfig =
            serde_json::from_str(&text).map_err(|source| LoadError::Json {
                path: path.to_owned(),
                source,
            })?;
        Self::from_domain_config(&d)
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
            disks: Vec::new(),
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
    fn from_xl_and_json() {
        let text = "name = \"hello\"\nkernel = \"target/debug/domus-probe\"\nextra = \"probe=hello\"\nmemory = 64\n";
        let d =
            domus_config::DomainConfig::from_xl("examples/hello.cfg", text, &["vcpus=2".into()])
                .unwrap();
        let c = VmConfig::from_domain_config(&d).unwrap();
        assert_eq!(c.name, "hello");
        assert_eq!((c.memory_mib, c.vcpus), (64, 2));
        assert_eq!(c.kernel, PathBuf::from("target/debug/domus-probe"));
        assert_eq!(c.cmdline, "probe=hello");
        let json = serde_json::to_string(&d).unwrap();
        let back: domus_config::DomainConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(VmConfig::from_domain_config(&back).unwrap(), c);
        let d = domus_config::DomainConfig::from_xl("x.cfg", "memory = 64\n", &[]).unwrap();
        assert!(matches!(
            VmConfig::from_domain_config(&d),
            Err(LoadError::Config(ConfigError::NoKernel))
        ));
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
