//! Host side: run the bootloader child over a domain's boot disk and collect the kernel, ramdisk and
//! command line into a per-domain directory that disappears with the returned [`BootFiles`].
//!
//! Flow: open the disk read-only → create the work directory (and an empty `jail/` in it) and a report
//! memfd → spawn `domus-bootloader` through domus-sandbox with the disk as descriptor 3 and the memfd as
//! descriptor 4, nothing else → wait (deadline) → parse the report, copying the kernel and ramdisk to
//! `kernel` and `ramdisk` in the work directory, each within [`protocol::Limits`].

use std::fs::{File, OpenOptions};
use std::io::{Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use domus_sandbox::{Command, Outcome, SandboxError};

use crate::child::{DISK_FD, REPORT_FD};
use crate::protocol::{self, ProtocolError, Report};
use crate::request::BootRequest;

/// How to run the child.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The `domus-bootloader` executable.
    pub helper: PathBuf,
    /// uid the child runs as (not 0).
    pub uid: u32,
    /// gid the child runs as (not 0).
    pub gid: u32,
    /// Its limits.
    pub limits: domus_sandbox::Limits,
    /// Kernel and ramdisk size limits.
    pub sizes: protocol::Limits,
}

impl Launcher {
    /// The defaults: `helper`, uid/gid 65534 (nobody/nogroup), 30 CPU seconds, 512 MiB of address space,
    /// 64 descriptors, a 60 s deadline, and files no larger than the report can hold.
    pub fn new(helper: PathBuf) -> Self {
        let sizes = protocol::Limits::default();
        Self {
            helper,
            uid: 65534,
            gid: 65534,
            limits: domus_sandbox::Limits {
                cpu_time_secs: 30,
                address_space_bytes: 512 << 20,
                file_size_bytes: sizes.kernel_bytes + sizes.ramdisk_bytes + (1 << 20),
                open_files: 64,
                deadline: Duration::from_secs(60),
            },
            sizes,
        }
    }

    /// `domus-bootloader` next to the running executable (or in `../libexec/domus/`); `None` if neither
    /// exists.
    pub fn find_helper() -> Option<PathBuf> {
        let exe = std::env::current_exe().ok()?;
        let dir = exe.parent()?;
        let candidates = [
            dir.join("domus-bootloader"),
            // Test binaries live in target/<profile>/deps.
            dir.parent()?.join("domus-bootloader"),
            dir.parent()?.join("libexec/domus/domus-bootloader"),
        ];
        candidates.into_iter().find(|p| p.is_file())
    }
}

/// The bootloader could not produce a kernel.
#[derive(Debug, thiserror::Error)]
pub enum BootloaderError {
    /// The disk cannot be opened.
    #[error("cannot open boot disk {path} read-only")]
    Disk {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The work directory or an output file cannot be made.
    #[error("cannot create {path}")]
    Output {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The report memfd.
    #[error("cannot create the report memfd")]
    Memfd(#[source] std::io::Error),
    /// The child could not be started.
    #[error("starting the bootloader child")]
    Spawn(#[from] SandboxError),
    /// Waiting for it failed.
    #[error("waiting for the bootloader child")]
    Wait(#[source] std::io::Error),
    /// It found nothing to boot (its message says why).
    #[error("{message}")]
    NotFound {
        /// The child's explanation.
        message: String,
        /// Its warnings.
        warnings: Vec<String>,
    },
    /// It ran past its deadline.
    #[error("the bootloader did not finish within {0:?} and was killed (a damaged or hostile disk image?)")]
    TimedOut(Duration),
    /// A signal killed it.
    #[error("the bootloader child was killed by signal {signal} ({why})")]
    Killed {
        /// The signal.
        signal: i32,
        /// What it usually means.
        why: &'static str,
    },
    /// It exited without a usable report.
    #[error("the bootloader child exited with status {0} without a report")]
    Exit(i32),
    /// The report is malformed.
    #[error("the bootloader child's report is invalid")]
    Protocol(#[from] ProtocolError),
}

/// The extracted kernel, ramdisk and command line. Dropping it removes its directory.
#[derive(Debug)]
pub struct BootFiles {
    dir: PathBuf,
    /// The kernel file.
    pub kernel: PathBuf,
    /// The ramdisk file, if any.
    pub ramdisk: Option<PathBuf>,
    /// The kernel command line.
    pub cmdline: String,
    /// The child's report (entry, paths, warnings).
    pub report: Report,
}

impl BootFiles {
    /// The per-domain directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// One line saying what was chosen, in pygrub's terms.
    pub fn summary(&self) -> String {
        let r = &self.report;
        let mut s = String::new();
        if let (Some(t), Some(p)) = (&r.title, &r.position) {
            s.push_str(&format!("entry {p} '{t}'"));
            if let Some(c) = &r.config {
                s.push_str(&format!(" of {c}"));
            }
            s.push_str(", ");
        }
        s.push_str(&format!(
            "kernel {}",
            r.kernel_path.as_deref().unwrap_or("?")
        ));
        if let Some(rd) = &r.ramdisk_path {
            s.push_str(&format!(", ramdisk {rd}"));
        }
        if let Some(v) = &r.volume {
            s.push_str(&format!(" on {v}"));
        }
        s.push_str(&format!(", args '{}'", self.cmdline));
        s
    }
}

impl Drop for BootFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes a half-made work directory unless disarmed.
struct Cleanup(Option<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn create_file(path: PathBuf) -> Result<(File, PathBuf), BootloaderError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map(|f| (f, path.clone()))
        .map_err(|source| BootloaderError::Output { path, source })
}

impl Launcher {
    /// Runs the bootloader over `disk` for `req`, leaving its output in `work_dir` (created; it must not
    /// exist) until the returned [`BootFiles`] is dropped.
    ///
    /// # Errors
    /// [`BootloaderError`]: an unreadable disk, nothing bootable on it (the child's explanation), a
    /// child killed at its deadline or by a limit, a malformed report.
    pub fn run(
        &self,
        disk: &Path,
        req: &BootRequest,
        work_dir: &Path,
    ) -> Result<BootFiles, BootloaderError> {
        let disk_file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(disk)
            .and_then(|f| {
                if f.metadata()?.is_dir() {
                    return Err(std::io::Error::from_raw_os_error(libc::EISDIR));
                }
                Ok(f)
            })
            .map_err(|source| BootloaderError::Disk {
                path: disk.to_owned(),
                source,
            })?;
        let out_err = |path: &Path| {
            let path = path.to_owned();
            move |source| BootloaderError::Output { path, source }
        };
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(work_dir)
            .map_err(out_err(work_dir))?;
        let mut cleanup = Cleanup(Some(work_dir.to_owned()));
        let jail = work_dir.join("jail");
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&jail)
            .map_err(out_err(&jail))?;
        let mut memfd = domus_sandbox::sys::memfd(c"domus-bootloader-report")
            .map_err(BootloaderError::Memfd)?;
        let child_end = memfd.try_clone().map_err(BootloaderError::Memfd)?;

        let mut cmd = Command::new(&self.helper);
        cmd.arg(&jail)
            .arg(self.uid.to_string())
            .arg(self.gid.to_string());
        for a in req.to_args() {
            cmd.arg(a);
        }
        cmd.pass_fd(disk_file.into(), DISK_FD)
            .pass_fd(child_end.into(), REPORT_FD)
            .limits(self.limits);
        let outcome = cmd.spawn()?.wait().map_err(BootloaderError::Wait)?;
        // The jail directory is only a mount point for the child; it goes now.
        let _ = std::fs::remove_dir(&jail);
        let status = match outcome {
            Outcome::Exited(s) => s,
            Outcome::TimedOut => return Err(BootloaderError::TimedOut(self.limits.deadline)),
            Outcome::Signaled(signal) => {
                let why = match signal {
                    libc::SIGSYS => {
                        "a system call outside its seccomp filter, or an abort such as running out of its memory limit"
                    }
                    libc::SIGKILL => "CPU-time limit reached",
                    libc::SIGABRT => "aborted",
                    libc::SIGXFSZ => "report larger than allowed",
                    _ => "crashed",
                };
                return Err(BootloaderError::Killed { signal, why });
            }
        };
        memfd.rewind().map_err(BootloaderError::Memfd)?;
        let (mut kernel_file, kernel_path) = create_file(work_dir.join("kernel"))?;
        let (mut ramdisk_file, ramdisk_path) = create_file(work_dir.join("ramdisk"))?;
        let parsed = protocol::parse(
            &mut std::io::BufReader::new(&memfd),
            self.sizes,
            &mut kernel_file,
            &mut ramdisk_file,
        );
        let report = match (status, parsed) {
            (_, Ok(r)) if r.error.is_some() || status != 0 => {
                return Err(match r.error {
                    Some(message) => BootloaderError::NotFound {
                        message,
                        warnings: r.warnings,
                    },
                    None => BootloaderError::Exit(status),
                })
            }
            (_, Ok(r)) if r.kernel_bytes.is_some() => r,
            (_, Ok(_)) => return Err(ProtocolError::Truncated.into()),
            (0, Err(e)) => return Err(e.into()),
            (s, Err(_)) => return Err(BootloaderError::Exit(s)),
        };
        kernel_file.flush().map_err(out_err(&kernel_path))?;
        let ramdisk = if report.ramdisk_bytes.is_some() {
            Some(ramdisk_path)
        } else {
            let _ = std::fs::remove_file(&ramdisk_path);
            None
        };
        cleanup.0 = None;
        Ok(BootFiles {
            dir: work_dir.to_owned(),
            kernel: kernel_path,
            ramdisk,
            cmdline: report.args.clone().unwrap_or_default(),
            report,
        })
    }
}
