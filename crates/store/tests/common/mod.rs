//! Shared helpers for the integration tests: run the daemon binary, find Debian's Xen clients.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use domus_store::client::Client;

/// The daemon binary cargo built for these tests.
pub fn daemon_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_domus-xenstored"))
}

/// `$DOMUS_TESTDEPS/xen/usr`, or `<workspace>/.cache/testdeps/xen/usr`. Panics if the clients are missing.
pub fn xen_usr() -> PathBuf {
    let base = std::env::var_os("DOMUS_TESTDEPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/testdeps"));
    let usr = base.join("xen/usr");
    assert!(
        usr.join("bin/xenstore-read").exists(),
        "Debian's xenstore clients are missing under {}: run scripts/fetch-test-deps.sh (or set DOMUS_TESTDEPS)",
        usr.display()
    );
    usr
}

/// A running `domus-xenstored`.
pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    pub state: PathBuf,
    pub stderr_path: PathBuf,
}

impl Daemon {
    /// Starts the daemon with its state in `dir/state`, socket `dir/sock`, plus `extra` arguments.
    pub fn start(dir: &Path, extra: &[&str]) -> Daemon {
        let socket = dir.join("sock");
        let state = dir.join("state");
        let stderr_path = dir.join(format!("daemon-{}.log", std::process::id()));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_path)
            .unwrap();
        let child = Command::new(daemon_bin())
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(&state)
            .args(extra)
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning domus-xenstored");
        let d = Daemon {
            child,
            socket,
            state,
            stderr_path,
        };
        d.wait_ready(&d.socket);
        d
    }

    /// Waits until `sock` accepts connections.
    pub fn wait_ready(&self, sock: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if Client::connect(sock).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "daemon did not listen on {} (log: {})",
            sock.display(),
            self.log()
        );
    }

    /// The daemon's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// kill -9.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits; returns whether it exited successfully.
    pub fn terminate(mut self) -> bool {
        let pid = self.child.id().to_string();
        let st = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(st.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(Instant::now() < deadline, "daemon ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs one of Debian's `xenstore-*` clients against `socket`.
pub fn xs(socket: &Path, tool: &str, args: &[&str]) -> Output {
    let usr = xen_usr();
    Command::new(usr.join("bin").join(tool))
        .args(args)
        .env("LD_LIBRARY_PATH", usr.join("lib/x86_64-linux-gnu"))
        .env("XENSTORED_PATH", socket)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {tool}: {e}"))
}

/// Runs a client, asserts success, returns stdout.
pub fn xs_ok(socket: &Path, tool: &str, args: &[&str]) -> String {
    let out = xs(socket, tool, args);
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
