//! Test harness for the toolstack's end-to-end tests: a private "host" (temp runtime, state, log and config
//! dirs given through the DOMUS_* variables) with a real domusd, the real domus-vmm and the probe guest, and
//! helpers to run the real `domus` binary. Dropping the host kills domusd and every VMM it recorded.
#![allow(dead_code, clippy::unwrap_used)] // shared by several test files; tests may unwrap

pub mod guest_lines;
pub mod migrate_hosts;
pub mod netns;
pub mod pty;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binaries under test, all from the same target directory.
#[derive(Debug, Clone)]
pub struct Bins {
    pub domus: PathBuf,
    pub domusd: PathBuf,
    pub vmm: PathBuf,
    pub probe: PathBuf,
}

impl Bins {
    /// Finds the binaries next to the `domus` under test; fails loudly when one is missing or /dev/kvm is.
    pub fn locate() -> Self {
        let domus = PathBuf::from(env!("CARGO_BIN_EXE_domus"));
        let dir = domus.parent().unwrap().to_path_buf();
        let b = Bins {
            domus,
            domusd: dir.join("domusd"),
            vmm: dir.join("domus-vmm"),
            probe: dir.join("domus-probe"),
        };
        for p in [&b.domusd, &b.vmm, &b.probe] {
            assert!(
                p.exists(),
                "{} is missing: run `cargo build --workspace` before the tests",
                p.display()
            );
        }
        assert!(
            fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/kvm")
                .is_ok(),
            "/dev/kvm is not usable: these tests boot real guests and need KVM"
        );
        b
    }
}

/// A private host.
pub struct Host {
    pub dir: tempfile::TempDir,
    pub bins: Bins,
    domusd: Option<Child>,
    /// The network namespace domusd runs in (`ip netns exec`), if any.
    pub netns: Option<String>,
    /// Extra environment for domusd.
    pub domusd_env: Vec<(String, String)>,
    /// This host's Domus parent cgroup: a domusd owns its parent (it sweeps unclaimed domain cgroups
    /// from it at start), so hosts running side by side each get their own.
    pub cgroup_parent: String,
}

pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Polls `f` until it returns Some, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One row of `domus list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub domid: u32,
    pub mem: u64,
    pub vcpus: u32,
    pub state: String,
}

impl Host {
    /// Creates the dirs and starts domusd.
    pub fn start() -> Self {
        Self::start_in(None, Vec::new())
    }

    /// [`Host::start`] with domusd in network namespace `netns` and extra environment.
    pub fn start_in(netns: Option<&str>, domusd_env: Vec<(String, String)>) -> Self {
        let bins = Bins::locate();
        let dir = tempfile::Builder::new()
            .prefix("domus-e2e-")
            .tempdir()
            .unwrap();
        for d in ["run", "state", "log", "cfg/auto"] {
            fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let cgroup_parent = format!(
            "domus-{}",
            dir.path().file_name().unwrap().to_string_lossy()
        );
        let mut h = Host {
            cgroup_parent,
            dir,
            bins,
            domusd: None,
            netns: netns.map(str::to_owned),
            domusd_env,
        };
        h.start_domusd();
        h
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("DOMUS_RUNTIME_DIR", self.path("run"))
            .env("DOMUS_STATE_DIR", self.path("state"))
            .env("DOMUS_LOG_DIR", self.path("log"))
            .env("DOMUS_CONFIG_DIR", self.path("cfg"))
            .env("DOMUS_CGROUP_PARENT", &self.cgroup_parent)
            .env_remove("DOMUS_VMM");
    }

    /// Starts domusd and waits until its API answers.
    pub fn start_domusd(&mut self) {
        self.start_domusd_with(None, &[]);
    }

    /// [`Host::start_domusd`] under `umask` (when given) with extra domusd arguments.
    pub fn start_domusd_with(&mut self, umask: Option<u32>, extra: &[&str]) {
        assert!(self.domusd.is_none(), "domusd already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("domusd.log"))
            .unwrap();
        let mut cmd = match umask {
            Some(m) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("umask {m:03o}; exec \"$0\" \"$@\""))
                    .arg(&self.bins.domusd);
                c
            }
            None => match &self.netns {
                Some(ns) => {
                    // `ip netns exec` execs domusd itself: the child's pid is domusd's.
                    let mut c = Command::new("ip");
                    c.args(["netns", "exec", ns]).arg(&self.bins.domusd);
                    c
                }
                None => Command::new(&self.bins.domusd),
            },
        };
        self.env(&mut cmd);
        for (k, v) in &self.domusd_env {
            cmd.env(k, v);
        }
        cmd.arg("--foreground")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.domusd = Some(cmd.spawn().unwrap());
        wait_for("domusd to answer", TIMEOUT, || {
            let exited = self.domusd.as_mut().and_then(|c| c.try_wait().unwrap());
            if let Some(st) = exited {
                panic!("domusd exited at start ({st}):\n{}", self.domusd_log());
            }
            self.domus(&["list"]).status.success().then_some(())
        });
    }

    /// kill -9 domusd.
    pub fn kill9_domusd(&mut self) {
        let mut c = self.domusd.take().expect("domusd running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// Runs `domus ARGS` (with the host's environment) from `cwd` (the temp dir by default).
    pub fn domus_in(&self, cwd: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.bins.domus);
        self.env(&mut cmd);
        cmd.args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// A `domus ARGS` command with the host's environment, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_as(&self.bins.domus, args)
    }

    /// As [`Host::command`], through another path to the binary (e.g. a link named `xl`).
    pub fn command_as(&self, bin: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin);
        self.env(&mut cmd);
        cmd.args(args).current_dir(self.dir.path());
        cmd
    }

    /// Stops domusd with SIGTERM (as `systemctl stop` does) and waits for it.
    pub fn term_domusd(&mut self) {
        let mut c = self.domusd.take().expect("domusd running");
        let p = rustix::process::Pid::from_raw(i32::try_from(c.id()).unwrap()).unwrap();
        rustix::process::kill_process(p, rustix::process::Signal::TERM).unwrap();
        c.wait().unwrap();
    }

    /// Runs one of Debian's Xen store clients (from DOMUS_TESTDEPS) against this host's store.
    pub fn xenstore(&self, tool: &str, args: &[&str]) -> String {
        let deps = std::env::var_os("DOMUS_TESTDEPS").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/testdeps"),
            PathBuf::from,
        );
        let bin = deps.join("xen/usr/bin").join(tool);
        assert!(
            bin.exists(),
            "{} missing: run scripts/fetch-test-deps.sh",
            bin.display()
        );
        let o = Command::new(&bin)
            .args(args)
            .env("LD_LIBRARY_PATH", deps.join("xen/usr/lib/x86_64-linux-gnu"))
            .env("XENSTORED_PATH", self.path("run/xenstored/socket"))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{tool} {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// `domus list --json DOM` (Domus's own view: domid, uuid, start_time, ...) of one domain.
    pub fn long(&self, dom: &str) -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["list", "--json", dom])).unwrap();
        v[0].clone()
    }

    pub fn domus(&self, args: &[&str]) -> Output {
        self.domus_in(self.dir.path(), args)
    }

    /// Runs `domus ARGS`, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.domus(args);
        assert!(
            o.status.success(),
            "domus {args:?} failed ({}):\nstdout: {}\nstderr: {}\ndomusd log:\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.domusd_log()
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Runs `domus ARGS`, asserts failure, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.domus(args);
        assert!(
            !o.status.success(),
            "domus {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8(o.stderr).unwrap()
    }

    pub fn domusd_log(&self) -> String {
        fs::read_to_string(self.path("domusd.log")).unwrap_or_default()
    }

    /// Writes a probe config named `name` running `scenario`, with extra xl.cfg lines; returns its path.
    pub fn probe_cfg(&self, file: &str, name: &str, scenario: &str, extra_lines: &str) -> PathBuf {
        let p = self.path(&format!("cfg/{file}"));
        fs::write(
            &p,
            format!(
                "name = \"{name}\"\ntype = \"pvh\"\nkernel = \"{}\"\nextra = \"probe={scenario}\"\nmemory = 16\nvcpus = 1\n{extra_lines}",
                self.bins.probe.display()
            ),
        )
        .unwrap();
        p
    }

    /// `domus list`, parsed (Domain-0 included).
    pub fn list(&self) -> Vec<Row> {
        let out = self.ok(&["list"]);
        let mut lines = out.lines();
        assert_eq!(
            lines.next(),
            Some("Name                                        ID   Mem VCPUs\tState\tTime(s)")
        );
        lines
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                assert_eq!(f.len(), 6, "bad list row {l:?}");
                Row {
                    name: f[0].into(),
                    domid: f[1].parse().unwrap(),
                    mem: f[2].parse().unwrap(),
                    vcpus: f[3].parse().unwrap(),
                    state: f[4].into(),
                }
            })
            .collect()
    }

    pub fn row(&self, name: &str) -> Option<Row> {
        self.list().into_iter().find(|r| r.name == name)
    }

    pub fn console_log(&self, name: &str) -> String {
        fs::read_to_string(self.path(&format!("log/console/guest-{name}.log"))).unwrap_or_default()
    }

    /// Waits until the console log of `name` contains `text`.
    pub fn wait_console(&self, name: &str, text: &str) {
        wait_for(&format!("{text:?} on {name}'s console"), TIMEOUT, || {
            self.console_log(name).contains(text).then_some(())
        });
    }

    /// The pid of a domain's VMM (from `list -l`-style JSON of `domus list -l`).
    pub fn vmm_pid(&self, name: &str) -> Option<u32> {
        let rec = self.records().into_iter().find(|r| r["name"] == name)?;
        rec["vmm"]["pid"]
            .as_u64()
            .map(|p| u32::try_from(p).unwrap())
    }

    /// domusd's persisted domain records.
    pub fn records(&self) -> Vec<serde_json::Value> {
        let Ok(rd) = fs::read_dir(self.path("state/domains")) else {
            return Vec::new();
        };
        rd.filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| serde_json::from_slice(&fs::read(e.path()).ok()?).ok())
            .collect()
    }
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    })
}

pub fn kill9(pid: u32) {
    let p = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut c) = self.domusd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let records = self.records();
        for r in &records {
            if let Some(pid) = r["vmm"]["pid"].as_u64() {
                kill9(u32::try_from(pid).unwrap());
            }
        }
        // Safety net: any process whose command line names this host's directory (a VMM we lost track of
        // would be a bug, but must not outlive the test).
        let me = self.dir.path().to_string_lossy().into_owned();
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(c) = fs::read(format!("/proc/{pid}/cmdline")) {
                if String::from_utf8_lossy(&c).contains(&me) {
                    eprintln!(
                        "killing leftover process {pid}: {}",
                        String::from_utf8_lossy(&c).replace('\0', " ")
                    );
                    kill9(pid);
                }
            }
        }
        // The killed VMMs' cgroups (domusd removes a domain's cgroup only when it sees the VMM
        // stop): every domain cgroup in this host's own parent goes, recorded or not (a destroyed
        // domain's cgroup whose release the killed domusd had not finished has no record left), then
        // the parent.
        remove_domus_parent(&self.cgroup_parent);
    }
}

/// Removes Domus parent cgroup `parent` (inside this process's own v1 cgroups, where a domusd
/// started by the tests makes it) with every domain cgroup in it, waiting briefly for killed
/// processes to leave them.
pub fn remove_domus_parent(parent: &str) {
    let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for ctrl in ["cpu", "memory", "pids"] {
        let Some(path) = own.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            ctrls.split(',').any(|c| c == ctrl).then(|| path.to_owned())
        }) else {
            continue;
        };
        let parent = PathBuf::from(format!("/sys/fs/cgroup/{ctrl}{path}")).join(parent);
        let leaves: Vec<PathBuf> = fs::read_dir(&parent)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        let deadline = Instant::now() + Duration::from_secs(5);
        for dir in leaves {
            while dir.exists() && fs::remove_dir(&dir).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = fs::remove_dir(&parent);
    }
}

/// The SHA-256 of file `path` as hex, by the host's own `sha256sum`.
pub fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "sha256sum {}: {out:?}",
        path.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}
