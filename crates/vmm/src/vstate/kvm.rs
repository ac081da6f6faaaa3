//! The KVM system handle: opening the device (path overridable for tests) and host-wide queries.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Cap, Kvm};

/// Default KVM device node.
pub const DEFAULT_KVM_PATH: &str = "/dev/kvm";

/// Opening or querying KVM failed.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    /// The device node does not exist.
    #[error("{path} does not exist: KVM is not available on this host (load kvm_intel/kvm_amd, or kvm_pvm)")]
    Absent {
        /// Device path.
        path: PathBuf,
    },
    /// Permission denied.
    #[error("no permission to open {path}: run as root or add this user to the group owning it (usually `kvm`)")]
    NotPermitted {
        /// Device path.
        path: PathBuf,
    },
    /// Any other open failure.
    #[error("cannot open KVM device {path}")]
    Open {
        /// Device path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The path has a NUL byte.
    #[error("KVM device path {path} contains a NUL byte")]
    BadPath {
        /// Device path.
        path: PathBuf,
    },
    /// Wrong API version.
    #[error("KVM API version {0} is not supported (need 12)")]
    ApiVersion(i32),
    /// A capability the machine model needs is missing.
    #[error("KVM lacks a capability this VMM needs: {0}")]
    MissingCap(&'static str),
    /// KVM_GET_SUPPORTED_CPUID failed.
    #[error("KVM_GET_SUPPORTED_CPUID failed")]
    SupportedCpuid(#[source] vmm_sys_util::errno::Error),
}

/// An open KVM system handle plus what we learned from it.
pub struct KvmSystem {
    /// The kvm-ioctls handle.
    pub kvm: Kvm,
    /// Maximum vCPUs per VM (KVM_CAP_MAX_VCPUS, else NR_VCPUS).
    pub max_vcpus: u32,
}

impl KvmSystem {
    /// The MSRs KVM wants saved and restored with a vCPU (KVM_GET_MSR_INDEX_LIST; empty if refused).
    pub fn msr_index_list(&self) -> Vec<u32> {
        self.kvm
            .get_msr_index_list()
            .map(|l| l.as_slice().to_vec())
            .unwrap_or_default()
    }

    /// Opens `path` (normally `/dev/kvm`) and checks what the machine model needs.
    ///
    /// # Errors
    /// [`KvmError`]: absent, not permitted, or missing capabilities.
    pub fn open(path: &Path) -> Result<Self, KvmError> {
        let cpath = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_nul| {
            KvmError::BadPath {
                path: path.to_owned(),
            }
        })?;
        let kvm = Kvm::new_with_path(&cpath).map_err(|e| match e.errno() {
            libc::ENOENT => KvmError::Absent {
                path: path.to_owned(),
            },
            libc::EACCES | libc::EPERM => KvmError::NotPermitted {
                path: path.to_owned(),
            },
            n => KvmError::Open {
                path: path.to_owned(),
                source: std::io::Error::from_raw_os_error(n),
            },
        })?;
        Self::check(kvm)
    }

    /// Takes an already open KVM device (a sandboxed VMM gets it from its supervisor) and checks it.
    ///
    /// # Errors
    /// As [`KvmSystem::open`], except for opening.
    pub fn from_file(file: std::fs::File) -> Result<Self, KvmError> {
        use std::os::fd::IntoRawFd;
        // SAFETY: `file` is an open descriptor we own; `Kvm` takes over its ownership (closing it on
        // drop), and `into_raw_fd` gives up ours.
        let kvm = unsafe { <Kvm as std::os::fd::FromRawFd>::from_raw_fd(file.into_raw_fd()) };
        Self::check(kvm)
    }

    fn check(kvm: Kvm) -> Result<Self, KvmError> {
        let api = kvm.get_api_version();
        if api != 12 {
            return Err(KvmError::ApiVersion(api));
        }
        for (cap, name) in [
            (Cap::Irqchip, "KVM_CAP_IRQCHIP"),
            (Cap::Pit2, "KVM_CAP_PIT2"),
            (Cap::Irqfd, "KVM_CAP_IRQFD"),
            (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
        ] {
            if !kvm.check_extension(cap) {
                return Err(KvmError::MissingCap(name));
            }
        }
        let max_vcpus = u32::try_from(kvm.get_max_vcpus()).unwrap_or(1).max(1);
        Ok(Self { kvm, max_vcpus })
    }

    /// KVM_GET_SUPPORTED_CPUID.
    ///
    /// # Errors
    /// The ioctl failed.
    pub fn supported_cpuid(&self) -> Result<CpuId, KvmError> {
        self.kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(KvmError::SupportedCpuid)
    }
}

/// Whether the host's KVM is PVM (used only to explain failures, never to change the guest's view).
pub fn is_pvm() -> bool {
    Path::new("/sys/module/kvm_pvm").exists()
}
