//! Thin wrappers over the few libc calls that vmm-sys-util does not cover: pseudo-terminals, thread ids
//! and CPU time, affinity, signals, poll(2), getrandom(2) and the host's memory size. None of them
//! reads `/proc` or the environment, so they keep working inside a sandbox.

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

/// The kernel thread id of the calling thread.
pub fn current_tid() -> i32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// Sends `signal` to thread `tid` of this process (a vCPU kick from another thread that has no
/// handle of it). A thread that is gone is not an error worth reporting: ignored.
pub fn signal_thread(tid: i32, signal: libc::c_int) {
    if tid <= 0 {
        return;
    }
    // SAFETY: getpid takes no arguments and cannot fail.
    let pid = unsafe { libc::getpid() };
    // SAFETY: tgkill only sends a signal to a thread of our own process; no memory is touched.
    let _ignored = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, signal) };
}

/// CPU time consumed so far by the thread behind `thread` (a pthread of this process), in ns.
pub fn thread_cpu_ns(thread: libc::pthread_t) -> u64 {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `thread` is a live pthread of this process (the caller holds its JoinHandle) and
    // `clock` is writable.
    if unsafe { libc::pthread_getcpuclockid(thread, &mut clock) } != 0 {
        return 0;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock` is a valid clock id and `ts` is writable.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// Host RAM + swap in MiB (what an overcommitting host could at most give), from sysinfo(2);
/// `u64::MAX` if the call fails.
pub fn host_memory_mib() -> u64 {
    // SAFETY: `sysinfo` is plain data; all-zero is a valid value for the call to overwrite.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a writable sysinfo struct.
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return u64::MAX;
    }
    let unit = u64::from(info.mem_unit.max(1));
    let total = info.totalram.saturating_add(info.totalswap);
    total.saturating_mul(unit) >> 20
}

/// poll(2) on `fds` without a timeout, retrying EINTR.
///
/// # Errors
/// poll failing for another reason.
pub fn poll(fds: &mut [libc::pollfd]) -> io::Result<()> {
    poll_timeout(fds, -1).map(|_ready| ())
}

/// [`poll`] with a timeout in milliseconds (0: just look, -1: wait); how many descriptors are
/// ready (0 when the timeout passed).
///
/// # Errors
/// poll failing for another reason than EINTR.
pub fn poll_timeout(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    let n = libc::nfds_t::try_from(fds.len())
        .map_err(|_too_many| io::Error::from_raw_os_error(libc::EINVAL))?;
    loop {
        // SAFETY: `fds` is a live, writable array of `n` pollfds for the duration of the call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), n, timeout_ms) };
        if let Ok(ready) = usize::try_from(rc) {
            return Ok(ready);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// [`poll_timeout`] with a finer timeout (ppoll(2)); `None` waits without a limit.
///
/// # Errors
/// As [`poll_timeout`].
pub fn ppoll_timeout(
    fds: &mut [libc::pollfd],
    timeout: Option<std::time::Duration>,
) -> io::Result<usize> {
    let n = libc::nfds_t::try_from(fds.len())
        .map_err(|_too_many| io::Error::from_raw_os_error(libc::EINVAL))?;
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(d.subsec_nanos()),
    });
    let tsp = ts.as_ref().map_or(std::ptr::null(), std::ptr::from_ref);
    loop {
        // SAFETY: `fds` is a live, writable array of `n` pollfds and `tsp` null or a live
        // timespec for the duration of the call; no signal mask is passed.
        let rc = unsafe { libc::ppoll(fds.as_mut_ptr(), n, tsp, std::ptr::null()) };
        if let Ok(ready) = usize::try_from(rc) {
            return Ok(ready);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Fills `buf` from the kernel's CSPRNG (getrandom(2), no file descriptor needed).
///
/// # Errors
/// getrandom failing (other than EINTR).
pub fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0usize;
    while done < buf.len() {
        let Some(rest) = buf.get_mut(done..) else {
            break;
        };
        // SAFETY: `rest` is writable for `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        match usize::try_from(n) {
            Ok(k) => done += k,
            Err(_negative) => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
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
        if c >= usize::try_from(libc::CPU_SETSIZE).unwrap_or(0) {
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

/// Caps glibc's malloc arenas at `n` (mallopt M_ARENA_MAX). Without a cap, the first allocation of a
/// new thread that needs an arena makes glibc count the host's CPUs by opening
/// `/sys/devices/system/cpu/online`, which a sandboxed VMM may not do (its seccomp filter kills it).
pub fn cap_malloc_arenas(n: i32) {
    // SAFETY: mallopt only sets a malloc tunable; it touches no memory of ours.
    let _ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, n) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_facts_without_proc() {
        assert!(current_tid() > 0);
        assert!(host_memory_mib() > 0);
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        fill_random(&mut a).unwrap();
        fill_random(&mut b).unwrap();
        assert_ne!(a, b);
        use std::os::unix::thread::JoinHandleExt;
        let h = std::thread::spawn(|| (0..1_000_000u64).sum::<u64>());
        let pt = h.as_pthread_t();
        let _ = thread_cpu_ns(pt);
        h.join().unwrap();
        // SAFETY: pthread_self is always valid for the calling thread.
        let me = unsafe { libc::pthread_self() };
        assert!(thread_cpu_ns(me) > 0);
    }
}
