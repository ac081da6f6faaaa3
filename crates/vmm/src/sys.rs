//! Thin wrappers over the few libc calls that vmm-sys-util does not cover (pseudo-terminals, isatty).

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::path::PathBuf;

/// Opens a new pseudo-terminal master (non-blocking, close-on-exec) and returns it with its slave path.
///
/// # Errors
/// Any of posix_openpt / grantpt / unlockpt / ptsname_r failing.
pub fn open_pty() -> io::Result<(File, PathBuf)> {
    // SAFETY: posix_openpt takes flags only and returns a new fd or -1.
    let fd: RawFd = unsafe {
        libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC)
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a freshly opened descriptor that nothing else owns; File takes ownership.
    let master = unsafe { File::from_raw_fd(fd) };
    // SAFETY: `fd` is a valid pty master (owned by `master`, alive for this call).
    if unsafe { libc::grantpt(fd) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::unlockpt(fd) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 128];
    // SAFETY: `buf` is writable for `buf.len()` bytes; ptsname_r writes a NUL-terminated path into it.
    let rc = unsafe { libc::ptsname_r(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    let len = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let path = PathBuf::from(String::from_utf8_lossy(&buf[..len]).into_owned());
    Ok((master, path))
}

/// The kernel thread id of the calling thread (for `/proc/self/task/<tid>` run-time figures).
pub fn current_tid() -> i32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|s| s.parse().ok())
        })
        .unwrap_or(0)
}

/// Restricts thread `tid` to the host CPUs in `cpus`.
///
/// # Errors
/// An empty or out-of-range CPU list, or sched_setaffinity failing.
pub fn set_affinity(tid: i32, cpus: &[usize]) -> io::Result<()> {
    if tid <= 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "vCPU thread not started",
        ));
    }
    if cpus.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty CPU list",
        ));
    }
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        if c >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("CPU {c} out of range"),
            ));
        }
        // SAFETY: `c` < CPU_SETSIZE was checked, so the bit lies inside `set`.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed; `tid` is a thread of this process.
    let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (and the threads it spawns afterwards) and
/// returns a non-blocking signalfd that reports them, so the main loop can stop the domain cleanly
/// (sockets removed) instead of dying.
///
/// # Errors
/// sigprocmask or signalfd failing.
pub fn termination_signalfd() -> io::Result<File> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: `set` is initialised and `sig` is a valid signal number.
        unsafe { libc::sigaddset(&mut set, sig) };
    }
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    if unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: -1 asks for a new fd; `set` is initialised.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nobody else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Reads one pending signal number from a signalfd (non-blocking).
pub fn read_signal(fd: &mut File) -> Option<u32> {
    use std::io::Read;
    let mut buf = [0u8; 128]; // sizeof(struct signalfd_siginfo)
    match fd.read(&mut buf) {
        Ok(128) => Some(u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]])),
        _ => None,
    }
}

/// Whether `fd` is an open descriptor of this process; if so, marks it close-on-exec (an inherited
/// resource is the VMM's alone).
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags; an unused number yields -1 (EBADF).
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return false;
    }
    // SAFETY: F_SETFD only changes the flags of `fd`, which is open (checked above).
    unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
    true
}
