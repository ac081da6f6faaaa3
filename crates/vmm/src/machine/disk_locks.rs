//! The writable disks' locks in a live migration: handed from the source VMM to the target VMM so
//! that never two VMMs run a guest on the same writable disk.
//!
//! domusd locks every disk it opens for a domain (an open file description lock, `F_OFD_SETLK`:
//! exclusive for a writable disk, shared for a read-only one); the lock belongs to the open file,
//! which the VMM inherits, so the VMM can release and take it again itself. A migration's target is
//! started while the source still runs, so its domusd opens the writable disks without the lock
//! (`domus_spec::prepare_incoming`, `lock_disks_at_start` in the spec). Then:
//!
//! 1. The source pauses the guest for the stop-and-copy (its device threads drain their in-flight
//!    requests first) and only then [`release`]s the locks of its writable disks; the rest of the
//!    stream (last pages, machine state, trailer) goes out after that.
//! 2. The target reads the whole stream and [`take`]s each lock before any vCPU or device thread
//!    starts; a lock still held elsewhere makes it refuse to start (the migration fails).
//! 3. The source, paused and unlocked, is destroyed once the target confirms. If the migration fails
//!    instead (the stream broke: the source VMM resumes itself; the target failed: the CLI unpauses
//!    it), the source [`take`]s its locks back before its guest runs again, and stays paused with an
//!    error naming the disk when that fails (i.e. the target runs after all).
//!
//! So a guest runs only while its VMM holds the exclusive locks: at no moment do two VMMs run with
//! the same writable disk (on one host, or on hosts sharing storage whose file system propagates OFD
//! locks, e.g. NFSv4). A file system without OFD locks is not locked at all (as domusd's own check).

use std::fs::File;
use std::os::fd::AsRawFd;

use crate::config::VmDisk;

/// Writable disks with media.
fn writable(disks: &[VmDisk]) -> impl Iterator<Item = (&VmDisk, &File)> {
    disks
        .iter()
        .filter(|d| !d.spec.read_only)
        .filter_map(|d| d.file.as_ref().map(|f| (d, f)))
}

/// `F_OFD_SETLK` of the whole file with `ty` (`F_WRLCK` or `F_UNLCK`).
#[allow(clippy::cast_possible_truncation)] // the F_*LCK and SEEK_SET constants fit a c_short
fn set_lock(file: &File, ty: libc::c_int) -> std::io::Result<()> {
    // SAFETY: `flock` is a plain C struct of integers, for which all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = ty as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: F_OFD_SETLK only reads the `flock` passed (valid for the call) and changes the lock
    // state of the open file description behind `file`, which is open.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        // No OFD locks on this file system: nothing was locked to begin with.
        Some(libc::EINVAL | libc::ENOLCK | libc::EOPNOTSUPP) => Ok(()),
        _ => Err(e),
    }
}

/// Releases the exclusive locks of the writable disks (the guest must be paused).
pub fn release(disks: &[VmDisk]) {
    for (d, f) in writable(disks) {
        match set_lock(f, libc::F_UNLCK) {
            Ok(()) => tracing::info!(vdev = %d.spec.vdev, "disk lock released for the hand-over"),
            Err(e) => tracing::warn!(vdev = %d.spec.vdev, error = %e, "cannot release a disk lock"),
        }
    }
}

/// Releases every disk's lock, writable or not, for good: the domain is being destroyed and the
/// caller may give its disks to another domain once this returns (the guest must be paused).
///
/// # Errors
/// A message naming the first disk whose lock could not be released.
pub fn release_all(disks: &[VmDisk]) -> Result<(), String> {
    for d in disks {
        if let Some(f) = &d.file {
            set_lock(f, libc::F_UNLCK)
                .map_err(|e| format!("cannot release the lock of disk {}: {e}", d.spec.vdev))?;
        }
    }
    Ok(())
}

/// Takes the exclusive locks of the writable disks.
///
/// # Errors
/// A message naming the first disk whose lock another VMM or program holds (the locks taken before
/// it are released again).
pub fn take(disks: &[VmDisk]) -> Result<(), String> {
    let mut taken = Vec::new();
    for (d, f) in writable(disks) {
        if let Err(e) = set_lock(f, libc::F_WRLCK) {
            for t in taken {
                let _ = set_lock(t, libc::F_UNLCK);
            }
            let why = if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) {
                "it is locked by another VMM or program (the other end of the migration runs it?)"
                    .to_owned()
            } else {
                e.to_string()
            };
            return Err(format!(
                "cannot take the lock of writable disk {}: {why}",
                d.spec.vdev
            ));
        }
        taken.push(f);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exclusive_lock_excludes_another_open_file_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("disk");
        std::fs::write(&p, [0u8; 512]).unwrap();
        let open = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&p)
                .unwrap()
        };
        let (source, target) = (open(), open());
        set_lock(&source, libc::F_WRLCK).unwrap();
        let e = set_lock(&target, libc::F_WRLCK).unwrap_err();
        assert!(
            matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)),
            "{e}"
        );
        set_lock(&source, libc::F_UNLCK).unwrap();
        set_lock(&target, libc::F_WRLCK).unwrap();
        assert!(
            set_lock(&source, libc::F_WRLCK).is_err(),
            "the target has it now"
        );
        // A shared lock excludes a writer too, until released.
        set_lock(&target, libc::F_UNLCK).unwrap();
        set_lock(&source, libc::F_RDLCK).unwrap();
        assert!(set_lock(&target, libc::F_WRLCK).is_err());
        set_lock(&source, libc::F_UNLCK).unwrap();
        set_lock(&target, libc::F_WRLCK).unwrap();
    }
}
