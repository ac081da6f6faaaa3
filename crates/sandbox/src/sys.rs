//! The system calls the sandbox needs that std does not wrap; every `unsafe` block of the crate is here.
//!
//! Functions marked "async-signal-safe" are the only ones [`crate::Command::spawn`] calls between `clone` and
//! `execve`: they neither allocate nor take locks, and report failure as a raw errno.

use std::ffi::{c_char, CStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `errno` of the last failed call on this thread.
fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Turns a `-1`-on-error return value into `Err(errno)` (async-signal-safe).
fn check(ret: libc::c_long) -> Result<libc::c_long, i32> {
    if ret == -1 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

/// `clone(flags | SIGCHLD)` without a new stack: fork semantics (a copy-on-write copy of this thread),
/// but with namespace flags, so the child is PID 1 of its own PID namespace. Returns 0 in the child and the
/// child's pid (as seen from here) in the parent.
///
/// # Safety
/// As for `fork` in a multi-threaded process: until it calls `execve` or `_exit`, the child may only make
/// async-signal-safe calls (no allocation, no locks), because other threads' locks were copied held.
pub unsafe fn clone_fork(ns_flags: libc::c_int) -> io::Result<libc::pid_t> {
    let flags = libc::c_ulong::try_from(ns_flags | libc::SIGCHLD)
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a stackless clone duplicates the calling thread like fork(2); the null pointers mean "no parent
    // tid, child tid or TLS to set". The caller upholds the async-signal-safety contract in the child.
    let ret = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    match check(ret) {
        Ok(pid) => {
            libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ERANGE))
        }
        Err(e) => Err(io::Error::from_raw_os_error(e)),
    }
}

/// `pipe2(O_CLOEXEC)`: (read end, write end).
pub fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a writable array of two ints, as pipe2 requires.
    let ret = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so fds[0] is a new descriptor nobody else owns.
    let r = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: as above, for fds[1].
    let w = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    Ok((r, w))
}

/// `pidfd_open(pid, 0)`: a descriptor that becomes readable when the process exits.
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags by value and returns a new descriptor or -1.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = check(ret).map_err(io::Error::from_raw_os_error)?;
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this new descriptor; we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Waits up to `timeout_ms` (-1: forever) for `fd` to become readable; `Ok(false)` on timeout.
pub fn poll_readable(fd: &impl AsRawFd, timeout_ms: libc::c_int) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: `pfd` is one valid pollfd, and we pass a count of 1.
        let ret = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        match ret {
            -1 if errno() == libc::EINTR => continue,
            -1 => return Err(io::Error::last_os_error()),
            0 => return Ok(false),
            _ => return Ok(true),
        }
    }
}

/// `kill(pid, SIGKILL)`; a process that is already gone is not an error.
pub fn kill(pid: libc::pid_t) {
    // SAFETY: kill takes plain integers; our own unreaped child's pid cannot have been reused.
    let _ = unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// `waitpid(pid, 0)`: the raw wait status.
pub fn waitpid(pid: libc::pid_t) -> io::Result<libc::c_int> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid int to write to; pid is our own child.
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
        if ret == -1 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err(io::Error::last_os_error());
        }
        return Ok(status);
    }
}

/// `waitpid(pid, WNOHANG)`: the raw wait status once the child ended, `None` while it runs.
pub fn waitpid_nohang(pid: libc::pid_t) -> io::Result<Option<libc::c_int>> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid int to write to; pid is our own child.
        let ret = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        match ret {
            -1 if errno() == libc::EINTR => continue,
            -1 => return Err(io::Error::last_os_error()),
            0 => return Ok(None),
            _ => return Ok(Some(status)),
        }
    }
}

/// `unshare(flags)`: this process leaves the namespaces named by `flags` for new ones.
pub fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: unshare takes an integer.
    if unsafe { libc::unshare(flags) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `fcntl(fd, F_DUPFD_CLOEXEC, min)` (async-signal-safe).
pub fn dup_above(fd: RawFd, min: RawFd) -> Result<RawFd, i32> {
    // SAFETY: fcntl with F_DUPFD_CLOEXEC takes an int argument and touches no memory of ours.
    let ret = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    check(libc::c_long::from(ret)).map(|_| ret)
}

/// `dup2(old, new)`; the new descriptor is not close-on-exec (async-signal-safe).
pub fn dup2(old: RawFd, new: RawFd) -> Result<(), i32> {
    // SAFETY: dup2 takes two ints and touches no memory of ours.
    let ret = unsafe { libc::dup2(old, new) };
    check(libc::c_long::from(ret)).map(|_| ())
}

/// Marks every descriptor from `first` up close-on-exec (`close_range(.., CLOSE_RANGE_CLOEXEC)`,
/// async-signal-safe).
pub fn cloexec_from(first: RawFd) -> Result<(), i32> {
    let first = libc::c_uint::try_from(first).map_err(|_| libc::EBADF)?;
    // SAFETY: close_range takes integers; CLOEXEC only sets a flag on descriptors.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    check(ret).map(|_| ())
}

/// `setrlimit(resource, value, value)` (async-signal-safe).
pub fn setrlimit(resource: libc::__rlimit_resource_t, value: u64) -> Result<(), i32> {
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: `lim` is a valid rlimit read by the kernel.
    let ret = unsafe { libc::setrlimit(resource, &lim) };
    check(libc::c_long::from(ret)).map(|_| ())
}

/// The current hard limit of `resource` (`u64::MAX` for unlimited or unknown).
pub fn hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit the kernel writes.
    let ret = unsafe { libc::getrlimit(resource, &mut lim) };
    if ret == -1 {
        return u64::MAX;
    }
    lim.rlim_max
}

/// `prctl(option, arg2, 0, 0, 0)` (async-signal-safe).
pub fn prctl(option: libc::c_int, arg2: libc::c_ulong) -> Result<libc::c_int, i32> {
    // SAFETY: the options used here (PDEATHSIG, NO_NEW_PRIVS, CAPBSET_DROP, GET_*) take integers only.
    let ret = unsafe {
        libc::prctl(
            option,
            arg2,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    check(libc::c_long::from(ret)).map(|_| ret)
}

/// Starts a new session, detached from any controlling terminal (async-signal-safe).
pub fn setsid() {
    // SAFETY: setsid takes no arguments; failing (already a leader) is harmless.
    let _ = unsafe { libc::setsid() };
}

/// Unblocks every signal and restores SIGPIPE's default action (async-signal-safe): the parent's signal
/// mask and ignored signals would otherwise survive `execve`.
pub fn reset_signals() {
    // SAFETY: an all-zero sigset_t is a valid (empty) signal set on Linux.
    let set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, empty signal set; the old mask is not wanted (null).
    let _ = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) };
    // SAFETY: restoring a default disposition installs no handler code.
    let _ = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// `execve(path, argv, envp)`; returns only on failure, with its errno (async-signal-safe).
///
/// # Safety
/// `argv` and `envp` must be null-terminated arrays of pointers to NUL-terminated strings that outlive the call.
pub unsafe fn execve(path: &CStr, argv: *const *const c_char, envp: *const *const c_char) -> i32 {
    // SAFETY: `path` is NUL-terminated; the caller guarantees the two arrays.
    unsafe { libc::execve(path.as_ptr(), argv, envp) };
    errno()
}

/// `write(fd, bytes)` once, ignoring the outcome (async-signal-safe): used to report a failure.
pub fn write_all_once(fd: RawFd, bytes: &[u8]) {
    // SAFETY: `bytes` is valid for `bytes.len()` bytes of reading.
    let _ = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
}

/// Blocks until one byte can be read from `fd`; false at end of file or on an error other than EINTR
/// (async-signal-safe).
pub fn read_byte(fd: RawFd) -> bool {
    let mut b = [0u8; 1];
    loop {
        // SAFETY: `b` is writable for one byte.
        let n = unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) };
        if n == 1 {
            return true;
        }
        if n == -1 && errno() == libc::EINTR {
            continue;
        }
        return false;
    }
}

/// `close(fd)`, ignoring the outcome (async-signal-safe).
pub fn close_raw(fd: RawFd) {
    // SAFETY: closing a descriptor number touches no memory; the caller no longer uses `fd`.
    let _ = unsafe { libc::close(fd) };
}

/// `_exit(code)` (async-signal-safe): no atexit handlers, no stdio flushing of the parent's copied buffers.
pub fn exit_now(code: libc::c_int) -> ! {
    // SAFETY: _exit never returns and runs no user code.
    unsafe { libc::_exit(code) }
}

/// `mount(source, target, fstype, flags, data)`.
pub fn mount(
    source: &CStr,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    let fstype = fstype.map_or(std::ptr::null(), CStr::as_ptr);
    let data = data.map_or(std::ptr::null(), |d| d.as_ptr().cast());
    // SAFETY: every pointer is null or a NUL-terminated string that lives across the call.
    let ret = unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fstype, flags, data) };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `pivot_root(".", ".")` in the current directory: the current directory becomes `/`, the old root is
/// stacked on it (and then detached by [`umount_detach`]).
pub fn pivot_root_here() -> io::Result<()> {
    let dot = c".";
    // SAFETY: both arguments are the NUL-terminated string ".".
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) };
    check(ret).map(|_| ()).map_err(io::Error::from_raw_os_error)
}

/// `umount2(target, MNT_DETACH)`.
pub fn umount_detach(target: &CStr) -> io::Result<()> {
    // SAFETY: `target` is NUL-terminated.
    let ret = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `chdir(path)`.
pub fn chdir(path: &CStr) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated.
    let ret = unsafe { libc::chdir(path.as_ptr()) };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Drops supplementary groups, then sets real, effective and saved gid and uid. Going from uid 0 to a
/// non-zero uid clears the permitted, effective and ambient capability sets (capabilities(7)).
pub fn become_user(uid: libc::uid_t, gid: libc::gid_t) -> io::Result<()> {
    // SAFETY: a zero-length group list with a null pointer is valid for setgroups.
    let ret = unsafe { libc::setgroups(0, std::ptr::null()) };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: setresgid takes integers.
    let ret = unsafe { libc::setresgid(gid, gid, gid) };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: setresuid takes integers.
    let ret = unsafe { libc::setresuid(uid, uid, uid) };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The `struct __user_cap_header_struct` of capset(2).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// One `struct __user_cap_data_struct` of capset(2).
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: two `CapData` words (64 capabilities).
const CAP_VERSION_3: u32 = 0x2008_0522;

/// Empties this thread's effective, permitted and inheritable capability sets.
pub fn clear_capabilities() -> io::Result<()> {
    let hdr = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: `hdr` and the two-element `data` array are the layout capset(2) reads for version 3.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) };
    check(ret).map(|_| ()).map_err(io::Error::from_raw_os_error)
}

/// Reads this thread's effective capability set (64 bits).
pub fn effective_capabilities() -> io::Result<u64> {
    let mut hdr = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: `hdr` and the two-element `data` array are the layout capget(2) writes for version 3.
    let ret = unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) };
    check(ret).map_err(io::Error::from_raw_os_error)?;
    Ok(u64::from(data[0].effective) | (u64::from(data[1].effective) << 32))
}

/// `socket(domain, SOCK_STREAM | SOCK_CLOEXEC, 0)` (used by the self-test to probe the filter).
pub fn socket(domain: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket takes integers and returns a new descriptor or -1.
    let ret = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this new descriptor; we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
}

/// (real uid, real gid) of this process.
pub fn ids() -> (libc::uid_t, libc::gid_t) {
    // SAFETY: getuid cannot fail and takes no arguments.
    let uid = unsafe { libc::getuid() };
    // SAFETY: getgid cannot fail and takes no arguments.
    let gid = unsafe { libc::getgid() };
    (uid, gid)
}

/// Whether descriptor `fd` is open in this process (`fcntl(F_GETFD)`).
pub fn is_fd_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// An anonymous memory file (`memfd_create(name, MFD_CLOEXEC)`), e.g. for a child's report.
pub fn memfd(name: &CStr) -> io::Result<std::fs::File> {
    // SAFETY: `name` is NUL-terminated; memfd_create returns a new descriptor or -1.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this new descriptor; we are its only owner.
    Ok(std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}
