//! What a new user meets first: error messages that quote the command under the name it was invoked
//! with, say where a config file was looked for, and show only the failing attempt's VMM errors.

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;

use support::Host;

fn stderr_of(bin: &Path, args: &[&str], env: &[(&str, &Path)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(bin);
    cmd.args(args).env("DOMUS_RUNTIME_DIR", "/nonexistent/run");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running domus");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn messages_quote_the_invoked_name() {
    let domus = Path::new(env!("CARGO_BIN_EXE_domus"));
    let dir = tempfile::tempdir().unwrap();
    let xl = dir.path().join("xl");
    std::os::unix::fs::symlink(domus, &xl).unwrap();
    for cmd in ["shutdown", "reboot"] {
        let (code, err) = stderr_of(domus, &[cmd], &[]);
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains(&format!(
                "'domus {cmd}' requires at least one argument (a domain), or -a"
            )),
            "{err}"
        );
        assert!(!err.contains("xl "), "{err}");
        let (code, err) = stderr_of(&xl, &[cmd], &[]);
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains(&format!("'xl {cmd}' requires at least one argument")),
            "{err}"
        );
    }
}

#[test]
fn missing_config_names_the_directories_searched() {
    let domus = Path::new(env!("CARGO_BIN_EXE_domus"));
    let cfgdir = tempfile::tempdir().unwrap();
    let (code, err) = stderr_of(
        domus,
        &["create", "-N", "no-such-domain.cfg"],
        &[("DOMUS_CONFIG_DIR", cfgdir.path())],
    );
    assert_eq!(code, Some(1), "{err}");
    let want = format!(
        "cannot read config file no-such-domain.cfg: No such file or directory (os error 2) (looked in \
         the current directory, then {}, /etc/domus, /etc/xen)",
        cfgdir.path().display()
    );
    assert!(err.contains(&want), "want {want:?} in:\n{err}");
    // A path with a directory is read as given: no search, no list.
    let (_, err) = stderr_of(domus, &["create", "-N", "/nonexistent/x.cfg"], &[]);
    assert!(
        err.contains("cannot read config file /nonexistent/x.cfg: No such file or directory"),
        "{err}"
    );
    assert!(!err.contains("looked in"), "{err}");
}

/// domusd with a fake `domus-vmm` (a script that prints one error line naming its attempt and exits), in
/// `h`'s directories; killed on drop.
struct FakeVmmDomusd(std::process::Child);

impl Drop for FakeVmmDomusd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn failed_create_shows_only_this_attempts_vmm_errors() {
    let mut h = Host::start();
    h.term_domusd();
    let fake = h.path("fake-vmm");
    fs::write(
        &fake,
        format!(
            "#!/bin/sh\nn=$(cat {c} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {c}\n\
             echo \"domus-vmm: error: attempt $n failed\" >&2\nexit 1\n",
            c = h.path("count").display()
        ),
    )
    .unwrap();
    fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let log = fs::File::create(h.path("domusd-fake.log")).unwrap();
    let _domusd = FakeVmmDomusd(
        Command::new(&h.bins.domusd)
            .env("DOMUS_RUNTIME_DIR", h.path("run"))
            .env("DOMUS_STATE_DIR", h.path("state"))
            .env("DOMUS_LOG_DIR", h.path("log"))
            .env("DOMUS_CONFIG_DIR", h.path("cfg"))
            .env("DOMUS_CGROUP_PARENT", &h.cgroup_parent)
            .args(["--foreground", "--vmm"])
            .arg(&fake)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    support::wait_for(
        "domusd to answer",
        std::time::Duration::from_secs(20),
        || h.domus(&["list"]).status.success().then_some(()),
    );
    let cfg = h.probe_cfg("bad.cfg", "bad", "idle", "");
    let cfg = cfg.to_str().unwrap();
    let first = h.fails(&["create", cfg]);
    assert!(first.contains("attempt 1 failed"), "{first}");
    let second = h.fails(&["create", cfg]);
    assert!(second.contains("attempt 2 failed"), "{second}");
    assert!(
        !second.contains("attempt 1"),
        "the first attempt's error is not repeated:\n{second}"
    );
    // Both attempts are in the log, which grows across runs.
    let vmm_log = fs::read_to_string(h.path("log/domus-vmm-bad.log")).unwrap();
    assert!(
        vmm_log.contains("attempt 1 failed") && vmm_log.contains("attempt 2 failed"),
        "{vmm_log}"
    );
}
