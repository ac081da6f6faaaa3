//! Parent side: start a program in fresh namespaces with rlimits and only the descriptors given, then wait
//! for it with a wall-clock deadline.
//!
//! Between `clone` and `execve` the child runs only async-signal-safe system calls (see [`crate::sys`]):
//! every string, array and descriptor it needs is prepared before the clone. A failure there is sent to the
//! parent over a close-on-exec pipe (step + errno), so `spawn` reports "exec failed" rather than an exit code.

use std::ffi::{c_char, CString, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::sys;

/// Resource limits of a sandboxed child (each set as both soft and hard limit, before `execve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// RLIMIT_CPU: CPU seconds before the kernel kills the child.
    pub cpu_time_secs: u64,
    /// RLIMIT_AS: address space in bytes (allocations beyond it fail).
    pub address_space_bytes: u64,
    /// RLIMIT_FSIZE: the largest file the child may write, in bytes (writes beyond it fail with EFBIG).
    pub file_size_bytes: u64,
    /// RLIMIT_NOFILE: one more than the highest descriptor number the child may open.
    pub open_files: u64,
    /// Wall-clock time from `spawn` after which [`Child::wait`] kills the child.
    pub deadline: Duration,
}

impl Default for Limits {
    /// 10 CPU seconds, 1 GiB of address space, 256 MiB files, 16 descriptors, 20 s wall clock.
    fn default() -> Self {
        Self {
            cpu_time_secs: 10,
            address_space_bytes: 1 << 30,
            file_size_bytes: 256 << 20,
            open_files: 16,
            deadline: Duration::from_secs(20),
        }
    }
}

/// The namespaces every sandboxed child gets: mount, PID (it is PID 1 of its own), IPC, UTS and network
/// (a network namespace of its own has only a loopback device, down).
pub const NAMESPACES: libc::c_int = libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWNET;

/// Starting or waiting for a sandboxed child failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A program path or argument holds a NUL byte.
    #[error("sandboxed program {program}: argument {arg:?} contains a NUL byte")]
    Nul {
        /// The program.
        program: PathBuf,
        /// The offending argument.
        arg: OsString,
    },
    /// A system call in the parent failed.
    #[error("sandboxing {program}: {call} failed")]
    Sys {
        /// The program.
        program: PathBuf,
        /// Which call.
        call: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The child could not set itself up or exec the program.
    #[error("sandboxed program {program}: {step} failed in the child")]
    Exec {
        /// The program.
        program: PathBuf,
        /// Which step (`execve`, `setrlimit`, ...).
        step: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// How a sandboxed child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It exited with this status.
    Exited(i32),
    /// A signal killed it (SIGSYS: the seccomp filter; SIGKILL: e.g. the CPU limit).
    Signaled(i32),
    /// It was still running at the deadline and was killed.
    TimedOut,
}

/// Steps of the child's setup, reported with an errno when one fails.
const STEPS: [&str; 5] = ["dup", "dup2", "close_range", "setrlimit", "execve"];

/// A program to run sandboxed: its arguments, the descriptors it gets, its limits.
#[derive(Debug)]
pub struct Command {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<OsString>,
    fds: Vec<(OwnedFd, RawFd)>,
    limits: Limits,
    core_bytes: u64,
    die_with_parent: bool,
}

impl Command {
    /// A command running `program` (an absolute path; no `PATH` search) with no arguments, the default
    /// [`Limits`], and descriptors 0, 1 and 2 on /dev/null.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            fds: Vec::new(),
            limits: Limits::default(),
            core_bytes: 0,
            die_with_parent: true,
        }
    }

    /// Sets one environment variable of the child (whose environment is otherwise empty).
    pub fn env(&mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> &mut Self {
        let mut kv = key.into();
        kv.push("=");
        kv.push(value.into());
        self.env.push(kv);
        self
    }

    /// RLIMIT_CORE: the largest core file the child may leave (default 0: none).
    pub fn core_dump_bytes(&mut self, bytes: u64) -> &mut Self {
        self.core_bytes = bytes;
        self
    }

    /// Whether the child is killed (SIGKILL) when the thread that spawned it exits (default true). A
    /// long-lived child that must survive its supervisor's restart (a VMM) turns this off; a
    /// [`Child`] dropped without [`Child::wait`] or [`Child::detach`] is still killed.
    pub fn die_with_parent(&mut self, yes: bool) -> &mut Self {
        self.die_with_parent = yes;
        self
    }

    /// Appends one argument.
    pub fn arg(&mut self, arg: impl Into<OsString>) -> &mut Self {
        self.args.push(arg.into());
        self
    }

    /// Gives the child `fd` as descriptor number `target` (0, 1 and 2 included). The child gets no other
    /// descriptors than these and /dev/null on unassigned 0, 1, 2.
    pub fn pass_fd(&mut self, fd: OwnedFd, target: RawFd) -> &mut Self {
        self.fds.retain(|(_, t)| *t != target);
        self.fds.push((fd, target));
        self
    }

    /// Sets the limits.
    pub fn limits(&mut self, limits: Limits) -> &mut Self {
        self.limits = limits;
        self
    }

    /// The program this command runs.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Starts the child in fresh [`NAMESPACES`] with the limits set and only the passed descriptors open.
    ///
    /// # Errors
    /// [`SandboxError`]: a NUL in an argument, a failed clone (e.g. not root), or a failed setup or `execve`
    /// in the child (a missing program is reported here, not as an exit status).
    pub fn spawn(&self) -> Result<Child, SandboxError> {
        let (mut child, gate) = self.start(false)?;
        gate.finish(&mut child)?;
        Ok(child)
    }

    /// As [`Command::spawn`], but the child waits just before `execve` (already in its namespaces,
    /// with its descriptors and limits) until [`Gate::open`]: e.g. until the caller has put it into a
    /// cgroup, so everything the program ever does is accounted there. Dropping the gate unopened
    /// makes the child exit (127) without running the program.
    ///
    /// # Errors
    /// As [`Command::spawn`], except that failures of the child's own set-up surface at
    /// [`Gate::open`].
    pub fn spawn_held(&self) -> Result<(Child, Gate), SandboxError> {
        self.start(true)
    }

    fn start(&self, hold: bool) -> Result<(Child, Gate), SandboxError> {
        let sys_err = |call: &'static str| {
            let program = self.program.clone();
            move |source| SandboxError::Sys {
                program,
                call,
                source,
            }
        };
        let cstr = |s: &std::ffi::OsStr| {
            CString::new(s.as_bytes()).map_err(|_| SandboxError::Nul {
                program: self.program.clone(),
                arg: s.to_owned(),
            })
        };
        let path = cstr(self.program.as_os_str())?;
        let mut argv = vec![path.clone()];
        for a in &self.args {
            argv.push(cstr(a)?);
        }
        let mut argv_ptrs: Vec<*const c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut env = Vec::with_capacity(self.env.len());
        for kv in &self.env {
            env.push(cstr(kv)?);
        }
        let mut envp: Vec<*const c_char> = env.iter().map(|e| e.as_ptr()).collect();
        envp.push(std::ptr::null());

        let devnull = File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(sys_err("open /dev/null"))?;
        let (err_r, err_w) = sys::pipe_cloexec().map_err(sys_err("pipe2"))?;
        let go = if hold {
            Some(sys::pipe_cloexec().map_err(sys_err("pipe2"))?)
        } else {
            None
        };
        let go_r = go.as_ref().map_or(-1, |(r, _)| r.as_raw_fd());
        let go_w = go.as_ref().map_or(-1, |(_, w)| w.as_raw_fd());
        let mut map: Vec<(RawFd, RawFd)> = self
            .fds
            .iter()
            .map(|(fd, t)| (fd.as_raw_fd(), *t))
            .collect();
        for std_fd in 0..3 {
            if !map.iter().any(|(_, t)| *t == std_fd) {
                map.push((devnull.as_raw_fd(), std_fd));
            }
        }
        let top = map
            .iter()
            .flat_map(|(s, t)| [*s, *t])
            .chain([devnull.as_raw_fd(), err_w.as_raw_fd(), go_r])
            .max()
            .unwrap_or(2)
            .saturating_add(1);
        let first_unused = map
            .iter()
            .map(|(_, t)| *t)
            .max()
            .unwrap_or(2)
            .saturating_add(1);
        // Never above the current hard limit: raising it needs CAP_SYS_RESOURCE, which even root may lack.
        let rlimits = [
            (libc::RLIMIT_CPU, self.limits.cpu_time_secs),
            (libc::RLIMIT_AS, self.limits.address_space_bytes),
            (libc::RLIMIT_FSIZE, self.limits.file_size_bytes),
            (libc::RLIMIT_NOFILE, self.limits.open_files),
            (libc::RLIMIT_CORE, self.core_bytes),
        ]
        .map(|(res, value)| (res, value.min(sys::hard_limit(res))));
        let plan = ChildPlan {
            map: &map,
            top,
            first_unused,
            err_w: err_w.as_raw_fd(),
            go_r,
            go_w,
            rlimits: &rlimits,
            path: &path,
            argv: argv_ptrs.as_ptr(),
            envp: envp.as_ptr(),
            die_with_parent: self.die_with_parent,
        };

        // SAFETY: the child branch only runs `child_main`, which makes async-signal-safe calls on data
        // prepared above and ends in execve or _exit.
        let pid = unsafe { sys::clone_fork(NAMESPACES) }.map_err(sys_err("clone"))?;
        if pid == 0 {
            child_main(&plan);
        }
        drop(err_w);
        let child = Child {
            pid,
            pidfd: None,
            deadline: Instant::now() + self.limits.deadline,
            reaped: false,
        };
        let gate = Gate {
            program: self.program.clone(),
            err_r,
            go_w: go.map(|(_, w)| w),
        };
        Ok((child, gate))
    }
}

/// The start signal of a child from [`Command::spawn_held`], and the pipe its set-up reports on.
#[derive(Debug)]
pub struct Gate {
    program: PathBuf,
    err_r: OwnedFd,
    go_w: Option<OwnedFd>,
}

impl Gate {
    /// Lets the child exec its program and waits until it did (or failed to).
    ///
    /// # Errors
    /// [`SandboxError::Exec`] when the child's set-up or `execve` failed (the child is then reaped),
    /// [`SandboxError::Sys`] for a failed pipe or pidfd.
    pub fn open(mut self, child: &mut Child) -> Result<(), SandboxError> {
        if let Some(w) = self.go_w.take() {
            sys::write_all_once(w.as_raw_fd(), b"g");
        }
        self.finish(child)
    }

    fn finish(self, child: &mut Child) -> Result<(), SandboxError> {
        let sys_err = |call: &'static str| {
            let program = self.program.clone();
            move |source| SandboxError::Sys {
                program,
                call,
                source,
            }
        };
        let mut report = Vec::new();
        let read = File::from(self.err_r).read_to_end(&mut report);
        if report.len() >= 8 {
            let _ = sys::waitpid(child.pid);
            child.reaped = true;
            let step = u32::from_le_bytes([report[0], report[1], report[2], report[3]]);
            let errno = i32::from_le_bytes([report[4], report[5], report[6], report[7]]);
            let step = usize::try_from(step)
                .ok()
                .and_then(|s| STEPS.get(s))
                .copied()
                .unwrap_or("setup");
            return Err(SandboxError::Exec {
                program: self.program,
                step,
                source: std::io::Error::from_raw_os_error(errno),
            });
        }
        read.map_err(sys_err("read exec status"))?;
        child.pidfd = Some(sys::pidfd_open(child.pid).map_err(sys_err("pidfd_open"))?);
        Ok(())
    }
}

/// Everything the child needs between clone and execve, prepared by the parent.
struct ChildPlan<'a> {
    map: &'a [(RawFd, RawFd)],
    top: RawFd,
    first_unused: RawFd,
    err_w: RawFd,
    /// Read end of the start signal (-1: none).
    go_r: RawFd,
    /// The parent's write end, which the child closes so a dropped gate reads as end of file.
    go_w: RawFd,
    rlimits: &'a [(libc::__rlimit_resource_t, u64)],
    path: &'a CString,
    argv: *const *const c_char,
    envp: *const *const c_char,
    die_with_parent: bool,
}

/// The child between clone and execve: async-signal-safe calls only.
fn child_main(plan: &ChildPlan<'_>) -> ! {
    let fail = |step: u32, errno: i32, err_w: RawFd| -> ! {
        let mut msg = [0u8; 8];
        msg[..4].copy_from_slice(&step.to_le_bytes());
        msg[4..].copy_from_slice(&errno.to_le_bytes());
        sys::write_all_once(err_w, &msg);
        sys::exit_now(127)
    };
    if plan.die_with_parent {
        let _ = sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
    }
    sys::setsid();
    sys::reset_signals();
    // First, before any descriptor moves (its number may be a target): the parent's end of the start
    // signal, so a dropped gate reads as end of file here.
    if plan.go_w >= 0 {
        sys::close_raw(plan.go_w);
    }
    // Move the error pipe and every source above all targets first, so no dup2 overwrites a source.
    let err_w = match sys::dup_above(plan.err_w, plan.top) {
        Ok(fd) => fd,
        Err(e) => fail(0, e, plan.err_w),
    };
    let go_r = if plan.go_r >= 0 {
        match sys::dup_above(plan.go_r, plan.top) {
            Ok(fd) => fd,
            Err(e) => fail(0, e, err_w),
        }
    } else {
        -1
    };
    let mut moved = [(-1, -1); 64];
    if plan.map.len() > moved.len() {
        fail(0, libc::EMFILE, err_w);
    }
    for (slot, (src, dst)) in moved.iter_mut().zip(plan.map) {
        match sys::dup_above(*src, plan.top) {
            Ok(fd) => *slot = (fd, *dst),
            Err(e) => fail(0, e, err_w),
        }
    }
    for (tmp, dst) in moved.iter().take(plan.map.len()) {
        if let Err(e) = sys::dup2(*tmp, *dst) {
            fail(1, e, err_w);
        }
    }
    if let Err(e) = sys::cloexec_from(plan.first_unused) {
        fail(2, e, err_w);
    }
    for (res, value) in plan.rlimits {
        if let Err(e) = sys::setrlimit(*res, *value) {
            fail(3, e, err_w);
        }
    }
    if go_r >= 0 && !sys::read_byte(go_r) {
        // The gate was dropped unopened: do not run the program.
        sys::exit_now(127);
    }
    // SAFETY: argv and envp are the null-terminated arrays built in `spawn`, alive in this copy.
    let errno = unsafe { sys::execve(plan.path, plan.argv, plan.envp) };
    fail(4, errno, err_w)
}

/// A running sandboxed child. Dropping it without [`Child::wait`] kills and reaps it.
#[derive(Debug)]
pub struct Child {
    pid: libc::pid_t,
    pidfd: Option<OwnedFd>,
    deadline: Instant,
    reaped: bool,
}

impl Child {
    /// The child's pid as seen from this process.
    pub fn id(&self) -> libc::pid_t {
        self.pid
    }

    /// A pidfd of the child (readable once it ended), if one could be opened.
    pub fn pidfd(&self) -> Option<&OwnedFd> {
        self.pidfd.as_ref()
    }

    /// The raw wait status if the child has ended (reaping it), `None` while it runs.
    ///
    /// # Errors
    /// waitpid failed.
    pub fn try_wait_status(&mut self) -> std::io::Result<Option<libc::c_int>> {
        if self.reaped {
            return Err(std::io::Error::from_raw_os_error(libc::ECHILD));
        }
        let status = sys::waitpid_nohang(self.pid)?;
        if status.is_some() {
            self.reaped = true;
        }
        Ok(status)
    }

    /// Waits for the child to end without any deadline; the raw wait status.
    ///
    /// # Errors
    /// waitpid failed.
    pub fn wait_status(&mut self) -> std::io::Result<libc::c_int> {
        if self.reaped {
            return Err(std::io::Error::from_raw_os_error(libc::ECHILD));
        }
        let status = sys::waitpid(self.pid)?;
        self.reaped = true;
        Ok(status)
    }

    /// Gives up the child: it keeps running after this handle is gone (whoever reaps it, e.g. a
    /// pidfd watcher or init after this process exits, learns its end).
    pub fn detach(mut self) {
        self.reaped = true;
    }

    /// Sends SIGKILL (unless it was reaped already: its pid may have been reused).
    pub fn kill(&mut self) {
        if !self.reaped {
            sys::kill(self.pid);
        }
    }

    /// Waits for the child to end, killing it at the deadline.
    ///
    /// # Errors
    /// A failed poll or waitpid (the child is still killed and reaped when possible).
    pub fn wait(mut self) -> std::io::Result<Outcome> {
        let timed_out = match &self.pidfd {
            Some(fd) => {
                let left = self.deadline.saturating_duration_since(Instant::now());
                let ms = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
                !sys::poll_readable(fd, ms)?
            }
            None => false,
        };
        if timed_out {
            sys::kill(self.pid);
        }
        let status = sys::waitpid(self.pid)?;
        self.reaped = true;
        Ok(if timed_out {
            Outcome::TimedOut
        } else if libc::WIFSIGNALED(status) {
            Outcome::Signaled(libc::WTERMSIG(status))
        } else {
            Outcome::Exited(libc::WEXITSTATUS(status))
        })
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            sys::kill(self.pid);
            let _ = sys::waitpid(self.pid);
        }
    }
}
