//! Xen's own store test suite, `test-xenstore` (Debian's xen-utils-4.17, fetched by
//! scripts/fetch-test-deps.sh), against the store domusd hosts: every test once, then its random mode.
//! domusd runs on a private host (temp DOMUS_* directories); no domain is created, so no KVM is needed.

#![allow(clippy::unwrap_used)]

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `$DOMUS_TESTDEPS/xen/usr` (default `<workspace>/.cache/testdeps/xen/usr`).
fn xen_usr() -> PathBuf {
    std::env::var_os("DOMUS_TESTDEPS")
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/testdeps"),
            PathBuf::from,
        )
        .join("xen/usr")
}

fn xen_tool(bin: &Path, socket: &Path, args: &[&str]) -> Output {
    assert!(
        bin.exists(),
        "{} is missing: run scripts/fetch-test-deps.sh (it fetches xen-utils-4.17)",
        bin.display()
    );
    Command::new(bin)
        .args(args)
        .env("LD_LIBRARY_PATH", xen_usr().join("lib/x86_64-linux-gnu"))
        .env("XENSTORED_PATH", socket)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn test_xenstore(socket: &Path, args: &[&str]) -> Output {
    xen_tool(
        &xen_usr().join("lib/xen-4.17/bin/test-xenstore"),
        socket,
        args,
    )
}

/// domusd on a private host; killed when dropped.
struct Domusd {
    dir: tempfile::TempDir,
    child: Child,
}

impl Domusd {
    fn start() -> Domusd {
        let dir = tempfile::Builder::new()
            .prefix("domus-xstest-")
            .tempdir()
            .unwrap();
        let log = std::fs::File::create(dir.path().join("domusd.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_domusd"))
            .arg("--foreground")
            // No domain is created: domusd only checks that its VMM binary exists.
            .arg("--vmm")
            .arg("/bin/true")
            // Nor does it need cgroups (and the default parent may be another domusd's).
            .arg("--no-cgroups")
            .env("DOMUS_RUNTIME_DIR", dir.path().join("run"))
            .env("DOMUS_STATE_DIR", dir.path().join("state"))
            .env("DOMUS_LOG_DIR", dir.path().join("log"))
            .env("DOMUS_CONFIG_DIR", dir.path().join("cfg"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut d = Domusd { dir, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while UnixStream::connect(d.socket()).is_err() {
            if let Some(st) = d.child.try_wait().unwrap() {
                panic!("domusd exited at start ({st}): {}", d.log());
            }
            assert!(
                Instant::now() < deadline,
                "domusd's store did not listen: {}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("run/xenstored/socket")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("domusd.log")).unwrap_or_default()
    }

    fn assert_passed(&self, out: &Output, what: &str) {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !stdout.contains("failed"),
            "{what}: {}\nstdout:\n{stdout}\nstderr:\n{}\ndomusd log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    fn assert_cleaned_up(&self) {
        let exists = xen_tool(
            &xen_usr().join("bin/xenstore-exists"),
            &self.socket(),
            &["/local/domain/0/xenstore-test"],
        );
        assert!(
            !exists.status.success(),
            "test-xenstore removes its nodes at the end"
        );
    }
}

impl Drop for Domusd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn every_test_passes_against_domusd() {
    let d = Domusd::start();
    let list = test_xenstore(&d.socket(), &["-l"]);
    let names: Vec<String> = String::from_utf8(list.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_owned()))
        .collect();
    assert!(names.len() >= 12, "test list: {names:?}");
    let out = test_xenstore(&d.socket(), &["-i", "3"]);
    d.assert_passed(&out, "test-xenstore -i 3");
    let stdout = String::from_utf8(out.stdout).unwrap();
    for name in &names {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("{name:<10}:")) && l.contains(" ns")),
            "test {name:?} did not run: {stdout}"
        );
    }
    d.assert_cleaned_up();
}

#[test]
fn random_mode_passes_against_domusd() {
    let d = Domusd::start();
    let out = test_xenstore(&d.socket(), &["-r", "4", "-i", "5"]);
    d.assert_passed(&out, "test-xenstore -r 4 -i 5");
    d.assert_cleaned_up();
}
