//! The one unsafe operation of this crate: taking ownership of a descriptor the launcher passed.

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, RawFd};

/// Takes descriptor `fd`, which the launcher ([`crate::launch`]) passed to the child, as a `File`.
///
/// # Errors
/// `EBADF` when the descriptor is not open.
///
/// # Safety
/// Call at most once per descriptor number, and only for the numbers the launcher passes (3: the disk,
/// 4: the report): nothing else in the process owns them.
pub unsafe fn inherited(fd: RawFd) -> io::Result<File> {
    if !domus_sandbox::sys::is_fd_open(fd) {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: the caller guarantees that `fd` is open (checked above) and owned by no one else.
    Ok(unsafe { File::from_raw_fd(fd) })
}
