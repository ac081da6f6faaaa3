//! Xen hotplug scripts (`script=PATH`), called the way libxl calls them for an emulated (tap) NIC
//! on Linux: `SCRIPT add|remove type_if=tap` with `script`, `XENBUS_TYPE=vif`,
//! `XENBUS_PATH=backend/vif/DOMID/DEVID`, `XENBUS_BASE_PATH=backend`, `netdev` (the gateway
//! device, possibly empty), `INTERFACE` and `vif` (the TAP) in the environment, and
//! `XENSTORED_PATH` when the store is not at Xen's default socket, so that Xen's own scripts read
//! `bridge` and the rest from the Domus store with Xen's xenstore clients. A script that fails or
//! runs past the timeout is an error carrying its stderr; on a timeout its whole process group is
//! killed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where relative script names are looked for, in order.
pub const SCRIPT_DIRS: [&str; 2] = ["/etc/domus/scripts", "/etc/xen/scripts"];

/// libxl's hotplug timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(40);

/// How much of a script's stderr is kept for the error message.
const STDERR_KEEP: usize = 4096;

/// How a vif is wired, from `script=` (or `vif.default.script`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Built-in bridge mode (`vif-bridge`).
    Bridge,
    /// Built-in routed mode (`vif-route`).
    Route,
    /// Built-in NAT mode (`vif-nat`).
    Nat,
    /// A user hotplug script.
    Script(PathBuf),
}

/// The script could not be found or run, failed, or timed out.
#[derive(Debug, thiserror::Error)]
pub enum HotplugError {
    /// A relative name found in none of [`SCRIPT_DIRS`].
    #[error("vif script `{name}` not found in {}", SCRIPT_DIRS.join(" or "))]
    NotFound {
        /// The name.
        name: String,
    },
    /// It could not be started.
    #[error("running vif script {path}: {source}")]
    Spawn {
        /// The script.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// It exited non-zero.
    #[error("vif script {path} {action} failed ({status}): {stderr}")]
    Failed {
        /// The script.
        path: PathBuf,
        /// `add` or `remove`.
        action: &'static str,
        /// Its exit status.
        status: String,
        /// Its stderr (the end of it).
        stderr: String,
    },
    /// It ran past the timeout.
    #[error("vif script {path} {action} did not finish within {secs} s (killed): {stderr}")]
    Timeout {
        /// The script.
        path: PathBuf,
        /// `add` or `remove`.
        action: &'static str,
        /// The timeout.
        secs: u64,
        /// Its stderr so far.
        stderr: String,
    },
}

/// Resolves `script=` as Xen users write it: the built-in names select Domus's modes, an absolute
/// path is used as is, another name is looked for in `dirs` (normally [`SCRIPT_DIRS`]).
pub fn resolve(script: &str, dirs: &[&Path]) -> Result<Mode, HotplugError> {
    match script {
        "vif-bridge" => return Ok(Mode::Bridge),
        "vif-route" => return Ok(Mode::Route),
        "vif-nat" => return Ok(Mode::Nat),
        _ => {}
    }
    let p = Path::new(script);
    if p.is_absolute() {
        return Ok(Mode::Script(p.to_owned()));
    }
    dirs.iter()
        .map(|d| d.join(p))
        .find(|c| c.is_file())
        .map(Mode::Script)
        .ok_or_else(|| HotplugError::NotFound {
            name: script.to_owned(),
        })
}

/// One script invocation's parameters.
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    /// The script.
    pub path: &'a Path,
    /// The domain.
    pub domid: u32,
    /// The vif's devid.
    pub devid: u32,
    /// The TAP.
    pub ifname: &'a str,
    /// `netdev` (gatewaydev).
    pub gatewaydev: Option<&'a str>,
    /// The store's socket when not Xen's default (`XENSTORED_PATH`).
    pub xenstored_path: Option<&'a Path>,
    /// The timeout.
    pub timeout: Duration,
}

fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_KEEP);
    String::from_utf8_lossy(&bytes[start..]).trim().to_owned()
}

/// Runs the script with `action` (`add` or `remove`).
pub fn run(inv: &Invocation<'_>, action: &'static str) -> Result<(), HotplugError> {
    let mut cmd = Command::new(inv.path);
    cmd.arg(action)
        .arg("type_if=tap")
        .env("script", inv.path)
        .env("XENBUS_TYPE", "vif")
        .env(
            "XENBUS_PATH",
            format!("backend/vif/{}/{}", inv.domid, inv.devid),
        )
        .env("XENBUS_BASE_PATH", "backend")
        .env("netdev", inv.gatewaydev.unwrap_or(""))
        .env("INTERFACE", inv.ifname)
        .env("vif", inv.ifname)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(p) = inv.xenstored_path {
        cmd.env("XENSTORED_PATH", p);
    }
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().map_err(|source| HotplugError::Spawn {
        path: inv.path.to_owned(),
        source,
    })?;
    let reader = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = e.read_to_end(&mut buf);
            buf
        })
    });
    let deadline = Instant::now() + inv.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(source) => {
                return Err(HotplugError::Spawn {
                    path: inv.path.to_owned(),
                    source,
                })
            }
        }
    };
    let Some(status) = status else {
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) of the process group the script leads (process_group(0) above).
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let _ = child.wait();
        let stderr = reader
            .and_then(|r| r.join().ok())
            .map(|b| tail(&b))
            .unwrap_or_default();
        return Err(HotplugError::Timeout {
            path: inv.path.to_owned(),
            action,
            secs: inv.timeout.as_secs(),
            stderr,
        });
    };
    let stderr = reader
        .and_then(|r| r.join().ok())
        .map(|b| tail(&b))
        .unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        Err(HotplugError::Failed {
            path: inv.path.to_owned(),
            action,
            status: status.to_string(),
            stderr,
        })
    }
}
