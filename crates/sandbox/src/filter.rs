//! Seccomp filters: an allow-list of system calls; anything else kills the whole process (SIGSYS).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// What a single-threaded Rust program needs to compute on descriptors it was given: memory management,
/// reading, seeking and writing existing descriptors, signal return, exit. No `open`, no `socket`, no
/// `execve`, no `clone`, no `ptrace`.
pub const BASE_SYSCALLS: &[i64] = &[
    libc::SYS_read,
    libc::SYS_pread64,
    libc::SYS_readv,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_pwrite64,
    libc::SYS_lseek,
    libc::SYS_close,
    libc::SYS_fstat,
    libc::SYS_statx,
    libc::SYS_newfstatat,
    libc::SYS_ftruncate,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_brk,
    libc::SYS_madvise,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigaction,
    libc::SYS_sigaltstack,
    libc::SYS_futex,
    libc::SYS_getrandom,
    libc::SYS_clock_gettime,
    libc::SYS_sched_yield,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// Building the filter failed (an invalid syscall number).
#[derive(Debug, thiserror::Error)]
#[error("building the seccomp filter")]
pub struct FilterError(#[source] seccompiler::BackendError);

/// A syscall allowed only when argument `arg` (0-based) equals one of `values` (compared as 64-bit
/// values; for a 32-bit argument such as a socket family pass it zero-extended). Several entries for the
/// same syscall in one [`compile`] call are merged (any rule matching allows the call).
///
/// # Errors
/// [`FilterError`] for an argument index seccompiler rejects (above 5).
pub fn arg_in(arg: u8, values: &[u64]) -> Result<Vec<SeccompRule>, FilterError> {
    values
        .iter()
        .map(|v| {
            let c = SeccompCondition::new(arg, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, *v)
                .map_err(FilterError)?;
            SeccompRule::new(vec![c]).map_err(FilterError)
        })
        .collect()
}

/// A syscall allowed only when argument `arg` with `mask` applied equals `value` (e.g. flags that must
/// not contain a bit).
///
/// # Errors
/// [`FilterError`] for an argument index seccompiler rejects.
pub fn arg_masked(arg: u8, mask: u64, value: u64) -> Result<Vec<SeccompRule>, FilterError> {
    let c = SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(mask),
        value,
    )
    .map_err(FilterError)?;
    Ok(vec![SeccompRule::new(vec![c]).map_err(FilterError)?])
}

/// Compiles a filter for x86-64 from `rules` (syscall -> rules; an empty rule list allows the call
/// unconditionally) whose default action kills the process.
///
/// # Errors
/// [`FilterError`] for rules seccompiler rejects.
pub fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>) -> Result<BpfProgram, FilterError> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(FilterError)?;
    filter.try_into().map_err(FilterError)
}

/// A filter that lets every call through except `syscalls`, which fail with `errno` (stacked on an
/// allow-list: e.g. `clone3` -> ENOSYS, so the C library falls back to `clone`, whose flags a filter can
/// check).
///
/// # Errors
/// [`FilterError`] for an invalid syscall number.
pub fn errno_for(syscalls: &[i64], errno: i32) -> Result<BpfProgram, FilterError> {
    let rules: BTreeMap<i64, Vec<SeccompRule>> =
        syscalls.iter().map(|s| (*s, Vec::new())).collect();
    let errno = u32::try_from(errno).unwrap_or(u32::MAX);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno),
        TargetArch::x86_64,
    )
    .map_err(FilterError)?;
    filter.try_into().map_err(FilterError)
}

/// Installs `filter` on the calling thread only (threads it creates afterwards inherit it). Filters
/// stack: a thread under several is allowed only what every one of them allows.
///
/// # Errors
/// The kernel refused the filter (e.g. neither NoNewPrivs nor CAP_SYS_ADMIN).
pub fn apply(filter: &BpfProgram) -> Result<(), seccompiler::Error> {
    seccompiler::apply_filter(filter)
}

/// Compiles an allow-list filter for x86-64 whose default action kills the process. Besides `syscalls`,
/// `fcntl(fd, F_GETFD)` is always allowed: Rust's standard library checks descriptors with it when it
/// closes them in debug builds.
///
/// # Errors
/// [`FilterError`] for a list seccompiler rejects.
pub fn allow_list(syscalls: &[i64]) -> Result<BpfProgram, FilterError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        syscalls.iter().map(|s| (*s, Vec::new())).collect();
    if let std::collections::btree_map::Entry::Vacant(slot) = rules.entry(libc::SYS_fcntl) {
        let getfd = SeccompCondition::new(
            1,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            libc::F_GETFD as u64,
        )
        .map_err(FilterError)?;
        slot.insert(vec![SeccompRule::new(vec![getfd]).map_err(FilterError)?]);
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(FilterError)?;
    filter.try_into().map_err(FilterError)
}
