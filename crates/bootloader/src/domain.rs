//! A domain's `bootloader = "pygrub"` in one call, for the places that resolve a domain's kernel
//! (domusd before it starts the VMM, `domus create -N`, standalone `domus-vmm --config`).
//!
//! As libxl does: the boot disk is the domain's first disk; the config's `kernel`, `ramdisk` and command
//! line become `--kernel`, `--ramdisk` and `--args`, then `bootloader_args` (see [`crate::request`]).

use std::path::{Path, PathBuf};

use domus_config::{DiskFormat, DomainConfig};

use crate::launch::{BootFiles, BootloaderError, Launcher};
use crate::request::{is_pygrub, ArgsError, BootRequest};

/// The domain's bootloader settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DomainBootError {
    /// A bootloader other than pygrub.
    #[error("bootloader \"{0}\" is not supported: use bootloader = \"pygrub\", or give the kernel directly with 'kernel' (and 'ramdisk', 'cmdline')")]
    NotPygrub(String),
    /// No disk to boot from.
    #[error(
        "bootloader = \"pygrub\" boots from the domain's first disk, but the config has no disk"
    )]
    NoDisk,
    /// The first disk cannot be read as a raw image.
    #[error("bootloader = \"pygrub\": the first disk ({vdev}) is {what}; pygrub reads raw images and block devices")]
    BadDisk {
        /// Its vdev.
        vdev: String,
        /// What it is instead.
        what: String,
    },
    /// `bootloader_args` are invalid.
    #[error(transparent)]
    Args(#[from] ArgsError),
    /// The `domus-bootloader` helper is missing.
    #[error("the domus-bootloader helper was not found (looked next to the running program and in ../libexec/domus)")]
    NoHelper,
    /// Running it failed.
    #[error("pygrub on {disk}")]
    Run {
        /// The boot disk.
        disk: PathBuf,
        /// Cause.
        #[source]
        source: BootloaderError,
    },
}

/// What was booted, for the caller to put in place of `kernel`/`ramdisk`/`cmdline`.
#[derive(Debug)]
pub struct DomainBoot {
    /// The extracted files (removed when this is dropped: keep it until the kernel is loaded).
    pub files: BootFiles,
    /// Notes about ignored `bootloader_args`.
    pub notes: Vec<String>,
}

impl DomainBoot {
    /// Lines to show the user: the choice, then notes and warnings.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!("pygrub: {}", self.files.summary())];
        out.extend(self.notes.iter().map(|n| format!("pygrub: warning: {n}")));
        out.extend(
            self.files
                .report
                .warnings
                .iter()
                .map(|w| format!("pygrub: warning: {w}")),
        );
        out
    }

    /// `config` with the bootloader's result in place of its kernel, ramdisk and command line (and no
    /// bootloader left), as the VMM takes it.
    pub fn apply(&self, config: &DomainConfig) -> DomainConfig {
        let mut c = config.clone();
        c.kernel = Some(self.files.kernel.display().to_string());
        c.ramdisk = self.files.ramdisk.as_ref().map(|r| r.display().to_string());
        c.cmdline = Some(self.files.cmdline.clone());
        c.bootloader = None;
        c.bootloader_args = Vec::new();
        c
    }
}

/// Runs pygrub for `config` if it has a bootloader: `Ok(None)` without one. `work_dir` (which must not
/// exist) holds the extracted files until the result is dropped; `base_dir` resolves a relative disk path.
///
/// # Errors
/// [`DomainBootError`].
pub fn boot(
    config: &DomainConfig,
    work_dir: &Path,
    base_dir: &Path,
    helper: Option<PathBuf>,
) -> Result<Option<DomainBoot>, DomainBootError> {
    let Some(bootloader) = config.bootloader.as_deref().filter(|b| !b.is_empty()) else {
        return Ok(None);
    };
    if !is_pygrub(bootloader) {
        return Err(DomainBootError::NotPygrub(bootloader.to_string()));
    }
    let disk = config.disks.first().ok_or(DomainBootError::NoDisk)?;
    let target = match (&disk.target, disk.format) {
        (Some(t), DiskFormat::Raw) if !t.is_empty() => t,
        (_, DiskFormat::Raw | DiskFormat::Empty) => {
            return Err(DomainBootError::BadDisk {
                vdev: disk.vdev.clone(),
                what: "an empty drive".into(),
            })
        }
        (_, f) => {
            return Err(DomainBootError::BadDisk {
                vdev: disk.vdev.clone(),
                what: format!("in {} format", f.as_str()),
            })
        }
    };
    let (req, notes) = BootRequest::from_config(
        config.kernel.as_deref(),
        config.ramdisk.as_deref(),
        config.cmdline.as_deref(),
        &config.bootloader_args,
    )?;
    let helper = helper
        .or_else(Launcher::find_helper)
        .ok_or(DomainBootError::NoHelper)?;
    let disk_path = base_dir.join(target);
    let files = Launcher::new(helper)
        .run(&disk_path, &req, work_dir)
        .map_err(|source| DomainBootError::Run {
            disk: disk_path.clone(),
            source,
        })?;
    Ok(Some(DomainBoot { files, notes }))
}
