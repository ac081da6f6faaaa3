//! Helpers shared by the integration tests: locating the real binaries, running the VMM with a bound,
//! temp dirs, control-socket requests. Every test needs /dev/kvm and the probe ELF; both missing is a
//! loud failure, never a skip.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The domus-vmm binary under test.
pub fn vmm() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_domus-vmm"))
}

/// The probe guest ELF, next to the VMM binary in the same target dir.
pub fn probe() -> PathBuf {
    assert!(
        Path::new("/dev/kvm").exists(),
        "/dev/kvm is missing: these tests boot real guests and need KVM"
    );
    let p = vmm().with_file_name("domus-probe");
    assert!(
        p.exists(),
        "probe guest {} is missing: build it first with `cargo build -p domus-probe` (same target dir)",
        p.display()
    );
    p
}

/// A finished VMM run.
#[derive(Debug)]
pub struct Run {
    /// Exit status.
    pub code: i32,
    /// Console output.
    pub stdout: String,
    /// Logs and the final reason line.
    pub stderr: String,
}

impl Run {
    /// The last stderr line (the reason).
    pub fn reason(&self) -> &str {
        self.stderr.lines().last().unwrap_or("")
    }
}

/// Waits for `child` at most `limit`; kills it and panics on timeout.
pub fn wait_bounded(mut child: Child, limit: Duration, what: &str) -> Run {
    let start = Instant::now();
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let stdout = t_out.join().unwrap();
            let stderr = t_err.join().unwrap();
            return Run {
                code: status.code().unwrap_or(-1),
                stdout,
                stderr,
            };
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = t_out.join().unwrap();
            let stderr = t_err.join().unwrap();
            panic!("{what}: still running after {limit:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A `domus-vmm` command that cannot outlive the test that started it: the child gets SIGKILL when the
/// spawning thread (each test runs on its own thread) ends, so a failed assertion leaves no guest running.
pub fn vmm_command() -> Command {
    let mut cmd = Command::new(vmm());
    // SAFETY: the hook runs in the forked child before exec and only calls prctl(2), which is
    // async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(kill_when_parent_thread_ends);
    }
    cmd
}

fn kill_when_parent_thread_ends() -> std::io::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and reads no pointers.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Starts the VMM with `args` (stdin closed, output captured).
pub fn spawn(args: &[&str]) -> Child {
    vmm_command()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn domus-vmm")
}

/// Runs the VMM to completion (bounded).
pub fn run_vmm(args: &[&str], limit: Duration) -> Run {
    wait_bounded(spawn(args), limit, &format!("domus-vmm {args:?}"))
}

/// Boots the probe with `cmdline` and returns the run.
pub fn run_probe(cmdline: &str, memory_mib: u64, vcpus: u32) -> Run {
    let probe = probe();
    let mem = memory_mib.to_string();
    let cpus = vcpus.to_string();
    run_vmm(
        &[
            "--kernel",
            probe.to_str().unwrap(),
            "--cmdline",
            cmdline,
            "--memory",
            &mem,
            "--vcpus",
            &cpus,
        ],
        Duration::from_secs(60),
    )
}

/// A fresh, empty directory for sockets and files.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "domus-vmm-test-{tag}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ u128::from(rand_u32())
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

/// Waits until `path` exists (bounded).
pub fn wait_for_path(path: &Path, limit: Duration) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < limit,
            "{} did not appear within {limit:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Connects to a unix socket, retrying while it is being set up (bind happens before listen).
pub fn connect(path: &Path) -> UnixStream {
    let start = Instant::now();
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return s,
            Err(e) => {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "connect {}: {e}",
                    path.display()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Sends one control request and returns the parsed reply.
pub fn control(path: &Path, request: &str) -> serde_json::Value {
    let mut s = connect(path);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    s.write_all(b"\n").unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad reply {line:?}: {e}"))
}

/// Reads from `stream` until `needle` appears (bounded); returns everything read.
pub fn read_until(stream: &mut UnixStream, needle: &str, limit: Duration) -> String {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let mut acc = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if String::from_utf8_lossy(&acc).contains(needle) {
            return String::from_utf8_lossy(&acc).into_owned();
        }
        assert!(
            start.elapsed() < limit,
            "{needle:?} not seen within {limit:?}; got {:?}",
            String::from_utf8_lossy(&acc)
        );
        match stream.read(&mut buf) {
            Ok(0) => panic!(
                "stream closed before {needle:?}; got {:?}",
                String::from_utf8_lossy(&acc)
            ),
            Ok(n) => acc.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
}
