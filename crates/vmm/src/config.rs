//! The machine configuration the VMM runs ([`VmConfig`]): a `domus_spec::VmSpec` with its resources
//! open. Every way of starting the VMM goes through the spec conversion of `domus-spec`:
//! - `--spec-json FILE` (how domusd starts it): the spec as domusd prepared it; each resource with an
//!   `fd` is taken from the inherited descriptor of that number (see `domus_spec`'s hand-off docs), the
//!   others are opened from their paths;
//! - `--config FILE [KEY=VALUE ...]` and `--config-json FILE` (standalone): xl.cfg (or its JSON) through
//!   `domus_spec::prepare`, which checks it against the host and opens every file itself;
//! - hidden `--kernel` flags (tests, benchmarks): the machine built from flags directly, as domusd's
//!   spec is (no conversion in the VMM); the kernel is checked when it is loaded.
//!
//! [`VmConfig::validate`] then checks memory and vCPUs against KVM itself once it is open.

use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use domus_spec::{HostLimits, Resource, VmSpec};

// The spec crate's machine model and the devices built here must agree on the interrupt lines.
const _: () = assert!(crate::devices::virtio::MAX_DEVICES == domus_spec::MAX_VIRTIO_DEVICES);

/// Largest guest RAM we accept regardless of the host (1 TiB): a typo guard before asking the host.
const MAX_MEMORY_MIB: u64 = domus_spec::MAX_MEMORY_MIB;

/// A file the VMM reads or serves: its path (for messages) and, when already open, the open file.
#[derive(Debug)]
pub struct Source {
    /// Path, absolute when it came from a spec.
    pub path: PathBuf,
    /// The open file (inherited or opened by the spec conversion); `None`: open `path` when needed.
    pub file: Option<File>,
    /// The kernel's bytes when the spec conversion in this process already read them (taken, and so
    /// freed, by the boot loader).
    pub image: std::sync::Mutex<Option<Vec<u8>>>,
}

impl Source {
    /// A source opened from `path` when it is read.
    pub fn path(path: PathBuf) -> Self {
        Self {
            path,
            file: None,
            image: std::sync::Mutex::new(None),
        }
    }

    /// All bytes, from the start of the file.
    ///
    /// # Errors
    /// The open or read failure.
    pub fn read_all(&self) -> std::io::Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        match &self.file {
            Some(f) => {
                let mut f = f;
                f.seek(SeekFrom::Start(0))?;
                let mut v = Vec::new();
                f.read_to_end(&mut v)?;
                Ok(v)
            }
            None => std::fs::read(&self.path),
        }
    }

    /// The kernel's bytes, gzip unwrapped.
    ///
    /// # Errors
    /// [`domus_spec::image::ImageError`].
    pub fn read_kernel(&self) -> Result<Vec<u8>, domus_spec::image::ImageError> {
        let preloaded = self
            .image
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match (preloaded, &self.file) {
            (Some(image), _) => Ok(image),
            (None, Some(f)) => domus_spec::image::read_kernel_file(f, &self.path),
            (None, None) => domus_spec::image::read_kernel(&self.path),
        }
    }
}

/// One disk of the machine: the spec's description and its open image or device.
#[derive(Debug)]
pub struct VmDisk {
    /// What the guest gets.
    pub spec: domus_spec::DiskSpec,
    /// The open media (`None`: an empty cdrom drive).
    pub file: Option<File>,
}

/// What the VMM needs to build and boot one domain.
#[derive(Debug)]
pub struct VmConfig {
    /// Domain name (used in logs).
    pub name: String,
    /// Kernel image.
    pub kernel: Source,
    /// Optional initial ramdisk.
    pub ramdisk: Option<Source>,
    /// Kernel command line, already composed (xl's `cmdline`, or `root=` + `extra`).
    pub cmdline: String,
    /// Guest RAM in MiB (with a balloon: the domain's `maxmem`).
    pub memory_mib: u64,
    /// The virtio-balloon (in the slot after the NICs) and its first target, MiB: the memory the
    /// guest keeps (`memory`); `None`: the machine has no balloon.
    pub balloon: Option<u64>,
    /// Number of vCPUs online at boot.
    pub vcpus: u32,
    /// Possible vCPUs (`maxvcpus`, at least `vcpus`): the MADT lists them all, `vcpu-set` plugs them.
    pub max_vcpus: u32,
    /// Disks in config order (virtio-mmio slot i = disk i).
    pub disks: Vec<VmDisk>,
    /// The entropy device (virtio-rng, in the slot after the disks); `None`: the domain has none.
    pub rng: Option<domus_spec::RngSpec>,
    /// NICs in `vif` order (the slots after the entropy device).
    pub nics: Vec<VmNic>,
    /// Host CPUs each vCPU thread is pinned to from its start (`cpus`; index = vCPU, an empty or
    /// missing entry = any CPU).
    pub vcpu_affinity: Vec<Vec<u32>>,
    /// Restore from the snapshot stream read from this descriptor instead of booting the kernel
    /// (`restore_fd` of the spec; see [`crate::snapshot`]).
    pub restore: Option<File>,
    /// Written one byte once the restore stream is being read, then closed (`restore_ready_fd` of
    /// the spec).
    pub restore_ready: Option<File>,
    /// Take the writable disks' locks before the guest runs (`lock_disks_at_start` of the spec: the
    /// receiving end of a live migration; see `machine::disk_locks`).
    pub lock_disks_at_start: bool,
}

/// One NIC of the machine: the spec's description and, when domusd handed the TAP over, its
/// descriptor (else the TAP is attached by name when the machine is built).
#[derive(Debug)]
pub struct VmNic {
    /// What the guest gets, and the TAP's name.
    pub spec: domus_spec::NicSpec,
    /// The inherited TAP descriptor, if any.
    pub fd: Option<OwnedFd>,
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
    /// maxvcpus below vcpus.
    #[error(
        "maxvcpus = {max_vcpus} is below vcpus = {vcpus}: the domain could not start its vCPUs"
    )]
    MaxVcpusBelowVcpus {
        /// Requested possible vCPUs.
        max_vcpus: u32,
        /// Boot vCPUs.
        vcpus: u32,
    },
    /// maxvcpus over KVM's limit.
    #[error("maxvcpus = {max_vcpus} is over KVM's limit of {max} vCPUs per VM on this host")]
    MaxVcpusTooMany {
        /// Requested.
        max_vcpus: u32,
        /// The limit.
        max: u32,
    },
    /// No kernel in the config.
    #[error("no kernel given: set `kernel = \"PATH\"` in the domain config")]
    NoKernel,
    /// More virtio devices than the machine has slots for.
    #[error("{disks} disks + {rng} entropy device + {nics} NICs + {balloon} balloon = {total} virtio devices: the machine has room for {max}")]
    TooManyDevices {
        /// Balloons (0 or 1).
        balloon: usize,
        /// Disks.
        disks: usize,
        /// Entropy devices (0 or 1).
        rng: usize,
        /// NICs.
        nics: usize,
        /// Sum.
        total: usize,
        /// [`crate::devices::virtio::MAX_DEVICES`].
        max: usize,
    },
}

impl VmConfig {
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
        if self.max_vcpus < self.vcpus {
            return Err(ConfigError::MaxVcpusBelowVcpus {
                max_vcpus: self.max_vcpus,
                vcpus: self.vcpus,
            });
        }
        if self.max_vcpus > max {
            return Err(ConfigError::MaxVcpusTooMany {
                max_vcpus: self.max_vcpus,
                max,
            });
        }
        let rng = usize::from(self.rng.is_some());
        let balloon = usize::from(self.balloon.is_some());
        let total = self.disks.len() + rng + self.nics.len() + balloon;
        let max = crate::devices::virtio::MAX_DEVICES;
        if total > max {
            return Err(ConfigError::TooManyDevices {
                balloon,
                disks: self.disks.len(),
                rng,
                nics: self.nics.len(),
                total,
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
    /// Malformed spec JSON.
    #[error("invalid VM specification in {path}")]
    SpecJson {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// What the spec conversion refused (every problem, located).
    #[error(transparent)]
    Spec(#[from] domus_spec::SpecErrors),
    /// An inherited descriptor the spec names is not open.
    #[error("resource {path}: inherited descriptor {fd} is not open")]
    BadFd {
        /// The resource.
        path: PathBuf,
        /// The descriptor.
        fd: i32,
    },
}

impl VmConfig {
    /// From a prepared spec (files opened by the conversion).
    pub fn from_prepared(p: domus_spec::Prepared) -> Self {
        let domus_spec::Prepared { spec, files, .. } = p;
        let (ram_mib, balloon) = (spec.ram_mib(), spec.balloon.then_some(spec.memory_mib));
        let disks = spec
            .disks
            .iter()
            .cloned()
            .zip(files.disks)
            .map(|(spec, file)| VmDisk { spec, file })
            .collect();
        Self {
            name: spec.name,
            kernel: Source {
                path: spec.kernel.path,
                file: Some(files.kernel),
                image: std::sync::Mutex::new(Some(files.kernel_image)),
            },
            ramdisk: spec
                .ramdisk
                .map(|r| r.path)
                .zip(files.ramdisk)
                .map(|(path, f)| Source {
                    path,
                    file: Some(f),
                    image: std::sync::Mutex::new(None),
                }),
            cmdline: spec.cmdline,
            memory_mib: ram_mib,
            balloon,
            vcpus: spec.vcpus,
            max_vcpus: spec.maxvcpus.max(spec.vcpus),
            disks,
            rng: spec.rng,
            nics: spec
                .nics
                .into_iter()
                .map(|spec| VmNic { spec, fd: None })
                .collect(),
            vcpu_affinity: spec.placement.hard,
            restore: None,
            restore_ready: None,
            lock_disks_at_start: spec.lock_disks_at_start,
        }
    }

    /// From a spec as domusd passes it: resources with an `fd` are taken from this process's inherited
    /// descriptors (each at most once), the others are opened from their paths when used.
    ///
    /// # Errors
    /// [`LoadError::BadFd`] when a named descriptor is not open.
    pub fn from_spec(spec: VmSpec) -> Result<Self, LoadError> {
        let (ram_mib, balloon) = (spec.ram_mib(), spec.balloon.then_some(spec.memory_mib));
        let mut taken = std::collections::HashSet::new();
        let mut take = |r: Resource| -> Result<Source, LoadError> {
            let file = match r.fd {
                Some(fd) => Some(take_inherited(fd, &r.path, &mut taken)?),
                None => None,
            };
            Ok(Source {
                path: r.path,
                file,
                image: std::sync::Mutex::new(None),
            })
        };
        let kernel = take(spec.kernel)?;
        let ramdisk = spec.ramdisk.map(&mut take).transpose()?;
        let mut disks = Vec::with_capacity(spec.disks.len());
        for d in spec.disks {
            let file = match &d.media {
                Some(r) => match take(r.clone())? {
                    Source { file: Some(f), .. } => Some(f),
                    Source {
                        path, file: None, ..
                    } => Some(open_disk(&path, &d)?),
                },
                None => None,
            };
            disks.push(VmDisk { spec: d, file });
        }
        let mut nics = Vec::with_capacity(spec.nics.len());
        for n in spec.nics {
            let fd = match n.tap.fd {
                Some(fd) => {
                    let tap = PathBuf::from(format!("TAP {}", n.tap.name));
                    Some(OwnedFd::from(take_inherited(fd, &tap, &mut taken)?))
                }
                None => None,
            };
            nics.push(VmNic { spec: n, fd });
        }
        let restore = match spec.restore_fd {
            Some(fd) => Some(take_inherited(fd, Path::new("restore image"), &mut taken)?),
            None => None,
        };
        let restore_ready = match spec.restore_ready_fd {
            Some(fd) => Some(take_inherited(
                fd,
                Path::new("restore notifier"),
                &mut taken,
            )?),
            None => None,
        };
        Ok(Self {
            memory_mib: ram_mib,
            balloon,
            name: spec.name,
            kernel,
            ramdisk,
            cmdline: spec.cmdline,
            vcpus: spec.vcpus,
            max_vcpus: spec.maxvcpus.max(spec.vcpus),
            disks,
            rng: spec.rng,
            nics,
            vcpu_affinity: spec.placement.hard,
            restore,
            restore_ready,
            lock_disks_at_start: spec.lock_disks_at_start,
        })
    }

    /// `--config FILE [KEY=VALUE ...]`: xl.cfg through `DomainConfig::from_xl` and the spec conversion.
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

    /// `--config-json FILE`: a `DomainConfig` as JSON, through the spec conversion.
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

    /// `--spec-json FILE`: a [`VmSpec`] as domusd writes it.
    ///
    /// # Errors
    /// [`LoadError`].
    pub fn load_spec(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let spec: VmSpec = serde_json::from_str(&text).map_err(|source| LoadError::SpecJson {
            path: path.to_owned(),
            source,
        })?;
        say_boot_protocol(&spec);
        Self::from_spec(spec)
    }

    /// A domain config through the spec conversion (relative paths against the current directory), with
    /// its warnings logged and its boot protocol said in one line.
    ///
    /// # Errors
    /// [`LoadError::Spec`].
    pub fn from_domain_config(d: &domus_config::DomainConfig) -> Result<Self, LoadError> {
        for w in &d.warnings {
            tracing::warn!(domname = %d.name, "{w}");
        }
        let p = domus_spec::prepare(d, &HostLimits::probe())?;
        // `bootloader = "pygrub"` ran inside the conversion: say what it chose.
        for line in &p.boot {
            eprintln!("domus-vmm: {line}");
        }
        say_boot_protocol(&p.spec);
        Ok(Self::from_prepared(p))
    }
}

/// For `type = "pv"` (xl's default, which Domus boots through the kernel's own PVH or Linux entry), says
/// in one stderr line which boot protocol the domain uses; otherwise only logs it.
fn say_boot_protocol(spec: &VmSpec) {
    if spec.domain_type == domus_config::DomainType::Pv {
        eprintln!("domus-vmm: domain {}: {}", spec.name, spec.boot_line());
    } else {
        tracing::info!(domname = %spec.name, "{}", spec.boot_line());
    }
}

/// Takes ownership of inherited descriptor `fd` (once).
fn take_inherited(
    fd: i32,
    path: &Path,
    taken: &mut std::collections::HashSet<i32>,
) -> Result<File, LoadError> {
    let bad = || LoadError::BadFd {
        path: path.to_owned(),
        fd,
    };
    // Only descriptors above stdio, open in this process, each taken once: then this process owns it.
    if fd <= 2 || !taken.insert(fd) || !crate::sys::fd_is_open(fd) {
        return Err(bad());
    }
    // SAFETY: `fd` is open (checked above), was handed to this process by domusd for exactly this
    // resource (the spec names it), nothing else in the process refers to it, and it is taken only once
    // (the `taken` set), so the OwnedFd is its sole owner.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(File::from(owned))
}

/// Opens a disk named by path (a spec written by hand, without descriptors).
fn open_disk(path: &Path, d: &domus_spec::DiskSpec) -> Result<File, LoadError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.read(true).write(!d.read_only);
    if d.direct {
        o.custom_flags(libc::O_DIRECT);
    }
    o.open(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> VmConfig {
        VmConfig {
            name: "t".into(),
            kernel: Source::path("k".into()),
            ramdisk: Some(Source::path("r".into())),
            cmdline: String::new(),
            memory_mib: 64,
            vcpus: 1,
            max_vcpus: 1,
            disks: Vec::new(),
            rng: Some(domus_spec::RngSpec::default()),
            balloon: None,
            nics: Vec::new(),
            vcpu_affinity: Vec::new(),
            restore: None,
            restore_ready: None,
            lock_disks_at_start: false,
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
        let mut c = cfg();
        c.vcpus = 2;
        assert!(matches!(
            c.validate(1024, 8),
            Err(ConfigError::MaxVcpusBelowVcpus { .. })
        ));
        c.max_vcpus = 9;
        let e = c.validate(1024, 8).unwrap_err().to_string();
        assert_eq!(
            e,
            "maxvcpus = 9 is over KVM's limit of 8 vCPUs per VM on this host"
        );
        c.max_vcpus = 8;
        assert!(c.validate(1024, 8).is_ok());
    }

    #[test]
    fn device_limit_counts_disks_and_rng() {
        let disk = VmDisk {
            spec: domus_spec::DiskSpec {
                vdev: "xvda".into(),
                devnum: 51712,
                media: None,
                read_only: true,
                cdrom: true,
                discard: false,
                direct: false,
            },
            file: None,
        };
        let mut c = cfg();
        c.disks = (0..crate::devices::virtio::MAX_DEVICES)
            .map(|_| VmDisk {
                spec: disk.spec.clone(),
                file: None,
            })
            .collect();
        assert!(matches!(
            c.validate(1024, 8),
            Err(ConfigError::TooManyDevices {
                total: 15,
                max: 14,
                ..
            })
        ));
        c.rng = None;
        assert!(c.validate(1024, 8).is_ok());
    }

    #[test]
    fn from_xl_and_json() {
        let kernel = std::env::temp_dir().join(format!("domus-vmm-cfg-{}", std::process::id()));
        let elf = domus_spec::image::testing::elf_with_notes(&[(
            b"Xen",
            18,
            &0x10_0000u32.to_le_bytes(),
        )]);
        std::fs::write(&kernel, elf).unwrap();
        let text = format!(
            "name = \"hello\"\nkernel = \"{}\"\nextra = \"probe=hello\"\nmemory = 64\n",
            kernel.display()
        );
        let d =
            domus_config::DomainConfig::from_xl("examples/hello.cfg", &text, &["vcpus=2".into()])
                .unwrap();
        let c = VmConfig::from_domain_config(&d).unwrap();
        assert_eq!(c.name, "hello");
        assert_eq!((c.memory_mib, c.vcpus), (64, 2));
        assert_eq!(c.kernel.path, kernel);
        assert!(c.kernel.file.is_some(), "the conversion opened the kernel");
        assert_eq!(c.cmdline, "probe=hello");
        let json = serde_json::to_string(&d).unwrap();
        let back: domus_config::DomainConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(
            VmConfig::from_domain_config(&back).unwrap().cmdline,
            c.cmdline
        );
        std::fs::remove_file(&kernel).unwrap();
        let d = domus_config::DomainConfig::from_xl("x.cfg", "memory = 64\n", &[]).unwrap();
        let e = VmConfig::from_domain_config(&d).unwrap_err();
        assert!(e.to_string().contains("no kernel given"), "{e}");
    }

    #[test]
    fn inherited_descriptors_are_checked() {
        let mut taken = std::collections::HashSet::new();
        assert!(matches!(
            take_inherited(1, Path::new("k"), &mut taken),
            Err(LoadError::BadFd { fd: 1, .. })
        ));
        assert!(matches!(
            take_inherited(100_000, Path::new("k"), &mut taken),
            Err(LoadError::BadFd { .. })
        ));
    }
}
