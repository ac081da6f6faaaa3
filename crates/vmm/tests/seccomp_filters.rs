//! The per-thread seccomp filters themselves: for each thread kind, a child process (this test binary
//! run again) installs the process-wide filter and the kind's filter exactly as a sandboxed VMM's
//! thread does, shows that a call the kind needs works, then makes one denied call, which must kill it
//! with SIGSYS: `execve`, `openat` of a host file, `socket(AF_INET)`, `ptrace`, plus kind-specific
//! ones (an ioctl of the wrong type, a new process through `clone`).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use domus_vmm::seccomp::{FilterKind, Filters};

const CHILD_ENV: &str = "DOMUS_FILTER_TEST_CHILD";
const KINDS: [(&str, FilterKind); 6] = [
    ("main", FilterKind::Main),
    ("vcpu", FilterKind::Vcpu),
    ("block", FilterKind::Block),
    ("io", FilterKind::Io),
    ("net", FilterKind::Net),
    ("device", FilterKind::Device),
];

/// The call each kind needs, made after the filters are on; prints a marker when it worked.
fn allowed(kind: FilterKind, prepared: &Prepared) {
    let ok = match kind {
        // The main loop: a new eventfd and epoll set; KVM_GET_API_VERSION.
        FilterKind::Main => {
            // SAFETY: eventfd takes integers.
            let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
            // SAFETY: epoll_create1 takes an integer.
            let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
            efd >= 0 && ep >= 0 && kvm_api(prepared) == 12
        }
        // KVM_GET_API_VERSION is an ioctl of KVM's type, which a vCPU thread may make.
        FilterKind::Vcpu => kvm_api(prepared) == 12,
        // pread and fdatasync on a descriptor it was given.
        FilterKind::Block | FilterKind::Io => {
            let mut b = [0u8; 4];
            // SAFETY: `b` is writable for 4 bytes; the descriptor is open.
            let n = unsafe { libc::pread(prepared.file.as_raw_fd(), b.as_mut_ptr().cast(), 4, 0) };
            // SAFETY: fdatasync on an open descriptor.
            let synced = unsafe { libc::fdatasync(prepared.file.as_raw_fd()) };
            n == 4 && synced == 0
        }
        // Its own scheduling slice, and as Device below.
        FilterKind::Net => {
            domus_vmm::devices::virtio::net::moderation::request_slice(
                std::time::Duration::from_micros(100),
            )
            .is_ok()
                && pipe_and_poll(prepared)
        }
        FilterKind::Device => pipe_and_poll(prepared),
    };
    // The main thread starts threads (vCPUs, also at run time for hotplug), a block device thread its
    // worker pool; no other kind may.
    let ok = ok
        && (!matches!(kind, FilterKind::Main | FilterKind::Block)
            || std::thread::spawn(|| 7).join().is_ok_and(|v| v == 7));
    let mut out = std::io::stdout();
    let _ = writeln!(out, "ALLOWED {}", if ok { "ok" } else { "failed" });
    let _ = out.flush();
}

/// Writes and reads on descriptors it was given (a TAP stand-in: a pipe), poll.
fn pipe_and_poll(prepared: &Prepared) -> bool {
    let mut pfd = libc::pollfd {
        fd: prepared.pipe.0.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let mut b = [0u8; 1];
    // SAFETY: one readable byte, an open pipe.
    let w = unsafe { libc::write(prepared.pipe.1.as_raw_fd(), b"x".as_ptr().cast(), 1) };
    // SAFETY: one valid pollfd.
    let p = unsafe { libc::poll(&mut pfd, 1, 1000) };
    // SAFETY: one writable byte, an open pipe.
    let r = unsafe { libc::read(prepared.pipe.0.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
    w == 1 && p == 1 && r == 1
}

/// KVM_GET_API_VERSION on the prepared KVM descriptor.
fn kvm_api(prepared: &Prepared) -> i32 {
    // SAFETY: an ioctl without argument on an open KVM descriptor.
    unsafe { libc::ioctl(prepared.kvm.as_raw_fd(), 0xAE00, 0) }
}

/// A denied call; returns only if the filter let it through. Each makes one system call with valid
/// (or null) pointers; the filter is expected to kill the process before the call does anything.
fn denied(what: &str) {
    match what {
        "execve" => {
            let path = c"/bin/true";
            let argv = [path.as_ptr(), std::ptr::null()];
            let envp = [std::ptr::null()];
            // SAFETY: NUL-terminated path, null-terminated argv and envp.
            unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        }
        "open" => {
            // SAFETY: a NUL-terminated path.
            unsafe { libc::openat(libc::AT_FDCWD, c"/etc/passwd".as_ptr(), libc::O_RDONLY) };
        }
        "socket" => {
            // SAFETY: integers only.
            unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        }
        "ptrace" => {
            // SAFETY: PTRACE_TRACEME takes no pointers.
            unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) };
        }
        // A TTY ioctl where only KVM's are allowed / a KVM ioctl in a thread without KVM.
        "ioctl-tty" => {
            let mut ws = [0u16; 4];
            // SAFETY: TIOCGWINSZ writes a struct winsize (4 u16) into `ws`.
            unsafe { libc::ioctl(0, libc::TIOCGWINSZ, ws.as_mut_ptr()) };
        }
        "ioctl-kvm" => {
            // SAFETY: an ioctl without argument.
            unsafe { libc::ioctl(0, 0xAE00, 0) };
        }
        // fork(): clone without CLONE_THREAD.
        "fork" => {
            // SAFETY: a stackless clone with SIGCHLD is fork; the filter kills before it happens.
            unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0) };
        }
        "kill" => {
            // SAFETY: signal 0 only checks.
            unsafe { libc::kill(1, 0) };
        }
        other => panic!("unknown denied call {other}"),
    }
}

struct Prepared {
    kvm: std::fs::File,
    file: std::fs::File,
    pipe: (std::os::fd::OwnedFd, std::os::fd::OwnedFd),
}

/// Takes over a descriptor pipe2 just returned.
fn owned(fd: i32) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: pipe2 just returned `fd`; nothing else owns it.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

/// The child side (does nothing unless run by [`run_child`]).
#[test]
fn child_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (kind, call) = spec.split_once(':').unwrap();
    let kind = KINDS.iter().find(|(n, _)| *n == kind).unwrap().1;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img");
    std::fs::write(&path, b"data").unwrap();
    let mut fds = [0; 2];
    // SAFETY: `fds` holds two ints for pipe2 to fill.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let prepared = Prepared {
        kvm: std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .unwrap(),
        file: std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap(),
        pipe: (owned(fds[0]), owned(fds[1])),
    };
    let filters = Filters::new().unwrap();
    filters.install_process().unwrap();
    domus_sandbox::filter::apply(filters.of(kind)).unwrap();
    allowed(kind, &prepared);
    if call != "none" {
        denied(call);
        println!("SURVIVED {call}");
    }
    std::process::exit(0);
}

/// Runs this binary's `child_entry` with `kind:call`; returns (stdout, the signal that ended it).
fn run_child(kind: &str, call: &str) -> (String, Option<i32>) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{kind}:{call}"))
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.signal(),
    )
}

#[test]
fn each_kind_allows_what_it_needs_and_is_killed_by_denied_calls() {
    for (name, kind) in KINDS {
        let (out, sig) = run_child(name, "none");
        assert!(
            out.contains("ALLOWED ok") && sig.is_none(),
            "{name}: the allowed calls failed (signal {sig:?}):\n{out}"
        );
        let mut calls = vec!["execve", "open", "socket", "ptrace", "fork", "kill"];
        match kind {
            FilterKind::Vcpu => calls.push("ioctl-tty"),
            FilterKind::Net => calls.push("ioctl-kvm"),
            FilterKind::Block | FilterKind::Io | FilterKind::Device => {
                calls.extend(["ioctl-kvm", "ioctl-tty"]);
            }
            FilterKind::Main => {}
        }
        for call in calls {
            let (out, sig) = run_child(name, call);
            assert!(
                out.contains("ALLOWED ok"),
                "{name}/{call}: the allowed calls failed first:\n{out}"
            );
            assert_eq!(
                sig,
                Some(libc::SIGSYS),
                "{name}: {call} was not killed by SIGSYS:\n{out}"
            );
            assert!(!out.contains("SURVIVED"), "{name}: {call} survived");
        }
    }
}
