//! Disk locks: what keeps two domains (or a domain and another program) from using one writable image.

use std::fs::File;

/// Takes an open file description lock on the whole disk, as QEMU locks its images: shared for a
/// read-only disk, exclusive for a writable one. The lock belongs to this open file (not the process), so
/// it travels with the descriptor to the VMM and is released when the last copy closes. False when
/// someone else holds a conflicting lock; a file system without OFD locks is not locked.
#[allow(unsafe_code)] // fcntl(2) with F_OFD_SETLK: neither std nor rustix wraps OFD locks.
pub(crate) fn lock_disk(file: &File, read_only: bool) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: `flock` is a plain C struct of integers, for which all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = if read_only {
        libc::F_RDLCK
    } else {
        libc::F_WRLCK
    } as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // l_start = l_len = 0: the whole file, however it grows; l_pid stays 0, as OFD locks require.
    // SAFETY: F_OFD_SETLK only reads the `flock` passed (valid for the call) and changes lock state
    // of the open file description behind `file`, which is open.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if rc == 0 {
        return true;
    }
    let e = std::io::Error::last_os_error();
    !matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES))
}
