//! Per-thread seccomp filters of a sandboxed VMM (seccompiler, through `domus_sandbox::filter`).
//!
//! A sandboxed VMM installs [`Filters::process`] (every kind's calls together) when it locks itself in
//! (`main.rs`), before it reads anything the guest controls; then every thread narrows itself down at its
//! spawn point ([`crate::threads::spawn`], and the main thread when it enters its event loop) with the
//! filter of its [`FilterKind`]. Filters stack, so a thread may only make the calls all of its filters
//! allow. Any other call kills the whole VMM (SIGSYS), and its supervisor reports the crash.
//!
//! What no kind may do: open or create files (`open`, `openat`, `creat`, `mkdir`, `unlink`, ...),
//! create sockets (`socket`, `socketpair`, `connect`, `bind`), run programs (`execve`), create processes
//! (`fork`, `clone` without `CLONE_THREAD`), trace (`ptrace`, `process_vm_*`), signal other processes
//! (`kill`; `tgkill` only to this process), change identity or mount anything. `prctl` only names
//! threads or sets NoNewPrivs again; `seccomp` only adds filters. `clone3` returns ENOSYS
//! (its flags are behind a pointer seccomp cannot read), so the C library falls back to `clone`, whose
//! flags are checked. `ioctl` is limited to the KVM (0xAE) ioctl type, plus the TTY/TUN type (0x54,
//! which holds FIONBIO) for the main and net threads, plus TUNSETOFFLOAD alone for vCPU threads. //!
//! io_uring: the block thread may set up, enter and register its ring, but what a ring executes is not
//! a system call and no filter sees it; the ring itself is therefore restricted to readv/writev and no
//! further registration (IORING_REGISTER_RESTRICTIONS, `devices::virtio::block::uring`).
//!
//! Syscalls for features being added in parallel: `madvise` (balloon: MADV_DONTNEED) and `fallocate`
//! are in the main and device filters already; vCPU hotplug needs `KVM_CREATE_VCPU` (an 0xAE ioctl) and
//! thread creation in the main filter (both present); save/restore writing state to a descriptor needs
//! `write`/`pwrite64`/`fsync` in the main filter (present); live migration's disk-lock hand-over
//! needs `fcntl(F_OFD_SETLK)` in the main filter (present, that command only).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use domus_sandbox::filter::{self, FilterError};
use seccompiler::{BpfProgram, SeccompRule};

/// The kinds of thread with a filter of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterKind {
    /// The main thread: builds the machine, then runs the event loop (console and control sockets,
    /// signals, outcome); starts vCPU threads (also later: hotplug).
    Main,
    /// A vCPU thread (KVM_RUN and port/MMIO dispatch).
    Vcpu,
    /// A virtio-blk device thread (io_uring or synchronous file I/O on the image descriptor).
    Block,
    /// A virtio-blk worker-pool thread (synchronous file I/O where io_uring is unavailable).
    Io,
    /// A virtio-net device thread (reads and writes on its TAP descriptor).
    Net,
    /// Any other virtio device thread (entropy; the balloon's when it lands).
    Device,
}

/// Every filter, compiled.
pub struct Filters {
    process: BpfProgram,
    no_clone3: BpfProgram,
    kinds: Vec<(FilterKind, BpfProgram)>,
}

const KVMIO: u64 = 0xAE;
const TTY_TUN: u64 = 0x54;
/// `_IOW('T', 208, unsigned int)`.
const TUNSETOFFLOAD: u64 = 0x4004_54d0;

/// What every thread of a Rust program needs: memory, futexes, signals, its own exit, time, logging
/// to stderr, thread-local start-up (`rseq`, robust futex list, its name).
const COMMON: &[i64] = &[
    libc::SYS_futex,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_restart_syscall,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    // sched_getcpu's fallback where neither rseq nor the vDSO answers (Held::spin_away).
    libc::SYS_getcpu,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_getrandom,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_close,
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_writev,
];

/// Event descriptors and waiting on them (device threads and the main loop).
const EVENTS: &[i64] = &[
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_ctl,
    libc::SYS_eventfd2,
    libc::SYS_timerfd_create,
    libc::SYS_timerfd_settime,
    libc::SYS_timerfd_gettime,
    libc::SYS_readv,
];

/// File I/O on descriptors the VMM was given (disk images, the outcome and core files).
const FILE_IO: &[i64] = &[
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_preadv2,
    libc::SYS_pwritev2,
    libc::SYS_lseek,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_fallocate,
    libc::SYS_ftruncate,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
];

const IO_URING: &[i64] = &[
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
];

/// The main thread beyond the above: machine set-up, sockets it was given, signals, vCPU threads.
const MAIN: &[i64] = &[
    libc::SYS_epoll_create1,
    libc::SYS_signalfd4,
    libc::SYS_rt_sigaction,
    libc::SYS_accept4,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_shutdown,
    libc::SYS_sysinfo,
    libc::SYS_mincore,
    libc::SYS_sched_setaffinity,
    libc::SYS_clock_getres,
    libc::SYS_prlimit64,
    libc::SYS_set_tid_address,
];

/// The vCPU thread beyond [`COMMON`]: its own affinity (vcpu-pin), the kick handler, and the UART's
/// output straight to connected console clients (`send` on sockets the main thread accepted).
const VCPU: &[i64] = &[
    libc::SYS_sched_setaffinity,
    libc::SYS_rt_sigaction,
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_poll,
];

impl Filters {
    /// Compiles every filter.
    ///
    /// # Errors
    /// [`FilterError`] (a bug: the lists are fixed).
    pub fn new() -> Result<Self, FilterError> {
        let kinds = [
            FilterKind::Main,
            FilterKind::Vcpu,
            FilterKind::Block,
            FilterKind::Io,
            FilterKind::Net,
            FilterKind::Device,
        ];
        let mut union: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        let mut compiled = Vec::new();
        for k in kinds {
            let rules = rules(k)?;
            for (nr, r) in &rules {
                merge(&mut union, *nr, r.clone());
            }
            compiled.push((k, filter::compile(rules)?));
        }
        Ok(Self {
            process: filter::compile(union)?,
            no_clone3: filter::errno_for(&[libc::SYS_clone3], libc::ENOSYS)?,
            kinds: compiled,
        })
    }

    /// The process-wide filter (every kind's calls), installed when the VMM locks itself in.
    pub fn process(&self) -> &BpfProgram {
        &self.process
    }

    /// The filter of `kind`.
    pub fn of(&self, kind: FilterKind) -> &BpfProgram {
        self.kinds
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(&self.process, |(_, p)| p)
    }

    /// Installs the process-wide filter on the calling thread (and `clone3` -> ENOSYS).
    ///
    /// # Errors
    /// The kernel refused a filter.
    pub fn install_process(&self) -> Result<(), seccompiler::Error> {
        filter::apply(&self.no_clone3)?;
        filter::apply(&self.process)
    }
}

/// Adds `rules` for `nr` to `map`: an unconditional entry (empty list) absorbs conditional ones.
fn merge(map: &mut BTreeMap<i64, Vec<SeccompRule>>, nr: i64, rules: Vec<SeccompRule>) {
    match map.get_mut(&nr) {
        None => {
            map.insert(nr, rules);
        }
        Some(existing) if existing.is_empty() => {}
        Some(existing) => {
            if rules.is_empty() {
                existing.clear();
            } else {
                existing.extend(rules);
            }
        }
    }
}

fn allow(map: &mut BTreeMap<i64, Vec<SeccompRule>>, list: &[i64]) {
    for nr in list {
        merge(map, *nr, Vec::new());
    }
}

/// `ioctl(fd, req)` with `req`'s type byte (bits 8..16) one of `types`.
fn ioctl_types(types: &[u64]) -> Result<Vec<SeccompRule>, FilterError> {
    let mut out = Vec::new();
    for t in types {
        out.extend(filter::arg_masked(1, 0xff00, t << 8)?);
    }
    Ok(out)
}

/// Thread creation: `clone` with CLONE_THREAD set (no new processes); `clone3` is turned into ENOSYS by
/// a second filter ([`Filters::install_process`]), so it must pass this one.
fn allow_threads(m: &mut BTreeMap<i64, Vec<SeccompRule>>) -> Result<(), FilterError> {
    let thread = u64::try_from(libc::CLONE_THREAD).unwrap_or(0);
    merge(m, libc::SYS_clone, filter::arg_masked(0, thread, thread)?);
    allow(m, &[libc::SYS_clone3]);
    Ok(())
}

/// The rules of one kind.
///
/// # Errors
/// [`FilterError`] (a bug).
pub fn rules(kind: FilterKind) -> Result<BTreeMap<i64, Vec<SeccompRule>>, FilterError> {
    let mut m = BTreeMap::new();
    allow(&mut m, COMMON);
    // fcntl: descriptor flags only (F_DUPFD_CLOEXEC for try_clone; no locks, leases or owners).
    let fcntl_cmds = [
        libc::F_GETFD,
        libc::F_SETFD,
        libc::F_GETFL,
        libc::F_SETFL,
        libc::F_DUPFD_CLOEXEC,
    ]
    .map(|c| u64::try_from(c).unwrap_or(0));
    merge(&mut m, libc::SYS_fcntl, filter::arg_in(1, &fcntl_cmds)?);
    // Naming the thread (std::thread::Builder::name), and a new thread narrowing itself: NoNewPrivs
    // (already set) and adding a filter (which can only take calls away).
    let prctls =
        [libc::PR_SET_NAME, libc::PR_SET_NO_NEW_PRIVS].map(|c| u64::try_from(c).unwrap_or(0));
    merge(&mut m, libc::SYS_prctl, filter::arg_in(0, &prctls)?);
    merge(
        &mut m,
        libc::SYS_seccomp,
        filter::arg_in(0, &[u64::from(libc::SECCOMP_SET_MODE_FILTER)])?,
    );
    // tgkill only within this process (the vCPU kick); the thread group id is this process's pid.
    let me = u64::from(std::process::id());
    merge(&mut m, libc::SYS_tgkill, filter::arg_in(0, &[me])?);
    match kind {
        FilterKind::Main => {
            allow(&mut m, EVENTS);
            allow(&mut m, FILE_IO);
            allow(&mut m, MAIN);
            // A live migration hands the writable disks' OFD locks over (`machine::disk_locks`):
            // F_OFD_SETLK on the disk descriptors the VMM was given, nothing else of locking.
            let ofd = u64::try_from(libc::F_OFD_SETLK).unwrap_or(0);
            merge(&mut m, libc::SYS_fcntl, filter::arg_in(1, &[ofd])?);
            merge(&mut m, libc::SYS_ioctl, ioctl_types(&[KVMIO, TTY_TUN])?);
            allow_threads(&mut m)?;
        }
        FilterKind::Vcpu => {
            allow(&mut m, VCPU);
            merge(&mut m, libc::SYS_ioctl, ioctl_types(&[KVMIO])?);
            // A guest's virtio-net feature negotiation (an MMIO write, served on the vCPU thread)
            // mirrors the offloads on the TAP: TUNSETOFFLOAD and nothing else of TUN's.
            merge(
                &mut m,
                libc::SYS_ioctl,
                filter::arg_in(1, &[TUNSETOFFLOAD])?,
            );
        }
        FilterKind::Block => {
            allow(&mut m, EVENTS);
            allow(&mut m, FILE_IO);
            allow(&mut m, IO_URING);
            // Without io_uring, the device thread starts its worker pool (ThreadKind::Io).
            allow_threads(&mut m)?;
        }
        FilterKind::Io => {
            allow(&mut m, FILE_IO);
        }
        FilterKind::Net => {
            allow(&mut m, EVENTS);
            merge(&mut m, libc::SYS_ioctl, ioctl_types(&[TTY_TUN])?);
            // Its own scheduling slice (`net::moderation::request_slice`): pid 0, the caller.
            merge(&mut m, libc::SYS_sched_getattr, filter::arg_in(0, &[0])?);
            merge(&mut m, libc::SYS_sched_setattr, filter::arg_in(0, &[0])?);
        }
        FilterKind::Device => {
            allow(&mut m, EVENTS);
            allow(&mut m, &[libc::SYS_fallocate]);
        }
    }
    Ok(m)
}

static ACTIVE: OnceLock<Filters> = OnceLock::new();

/// Turns per-thread filtering on for the rest of the process's life (the sandboxed VMM calls it once,
/// after installing [`Filters::process`]).
pub fn activate(filters: Filters) {
    let _already = ACTIVE.set(filters);
}

/// Whether filtering is on.
pub fn active() -> bool {
    ACTIVE.get().is_some()
}

/// Narrows the calling thread to `kind`'s filter if filtering is on. A thread that cannot must not run
/// unconfined: the process aborts.
pub fn enter(kind: FilterKind) {
    if let Some(f) = ACTIVE.get() {
        if let Err(e) = filter::apply(f.of(kind)) {
            eprintln!("domus-vmm: cannot install the {kind:?} seccomp filter: {e}");
            std::process::abort();
        }
    }
}
