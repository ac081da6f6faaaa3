//! Starting each domus-vmm sandboxed, like Firecracker's jailer (see `domus_vmm::sandbox` for the VMM's
//! side), and the handle domusd keeps on a VMM it started.
//!
//! domusd opens everything the VMM needs and hands it over as descriptors: besides the spec's resources
//! (kernel, ramdisk, disks, TAPs), `/dev/kvm`, the listening control and console sockets (bound here,
//! root-only, in the domain's runtime directory: the VMM's own filesystem view is an empty read-only
//! tmpfs, so a socket bound there would be unreachable; domusd binding them also keeps their modes and
//! owner under its control) and the outcome file (created empty here; the VMM writes it at the stop).
//! It then clones the VMM into new mount, PID, IPC, UTS and network namespaces (`domus_sandbox`) with
//! rlimits, and the VMM locks itself in: `pivot_root` into the domain's empty `jail/` directory, uid and
//! gid `uid_base + domid` (one per domain, never 0), no capabilities, NoNewPrivs, per-thread seccomp.
//! The clone waits just before `execve` until domusd has moved it into the domain's cgroup
//! ([`VmmChild::release`]), so everything the VMM does is charged there. The VMM is PID 1 of its PID
//! namespace; its pid here (the host's) is the one domusd records, watches
//! (pidfd) and publishes as `image/device-model-pid`.
//!
//! Limits: no core files unless [`SandboxSettings::core_dumps`]; files no larger than the largest disk
//! image or the guest's memory (a `dump-core` file) plus 64 MiB; 4096 descriptors; no CPU-time or
//! address-space limit (the domain's cgroup bounds memory and CPU).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use super::vmm::{prepare_dirs, Launcher, VmmError, VmmPaths};

/// The default first uid (and gid) of the VMM range: domain D's VMM runs as `base + D`.
pub const DEFAULT_UID_BASE: u32 = 200_000;

/// How domusd sandboxes its VMMs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSettings {
    /// Domain D's VMM runs as uid and gid `uid_base + D`.
    pub uid_base: u32,
    /// Let a VMM leave core files (RLIMIT_CORE unlimited; they contain guest memory).
    pub core_dumps: bool,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        Self {
            uid_base: DEFAULT_UID_BASE,
            core_dumps: false,
        }
    }
}

/// A VMM process domusd started: a plain child (`--no-sandbox`, test fakes) or a sandboxed one.
#[derive(Debug)]
pub enum VmmChild {
    /// Started with `std::process::Command`.
    Plain(std::process::Child),
    /// Cloned into its own namespaces by `domus_sandbox`; until [`VmmChild::release`] it waits just
    /// before `execve` (the gate), so domusd can put it into its cgroup first.
    Jailed(domus_sandbox::Child, Option<domus_sandbox::Gate>),
}

impl From<std::process::Child> for VmmChild {
    fn from(c: std::process::Child) -> Self {
        Self::Plain(c)
    }
}

impl VmmChild {
    /// The host pid.
    pub fn id(&self) -> u32 {
        match self {
            Self::Plain(c) => c.id(),
            Self::Jailed(c, _) => u32::try_from(c.id()).unwrap_or(0),
        }
    }

    /// The exit status if it has ended (reaping it).
    ///
    /// # Errors
    /// waitpid failed.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        match self {
            Self::Plain(c) => c.try_wait(),
            Self::Jailed(c, _) => Ok(c.try_wait_status()?.map(ExitStatus::from_raw)),
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        match self {
            Self::Plain(c) => {
                let _ = c.kill();
            }
            Self::Jailed(c, _) => c.kill(),
        }
    }

    /// Waits for the end.
    ///
    /// # Errors
    /// waitpid failed.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        match self {
            Self::Plain(c) => c.wait(),
            Self::Jailed(c, _) => c.wait_status().map(ExitStatus::from_raw),
        }
    }

    /// Lets a held VMM run its program (after domusd put it into its cgroup); a no-op otherwise.
    ///
    /// # Errors
    /// [`VmmError::Spawn`] when the child could not exec the VMM (it is reaped).
    pub fn release(&mut self, exe: &Path) -> Result<(), VmmError> {
        match self {
            Self::Plain(_) => Ok(()),
            Self::Jailed(c, gate) => match gate.take() {
                Some(g) => g.open(c).map_err(|e| VmmError::Spawn {
                    exe: exe.to_path_buf(),
                    source: io::Error::other(format!("{:#}", anyhow::Error::from(e))),
                }),
                None => Ok(()),
            },
        }
    }
}

/// The sandboxed `domus-vmm`.
#[derive(Debug, Clone)]
pub struct JailedVmm {
    /// Path of `domus-vmm`.
    pub exe: PathBuf,
    /// Settings.
    pub settings: SandboxSettings,
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> VmmError {
    let path = path.to_path_buf();
    move |source| VmmError::Io { what, path, source }
}

/// Binds a listening socket at `path` (stale file removed by `prepare_dirs`), root-only.
fn bind_root_only(path: &Path) -> Result<UnixListener, VmmError> {
    let l = UnixListener::bind(path).map_err(io_err("bind", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(io_err("restrict", path))?;
    Ok(l)
}

/// The KVM device domusd opens for a VMM (`DOMUS_KVM_DEVICE` overrides, as for domus-vmm itself).
fn kvm_path() -> PathBuf {
    std::env::var_os("DOMUS_KVM_DEVICE").map_or_else(|| PathBuf::from("/dev/kvm"), PathBuf::from)
}

/// The RLIMIT_FSIZE of a VMM: its largest disk image or its memory (a core file), plus 64 MiB.
fn file_size_limit(spec: &domus_spec::VmSpec, files: &[File]) -> u64 {
    let largest = files
        .iter()
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0);
    largest
        .max(spec.maxmem_mib.max(spec.memory_mib) << 20)
        .saturating_add(64 << 20)
}

impl Launcher for JailedVmm {
    fn spawn(
        &self,
        domid: u32,
        spec: &domus_spec::VmSpec,
        files: &[File],
        p: &VmmPaths,
        paused: bool,
    ) -> Result<VmmChild, VmmError> {
        let log = prepare_dirs(spec, p)?;
        let dir = p.spec.parent().unwrap_or(Path::new("/"));
        let jail = dir.join("jail");
        match fs::create_dir(&jail) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(io_err("create", &jail)(e))
            }
            _ => {}
        }
        let kvm_path = kvm_path();
        let kvm = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&kvm_path)
            .map_err(io_err("open the KVM device", &kvm_path))?;
        let control = bind_root_only(&p.control)?;
        let console = bind_root_only(&p.console)?;
        let outcome = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&p.outcome)
            .map_err(io_err("create", &p.outcome))?;
        let uid = self.settings.uid_base.saturating_add(domid);
        let dup = |f: &File, what: &'static str| -> Result<OwnedFd, VmmError> {
            f.try_clone()
                .map(OwnedFd::from)
                .map_err(io_err(what, &p.spec))
        };
        let sock = |l: &UnixListener, what: &'static str| -> Result<OwnedFd, VmmError> {
            l.try_clone()
                .map(OwnedFd::from)
                .map_err(io_err(what, &p.spec))
        };
        let mut cmd = domus_sandbox::Command::new(&self.exe);
        // The spec's resources keep their numbers; the rest follow them.
        let mut next = 3;
        for f in files {
            cmd.pass_fd(dup(f, "duplicate a resource descriptor of")?, f.as_raw_fd());
            next = next.max(f.as_raw_fd() + 1);
        }
        let handed = [
            (dup(&kvm, "duplicate the KVM device for")?, "--kvm-fd"),
            (
                sock(&control, "duplicate the control socket for")?,
                "--control-fd",
            ),
            (
                sock(&console, "duplicate the console socket for")?,
                "--console-fd",
            ),
            (
                dup(&outcome, "duplicate the outcome file for")?,
                "--outcome-fd",
            ),
        ];
        let mut args = Vec::new();
        for (fd, flag) in handed {
            cmd.pass_fd(fd, next);
            args.push(flag.to_owned());
            args.push(next.to_string());
            next += 1;
        }
        cmd.pass_fd(log.try_clone().map_err(io_err("open", &p.log))?.into(), 1)
            .pass_fd(log.into(), 2);
        cmd.arg("--spec-json")
            .arg(&p.spec)
            .arg("--control")
            .arg(&p.control)
            .arg("--console")
            .arg(format!("unix:{}", p.console.display()))
            .arg("--outcome-file")
            .arg(&p.outcome)
            .arg("--jail")
            .arg(&jail)
            .arg("--jail-uid")
            .arg(uid.to_string())
            .arg("--jail-gid")
            .arg(uid.to_string());
        for a in args {
            cmd.arg(a);
        }
        if paused {
            cmd.arg("--paused");
        }
        for key in [
            "RUST_LOG",
            "DOMUS_VMM_NO_IO_URING",
            "DOMUS_VMM_DIRTY_BITMAP",
        ] {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        cmd.limits(domus_sandbox::Limits {
            cpu_time_secs: u64::MAX,
            address_space_bytes: u64::MAX,
            file_size_bytes: file_size_limit(spec, files),
            open_files: 4096,
            deadline: Duration::from_secs(10 * 365 * 86400),
        })
        .core_dump_bytes(if self.settings.core_dumps {
            u64::MAX
        } else {
            0
        })
        .die_with_parent(false);
        // Held before execve until domusd has put it into the domain's cgroup (`VmmChild::release`).
        let (child, gate) = cmd.spawn_held().map_err(|e| VmmError::Spawn {
            exe: self.exe.clone(),
            source: io::Error::other(format!("{:#}", anyhow::Error::from(e))),
        })?;
        Ok(VmmChild::Jailed(child, Some(gate)))
    }
}
