//! The sandbox's restrictions hold: each test runs the self-test helper through `Command::spawn` +
//! `Jail::enter` and checks one layer (namespaces, empty root, credentials, seccomp, rlimits, deadline,
//! descriptors).

#![allow(clippy::unwrap_used)]

use std::io::{Read, Seek};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use domus_sandbox::{Command, Limits, Outcome, SandboxError};

const SELFTEST: &str = env!("CARGO_BIN_EXE_domus-sandbox-selftest");
const NOBODY: u32 = 65534;

struct Run {
    outcome: Outcome,
    stdout: String,
    elapsed: Duration,
}

fn command(root: &tempfile::TempDir, action: &str, arg: &str) -> Command {
    let mut cmd = Command::new(SELFTEST);
    cmd.arg(root.path())
        .arg(NOBODY.to_string())
        .arg(NOBODY.to_string())
        .arg(action)
        .arg(arg);
    cmd
}

fn run_with(action: &str, arg: &str, limits: Limits, extra: Vec<(OwnedFd, i32)>) -> Run {
    let root = tempfile::tempdir().unwrap();
    let mut out = tempfile::tempfile().unwrap();
    let mut cmd = command(&root, action, arg);
    cmd.limits(limits)
        .pass_fd(out.try_clone().unwrap().into(), 1);
    for (fd, target) in extra {
        cmd.pass_fd(fd, target);
    }
    let start = Instant::now();
    let outcome = cmd.spawn().unwrap().wait().unwrap();
    let elapsed = start.elapsed();
    let mut stdout = String::new();
    out.rewind().unwrap();
    out.read_to_string(&mut stdout).unwrap();
    // The jail directory stays empty on the host: the tmpfs lived in the child's mount namespace only.
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    Run {
        outcome,
        stdout,
        elapsed,
    }
}

fn run(action: &str, arg: &str) -> Run {
    run_with(action, arg, Limits::default(), Vec::new())
}

#[test]
fn child_is_unprivileged_and_filtered() {
    let r = run("status", "");
    assert_eq!(r.outcome, Outcome::Exited(0), "{}", r.stdout);
    assert_eq!(
        r.stdout.trim(),
        format!("uid={NOBODY} gid={NOBODY} caps=0 nnp=1 seccomp=2")
    );
}

#[test]
fn child_sees_an_empty_read_only_root() {
    let r = run("open-host", "");
    assert_eq!(r.outcome, Outcome::Exited(0), "{}", r.stdout);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "open /etc/passwd: No such file or directory (os error 2)",
            "open /proc/self/status: No such file or directory (os error 2)",
            "open /bin/sh: No such file or directory (os error 2)",
            "mkdir /new: Read-only file system (os error 30)",
        ]
    );
}

#[test]
fn open_outside_the_filter_kills_the_child() {
    let r = run("open-denied", "");
    assert_eq!(r.outcome, Outcome::Signaled(libc::SIGSYS), "{}", r.stdout);
    assert!(!r.stdout.contains("open returned"));
}

#[test]
fn af_inet_socket_kills_the_child() {
    let r = run("inet-denied", "");
    assert_eq!(r.outcome, Outcome::Signaled(libc::SIGSYS), "{}", r.stdout);
    assert!(!r.stdout.contains("socket returned"));
}

#[test]
fn network_namespace_has_no_route_even_when_sockets_are_allowed() {
    let r = run("inet", "");
    assert_eq!(r.outcome, Outcome::Exited(0), "{}", r.stdout);
    assert_eq!(
        r.stdout.trim(),
        "connect: Network is unreachable (os error 101)"
    );
}

#[test]
fn child_gets_only_the_passed_descriptors() {
    let (r, _w) = std::io::pipe().unwrap();
    let run = run_with("fds", "", Limits::default(), vec![(r.into(), 5)]);
    assert_eq!(run.outcome, Outcome::Exited(0), "{}", run.stdout);
    assert_eq!(run.stdout.trim(), "open=0,1,2,5");
}

#[test]
fn deadline_kills_a_sleeping_child() {
    let limits = Limits {
        deadline: Duration::from_millis(1500),
        ..Limits::default()
    };
    let r = run_with("sleep", "", limits, Vec::new());
    assert_eq!(r.outcome, Outcome::TimedOut);
    assert!(r.elapsed >= Duration::from_millis(1500), "{:?}", r.elapsed);
    assert!(r.elapsed < Duration::from_secs(10), "{:?}", r.elapsed);
}

#[test]
fn cpu_limit_kills_a_spinning_child() {
    let limits = Limits {
        cpu_time_secs: 1,
        deadline: Duration::from_secs(60),
        ..Limits::default()
    };
    let r = run_with("spin", "", limits, Vec::new());
    assert_eq!(r.outcome, Outcome::Signaled(libc::SIGKILL));
    assert!(r.elapsed < Duration::from_secs(30), "{:?}", r.elapsed);
}

#[test]
fn address_space_limit_fails_large_allocations() {
    let limits = Limits {
        address_space_bytes: 256 << 20,
        ..Limits::default()
    };
    let r = run_with("alloc", "512", limits, Vec::new());
    assert_eq!(r.outcome, Outcome::Exited(4), "{}", r.stdout);
    assert!(r.stdout.starts_with("alloc failed"), "{}", r.stdout);
    let r = run_with("alloc", "16", limits, Vec::new());
    assert_eq!(r.outcome, Outcome::Exited(0), "{}", r.stdout);
}

#[test]
fn file_size_limit_stops_writes() {
    let limits = Limits {
        file_size_bytes: 3 << 20,
        ..Limits::default()
    };
    let big = tempfile::tempfile().unwrap();
    let r = run_with(
        "write-big",
        "8",
        limits,
        vec![(big.try_clone().unwrap().into(), 2)],
    );
    assert_eq!(r.outcome, Outcome::Exited(5), "{}", r.stdout);
    assert_eq!(
        r.stdout.trim(),
        "write failed after 3 MiB: File too large (os error 27)"
    );
    assert_eq!(big.metadata().unwrap().len(), 3 << 20);
}

#[test]
fn jail_refuses_root_credentials() {
    let root = tempfile::tempdir().unwrap();
    let mut out = tempfile::tempfile().unwrap();
    let mut cmd = Command::new(SELFTEST);
    cmd.arg(root.path()).arg("0").arg("0").arg("status");
    cmd.pass_fd(out.try_clone().unwrap().into(), 1);
    assert_eq!(cmd.spawn().unwrap().wait().unwrap(), Outcome::Exited(3));
    let mut s = String::new();
    out.rewind().unwrap();
    out.read_to_string(&mut s).unwrap();
    assert!(s.contains("must not run as uid or gid 0"), "{s}");
}

#[test]
fn missing_program_is_a_spawn_error() {
    let err = Command::new("/nonexistent/domus-helper")
        .spawn()
        .unwrap_err();
    assert!(
        matches!(err, SandboxError::Exec { step: "execve", .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "sandboxed program /nonexistent/domus-helper: execve failed in the child"
    );
}

#[test]
fn child_has_its_own_namespaces() {
    let root = tempfile::tempdir().unwrap();
    let cmd = command(&root, "sleep", "");
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    // Wait until the jail is entered (its root is no longer ours).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        if status.contains("Seccomp:\t2") {
            let field = |k: &str| {
                status
                    .lines()
                    .find(|l| l.starts_with(k))
                    .unwrap()
                    .split_whitespace()
                    .nth(1)
                    .unwrap()
                    .to_string()
            };
            assert_eq!(field("NoNewPrivs:"), "1");
            assert_eq!(field("CapEff:"), "0000000000000000");
            assert_eq!(field("CapBnd:"), "0000000000000000");
            assert_eq!(field("Uid:"), NOBODY.to_string());
            // PID 1 of its own PID namespace.
            let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
            assert!(nspid.ends_with("\t1"), "{nspid}");
            break;
        }
        assert!(Instant::now() < deadline, "child never entered its jail");
        std::thread::sleep(Duration::from_millis(20));
    }
    for ns in ["mnt", "pid", "ipc", "uts", "net"] {
        let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        assert_ne!(ours, theirs, "namespace {ns} is shared");
    }
    drop(child); // kills and reaps
    assert!(
        std::fs::metadata(format!("/proc/{pid}")).is_err() || {
            let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            !s.contains("domus-sandbox")
        }
    );
}

#[test]
fn a_held_child_runs_only_once_its_gate_opens() {
    let root = tempfile::tempdir().unwrap();
    let mut out = tempfile::tempfile().unwrap();
    let mut cmd = command(&root, "status", "");
    cmd.pass_fd(out.try_clone().unwrap().into(), 1);
    let (mut child, gate) = cmd.spawn_held().unwrap();
    // Held before execve: still this test binary's image, not the helper's.
    std::thread::sleep(Duration::from_millis(200));
    let exe = std::fs::read_link(format!("/proc/{}/exe", child.id())).unwrap();
    assert_eq!(exe, std::env::current_exe().unwrap());
    assert_eq!(child.try_wait_status().unwrap(), None);
    gate.open(&mut child).unwrap();
    let status = child.wait_status().unwrap();
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    let mut s = String::new();
    out.rewind().unwrap();
    out.read_to_string(&mut s).unwrap();
    assert!(s.contains("uid=65534"), "{s}");

    // A gate dropped unopened: the child leaves without running the program.
    let (mut child, gate) = command(&root, "status", "").spawn_held().unwrap();
    drop(gate);
    let status = child.wait_status().unwrap();
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 127);
}
