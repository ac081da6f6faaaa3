//! Child side: called first thing in a sandboxed program's `main`, before it reads any untrusted input.
//! It finishes what [`crate::Command::spawn`] cannot do before `execve` (the program's dynamic loader and
//! libraries must still be reachable while it starts):
//!
//! 1. makes every mount private, so nothing below propagates to the host's mount namespace;
//! 2. mounts an empty, read-only tmpfs on the jail directory and `pivot_root`s into it, detaching the old
//!    root: afterwards no host file can be named, and nothing can be written;
//! 3. drops every capability from the bounding set, then becomes the given non-root uid/gid with no
//!    supplementary groups (which empties the permitted and effective sets) and clears the inheritable set;
//! 4. sets the parent-death signal again (credential changes clear it) and NoNewPrivs;
//! 5. installs the seccomp filter, whose default action kills the process.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::sys;

/// Where and as whom a sandboxed program locks itself in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jail {
    /// An existing empty directory; an empty read-only tmpfs is mounted on it (in the child's own mount
    /// namespace only) and becomes `/`.
    pub root: PathBuf,
    /// The uid to run as (not 0).
    pub uid: u32,
    /// The gid to run as (not 0).
    pub gid: u32,
}

/// A step of [`Jail::enter`] failed.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    /// uid or gid 0 was asked for.
    #[error("a jail must not run as uid or gid 0 (got uid {uid}, gid {gid})")]
    Root {
        /// Requested uid.
        uid: u32,
        /// Requested gid.
        gid: u32,
    },
    /// The jail directory path holds a NUL byte.
    #[error("jail directory {0} contains a NUL byte")]
    Nul(PathBuf),
    /// A system call failed.
    #[error("entering the jail at {root}: {step} failed")]
    Step {
        /// The jail directory.
        root: PathBuf,
        /// Which step.
        step: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The seccomp filter could not be installed.
    #[error("installing the seccomp filter")]
    Seccomp(#[source] seccompiler::Error),
}

impl Jail {
    /// Locks the calling process in (see the module documentation), then installs `filter`.
    /// Call it while the process is still single-threaded: the filter and credentials apply to this
    /// thread and are inherited only by threads created later.
    ///
    /// # Errors
    /// [`JailError`]; the process must then exit rather than carry on unconfined.
    pub fn enter(&self, filter: &seccompiler::BpfProgram) -> Result<(), JailError> {
        self.lock_in(true)?;
        seccompiler::apply_filter(filter).map_err(JailError::Seccomp)
    }

    /// Steps 1 to 4 of the module documentation, without a seccomp filter: for a program that installs
    /// its own filters (per thread, [`crate::filter::apply`]) right after. `die_with_parent`: set the
    /// parent-death signal (SIGKILL) again; a child that must outlive its supervisor passes false.
    ///
    /// # Errors
    /// [`JailError`]; the process must then exit rather than carry on unconfined.
    pub fn lock_in(&self, die_with_parent: bool) -> Result<(), JailError> {
        if self.uid == 0 || self.gid == 0 {
            return Err(JailError::Root {
                uid: self.uid,
                gid: self.gid,
            });
        }
        let step = |step: &'static str| {
            let root = self.root.clone();
            move |source| JailError::Step { root, step, source }
        };
        let root = CString::new(self.root.as_os_str().as_bytes())
            .map_err(|_| JailError::Nul(self.root.clone()))?;
        sys::mount(c"none", c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
            .map_err(step("making mounts private"))?;
        let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        sys::mount(
            c"tmpfs",
            &root,
            Some(c"tmpfs"),
            flags,
            Some(c"size=4k,mode=0555"),
        )
        .map_err(step("mounting the empty root"))?;
        sys::chdir(&root).map_err(step("chdir into the jail"))?;
        sys::pivot_root_here().map_err(step("pivot_root"))?;
        sys::umount_detach(c".").map_err(step("detaching the old root"))?;
        sys::chdir(c"/").map_err(step("chdir /"))?;
        for cap in 0..64 {
            // EINVAL past the kernel's last capability is expected.
            let _ = sys::prctl(libc::PR_CAPBSET_DROP, cap);
        }
        sys::become_user(self.uid, self.gid).map_err(step("dropping to the jail's uid/gid"))?;
        sys::clear_capabilities().map_err(step("clearing capabilities"))?;
        if die_with_parent {
            sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong)
                .map_err(|e| step("PR_SET_PDEATHSIG")(std::io::Error::from_raw_os_error(e)))?;
        }
        sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1)
            .map_err(|e| step("PR_SET_NO_NEW_PRIVS")(std::io::Error::from_raw_os_error(e)))?;
        Ok(())
    }
}
