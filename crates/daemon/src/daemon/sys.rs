//! The few process-level system calls domusd makes that std does not wrap safely.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes the command's child start its own session (setsid), so neither a signal to domusd's process group
/// nor systemd stopping domusd (KillMode=process) reaches the guest's VMM.
pub fn new_session(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and calls only setsid(2), which is
    // async-signal-safe and touches no memory of the parent's (no allocation, no locks).
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
}

/// Lets exactly `files` survive the command's exec, at the numbers they have here (their `FD_CLOEXEC`
/// flag is cleared in the child only; in domusd they stay close-on-exec, so no other spawn inherits them).
pub fn inherit_fds(cmd: &mut Command, files: &[std::fs::File]) {
    use std::os::fd::AsRawFd;
    let fds: Vec<i32> = files.iter().map(AsRawFd::as_raw_fd).collect();
    // SAFETY: the closure runs in the forked child before exec; it only calls fcntl(2), which is
    // async-signal-safe, on descriptors that are open (the parent holds `files` open across the spawn),
    // and reads the Vec allocated before the fork (no allocation, no locks).
    unsafe {
        cmd.pre_exec(move || fds.iter().try_for_each(|&fd| clear_cloexec(fd)));
    }
}

/// Clears `FD_CLOEXEC` on `fd` (async-signal-safe: one fcntl).
fn clear_cloexec(fd: i32) -> std::io::Result<()> {
    // SAFETY: F_SETFD only changes the flags of descriptor `fd`; an invalid number yields EBADF.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether a process with this pid exists (and is not a zombie we could still reap).
pub fn pid_alive(pid: u32) -> bool {
    let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    if rustix::process::test_kill_process(p).is_err() {
        return false;
    }
    // A zombie still answers kill(0); /proc tells us it is dead.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Sends SIGKILL to `pid` (errors ignored: it may be gone already).
pub fn kill_hard(pid: u32) {
    if let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
}

/// Whether the process `pid` was started with `arg` on its command line (guards against pid reuse after a
/// restart: a VMM's command line names its own control socket).
pub fn pid_has_arg(pid: u32, arg: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
}
