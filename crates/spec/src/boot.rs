//! `bootloader = "pygrub"` as a step of the conversion: the bootloader (domus-bootloader, a sandboxed
//! child) reads the domain's first disk, and the kernel, ramdisk and command line it hands back become
//! the spec's. Its files live in a per-run directory that is removed as soon as [`crate::prepare`] has
//! opened them: the spec's resources are then open descriptors, so nothing of the guest's disk stays on
//! the host's filesystem.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use domus_bootloader::domain::{DomainBoot, DomainBootError};
use domus_config::DomainConfig;

/// Where the bootloader works and which helper it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootloaderOptions {
    /// The directory the per-run work directories are made in (created if missing).
    pub work_base: PathBuf,
    /// The `domus-bootloader` executable; `None`: next to the running program.
    pub helper: Option<PathBuf>,
}

impl Default for BootloaderOptions {
    /// Work directories in the system's temporary directory; the helper next to the running program.
    fn default() -> Self {
        Self {
            work_base: std::env::temp_dir(),
            helper: None,
        }
    }
}

/// Runs the bootloader for `cfg` (which has one). The returned boot keeps its files until dropped.
pub(crate) fn run(
    cfg: &DomainConfig,
    opts: &BootloaderOptions,
) -> Result<Option<DomainBoot>, DomainBootError> {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let _ = std::fs::create_dir_all(&opts.work_base);
    let work = opts.work_base.join(format!(
        "domus-pygrub-{}-{}-{}",
        cfg.name.replace(['/', '\0'], "_"),
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    domus_bootloader::domain::boot(cfg, &work, &cwd, opts.helper.clone())
}
