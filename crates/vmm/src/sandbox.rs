//! Locking a VMM in, the way Firecracker's jailer does, with `domus_sandbox`'s jail.
//!
//! domusd starts every VMM sandboxed: cloned into new mount, PID, IPC, UTS and network namespaces (it
//! is PID 1 of its own), with rlimits, only the descriptors it needs (KVM, kernel, ramdisk, disks, TAPs,
//! the listening console and control sockets, the outcome file), and `--jail DIR --jail-uid N
//! --jail-gid N`. The VMM reads its spec, then calls [`Sandbox::lock_in`] before it builds the machine
//! or reads anything the guest controls: an empty read-only root (`pivot_root` into DIR), the non-root
//! uid/gid, no capabilities, NoNewPrivs, and the process-wide seccomp filter; each thread then narrows
//! itself to its own filter ([`crate::seccomp`]).
//!
//! Standalone, `domus-vmm --sandbox` (root only) does the same after opening and binding everything
//! itself, with [`STANDALONE_JAIL`] as the root and uid/gid 65534 unless told otherwise; it unshares
//! the mount, IPC, UTS and network namespaces itself, but stays in the host's PID namespace (a new one
//! would need a fork, and the process's pid is the one its user started). Its socket files stay behind
//! when it exits (it can no longer remove them); the next bind replaces them.

use std::path::PathBuf;

use crate::seccomp::Filters;

/// Where a standalone `--sandbox` VMM pivots (an empty directory; each VMM mounts its own empty tmpfs
/// on it in its own mount namespace, so any number share it).
pub const STANDALONE_JAIL: &str = "/run/domus-vmm/jail";

/// The uid and gid of a standalone `--sandbox` VMM unless `--jail-uid`/`--jail-gid` say otherwise
/// (nobody/nogroup).
pub const STANDALONE_ID: u32 = 65534;

/// Where and as whom to lock in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// The (empty) directory that becomes `/`.
    pub root: PathBuf,
    /// Non-root uid.
    pub uid: u32,
    /// Non-root gid.
    pub gid: u32,
    /// Unshare the mount, IPC, UTS and network namespaces first (standalone; domusd's clone already
    /// made them).
    pub unshare: bool,
}

/// Locking in failed: the VMM must not run.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Compiling the filters.
    #[error("building the seccomp filters")]
    Filter(#[from] domus_sandbox::filter::FilterError),
    /// Creating the standalone jail directory.
    #[error("creating the jail directory {path}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// unshare(2) (needs root).
    #[error("unsharing namespaces (the sandbox needs root)")]
    Unshare(#[source] std::io::Error),
    /// A jail step.
    #[error(transparent)]
    Jail(#[from] domus_sandbox::JailError),
    /// Installing the process-wide filter.
    #[error("installing the seccomp filter")]
    Seccomp(#[from] seccompiler::Error),
}

impl Sandbox {
    /// Locks the calling (still single-threaded) process in and turns per-thread filters on.
    ///
    /// # Errors
    /// [`SandboxError`].
    pub fn lock_in(&self) -> Result<(), SandboxError> {
        if self.unshare {
            std::fs::create_dir_all(&self.root).map_err(|source| SandboxError::Dir {
                path: self.root.clone(),
                source,
            })?;
            domus_sandbox::sys::unshare(
                libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS | libc::CLONE_NEWNET,
            )
            .map_err(SandboxError::Unshare)?;
        }
        // After any namespace change: the filters name this process's pid (tgkill).
        let filters = Filters::new()?;
        // glibc would open a /sys file to size its arenas when a later thread first allocates.
        crate::sys::cap_malloc_arenas(8);
        domus_sandbox::Jail {
            root: self.root.clone(),
            uid: self.uid,
            gid: self.gid,
        }
        .lock_in(false)?;
        filters.install_process()?;
        crate::seccomp::activate(filters);
        Ok(())
    }
}
