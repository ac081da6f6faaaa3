//! The supervisor's state machine against a fake VMM: [`FakeVmm`] stands in for `domus-vmm` through the
//! [`vmm::Launcher`] seam. Its "process" is a `sleep` (so domusd has a real child to watch, reap and
//! kill) and its control socket is served by a thread of this test process, speaking the VMM's control
//! protocol; tests decide what the guest does (power off, reboot, crash, vanish).

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domus_api::messages::{DomainState, ShutdownReason};
use domus_api::paths::Paths;
use domus_config::{Action, DomainConfig};
use serde_json::{json, Value};

use super::dmesg::DmesgRing;
use super::domain::{DomainRecord, Phase, VmmRecord};
use super::store::{DomainStore, StoreDomain};
use super::vmm::{self, VmmError, VmmPaths};
use super::{Daemon, Options};

/// After domusd restarts: recovery, outcomes kept while it was away, admission, a failing state directory.
mod recovery;

/// One fake VMM instance: what its guest reports, and what it was asked.
struct FakeInstance {
    pid: u32,
    name: String,
    outcome: Mutex<Option<(String, Option<String>)>>,
    paused: AtomicBool,
    /// Stop serving the control socket (the VMM vanished or exited).
    gone: AtomicBool,
    requests: Mutex<Vec<String>>,
    spec: domus_spec::VmSpec,
}

impl FakeInstance {
    fn stop(&self, reason: &str, detail: Option<&str>) {
        *lock(&self.outcome) = Some((reason.to_owned(), detail.map(str::to_owned)));
    }

    /// The VMM dies without a word (SIGKILL, as a segfault would).
    fn vanish(&self) {
        self.gone.store(true, Ordering::SeqCst);
        super::sys::kill_hard(self.pid);
    }

    fn reply(&self, cmd: &str) -> Value {
        lock(&self.requests).push(cmd.to_owned());
        match cmd {
            "state" => {
                let outcome = lock(&self.outcome)
                    .clone()
                    .map(|(reason, detail)| json!({"reason": reason, "detail": detail}));
                let paused = self.paused.load(Ordering::SeqCst);
                let state = match (&outcome, paused) {
                    (Some(_), _) => "shutdown",
                    (None, true) => "paused",
                    (None, false) => "running",
                };
                let vcpus: Vec<Value> = (0..self.spec.vcpus)
                    .map(|id| json!({"id": id, "state": "running", "cpu_time_ns": 1000}))
                    .collect();
                let balloon = self.spec.balloon.then(|| {
                    json!({"ram_mib": self.spec.ram_mib(), "target_mib": self.spec.memory_mib,
                           "actual_mib": self.spec.memory_mib})
                });
                json!({"ok": true, "state": state, "outcome": outcome, "vcpus": vcpus,
                       "memory_mib": self.spec.memory_mib, "pid": self.pid, "uptime_ms": 1000,
                       "balloon": balloon})
            }
            "balloon-set" => json!({"ok": true}),
            "power-button" => {
                self.stop("poweroff", Some("acpi-s5"));
                json!({"ok": true})
            }
            "reset" => {
                self.stop("reboot", Some("reset"));
                json!({"ok": true})
            }
            "destroy" => {
                self.stop("poweroff", Some("destroyed"));
                json!({"ok": true})
            }
            // A VMM from before `destroy-unlocked` (named "old..." here) refuses it as serde does.
            "destroy-unlocked" if self.name.starts_with("old") => {
                json!({"ok": false, "error": "unknown variant `destroy-unlocked`, expected one of `state`"})
            }
            "destroy-unlocked" => {
                // Paused, disks unlocked, the reply sent; the process exits some time later.
                self.stop("poweroff", Some("destroyed"));
                self.gone.store(true, Ordering::SeqCst);
                super::sys::kill_hard(self.pid);
                json!({"ok": true})
            }
            "pause" | "resume" => {
                self.paused.store(cmd == "pause", Ordering::SeqCst);
                json!({"ok": true})
            }
            "ack-outcome" => {
                // The supervisor has the outcome: the VMM exits.
                self.gone.store(true, Ordering::SeqCst);
                super::sys::kill_hard(self.pid);
                json!({"ok": true})
            }
            other => json!({"ok": false, "error": format!("unknown command {other}")}),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn serve_client(inst: &FakeInstance, stream: UnixStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    while !inst.gone.load(Ordering::SeqCst) {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {
                let req: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                let cmd = req["cmd"].as_str().unwrap_or("").to_owned();
                let mut out = serde_json::to_vec(&inst.reply(&cmd)).unwrap();
                out.push(b'\n');
                if w.write_all(&out).is_err() {
                    return;
                }
            }
            Err(_) => {}
        }
    }
}

fn serve(inst: Arc<FakeInstance>, control: PathBuf, console: PathBuf) {
    let ctl = UnixListener::bind(&control).unwrap();
    ctl.set_nonblocking(true).unwrap();
    // A console that accepts and stays silent.
    let con = UnixListener::bind(&console).unwrap();
    con.set_nonblocking(true).unwrap();
    let mut consoles = Vec::new();
    while !inst.gone.load(Ordering::SeqCst) {
        if let Ok((s, _)) = ctl.accept() {
            s.set_nonblocking(false).unwrap();
            let i = Arc::clone(&inst);
            std::thread::spawn(move || serve_client(&i, s));
        }
        if let Ok((s, _)) = con.accept() {
            consoles.push(s);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = std::fs::remove_file(&control);
    let _ = std::fs::remove_file(&console);
}

/// The launcher tests give the daemon.
#[derive(Default)]
struct FakeVmm {
    instances: Mutex<Vec<Arc<FakeInstance>>>,
}

impl vmm::Launcher for Arc<FakeVmm> {
    fn spawn(
        &self,
        _domid: u32,
        spec: &domus_spec::VmSpec,
        files: &[std::fs::File],
        p: &VmmPaths,
        _paused: bool,
    ) -> Result<vmm::VmmChild, VmmError> {
        vmm::prepare_dirs(spec, p)?;
        // The hand-off: each resource names the descriptor domusd holds it at.
        assert_eq!(spec.kernel.fd, Some(files[0].as_raw_fd()));
        let child = Command::new("sleep")
            .arg("600")
            .stdin(Stdio::null())
            .spawn()
            .map_err(|source| VmmError::Spawn {
                exe: "sleep".into(),
                source,
            })?;
        let inst = Arc::new(FakeInstance {
            pid: child.id(),
            name: spec.name.clone(),
            outcome: Mutex::new(None),
            paused: AtomicBool::new(false),
            gone: AtomicBool::new(false),
            requests: Mutex::new(Vec::new()),
            spec: spec.clone(),
        });
        lock(&self.instances).push(Arc::clone(&inst));
        let (control, console) = (p.control.clone(), p.console.clone());
        std::thread::spawn(move || serve(inst, control, console));
        Ok(child.into())
    }
}

impl FakeVmm {
    fn spawned(&self) -> usize {
        lock(&self.instances).len()
    }

    fn last(&self, name: &str) -> Arc<FakeInstance> {
        lock(&self.instances)
            .iter()
            .rev()
            .find(|i| i.name == name)
            .cloned()
            .unwrap()
    }
}

/// A store that records what it was told.
#[derive(Default)]
struct FakeStore {
    events: Mutex<Vec<String>>,
}

impl DomainStore for Arc<FakeStore> {
    fn publish(&self, d: &StoreDomain) {
        lock(&self.events).push(format!("publish {} {}", d.domid, d.name));
    }
    fn update(&self, d: &StoreDomain) {
        lock(&self.events).push(format!("update {} {}", d.domid, d.name));
    }
    fn release(&self, domid: u32, _uuid: &str) {
        lock(&self.events).push(format!("release {domid}"));
    }
}

struct Harness {
    dir: tempfile::TempDir,
    daemon: Arc<Daemon>,
    vmm: Arc<FakeVmm>,
    store: Arc<FakeStore>,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let paths = Paths::from_lookup(|k| {
            let sub = match k {
                "DOMUS_RUNTIME_DIR" => "run",
                "DOMUS_STATE_DIR" => "state",
                "DOMUS_LOG_DIR" => "log",
                "DOMUS_CONFIG_DIR" => "etc",
                _ => return None,
            };
            Some(root.join(sub).display().to_string())
        });
        let opts = Options {
            paths,
            vmm_exe: PathBuf::from("/nonexistent/domus-vmm"),
            bootloader_exe: None,
            poll_interval: Duration::from_millis(5),
            idle_poll_interval: Duration::from_millis(50),
            console_log_max_bytes: 1 << 20,
            start_timeout: Duration::from_secs(10),
            destroy_timeout: Duration::from_secs(5),
            host_reserve_mib: 0,
            overcommit: false,
            host_memory_mib: Some(1024),
            restart_limit: None,
            cgroup_parent: None,
            sandbox: None,
        };
        let vmm = Arc::new(FakeVmm::default());
        let store = Arc::new(FakeStore::default());
        let daemon = Daemon::with_launcher(
            opts,
            Box::new(Arc::clone(&store)),
            DmesgRing::default(),
            Box::new(Arc::clone(&vmm)),
        )
        .unwrap();
        let kernel = domus_spec::image::testing::elf_with_notes(&[(
            b"Xen",
            18,
            &0x10_0000u32.to_le_bytes(),
        )]);
        std::fs::write(dir.path().join("kernel"), kernel).unwrap();
        Self {
            dir,
            daemon,
            vmm,
            store,
        }
    }

    /// Another domusd on the same directories (as after a kill -9), recovered.
    fn restarted(&self) -> Arc<Daemon> {
        let d = Daemon::with_launcher(
            self.daemon.opts.clone(),
            Box::new(Arc::clone(&self.store)),
            DmesgRing::default(),
            Box::new(Arc::clone(&self.vmm)),
        )
        .unwrap();
        d.recover().unwrap();
        d
    }

    /// A record as a killed domusd left it.
    fn leave_record(
        &self,
        domid: u32,
        name: &str,
        extra: &str,
        edit: impl FnOnce(&mut DomainRecord),
    ) {
        let config = self.config(name, extra);
        let mut rec = DomainRecord {
            domid,
            name: name.to_owned(),
            uuid: super::domain::random_uuid(),
            config,
            start_time: 1.0,
            maxmem_mib: 16,
            vmm: None,
            stopped: None,
            restarts: 0,
            affinity: std::collections::BTreeMap::new(),
            soft_affinity: std::collections::BTreeMap::new(),
            sched: super::domain::SchedParams::default(),
            pending_config: None,
            reboot_requested: false,
            phase: Phase::Running,
            restart: None,
        };
        edit(&mut rec);
        super::records::Records::open(&self.dir.path().join("state"))
            .unwrap()
            .save(&rec)
            .unwrap();
    }

    fn config(&self, name: &str, extra: &str) -> DomainConfig {
        let text = format!(
            "name = '{name}'\ntype = 'pvh'\nkernel = '{}'\nmemory = 16\n{extra}",
            self.dir.path().join("kernel").display()
        );
        DomainConfig::from_xl(&format!("{name}.cfg"), &text, &[]).unwrap()
    }

    fn runtime(&self) -> PathBuf {
        self.dir.path().join("run/domains")
    }

    fn records(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path().join("state/domains"))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        v.sort();
        v
    }

    fn domids(&self) -> Vec<u32> {
        self.daemon.lock().iter().map(|d| d.rec.domid).collect()
    }

    /// Waits until `name` runs (its VMM answered) as domain `domid`.
    fn wait_running(&self, name: &str, domid: u32) {
        self.wait(&format!("{name} running as domain {domid}"), || {
            self.daemon.lock().iter().any(|d| {
                d.rec.name == name && d.rec.domid == domid && !d.starting && d.rec.vmm.is_some()
            })
        });
    }

    fn wait(&self, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Only instances still running: their pid is our unreaped child, so it cannot name another
        // process.
        for i in lock(&self.vmm.instances).iter() {
            if !i.gone.load(Ordering::SeqCst) {
                i.vanish();
            }
        }
    }
}

fn exists(p: &Path) -> bool {
    p.exists()
}

#[test]
fn create_runs_the_spec_and_poweroff_destroys() {
    let h = Harness::new();
    let info = h
        .daemon
        .create(h.config("web", "vcpus = 2\n"), false)
        .unwrap();
    assert_eq!((info.domid, info.name.as_str()), (1, "web"));
    assert_eq!(h.vmm.spawned(), 1);
    let spec: domus_spec::VmSpec =
        serde_json::from_slice(&std::fs::read(h.runtime().join("1/spec.json")).unwrap()).unwrap();
    assert_eq!(
        (spec.name.as_str(), spec.vcpus, spec.memory_mib),
        ("web", 2, 16)
    );
    assert!(
        spec.kernel.fd.is_some(),
        "the kernel is handed over as a descriptor"
    );
    h.wait("the watcher's first state", || {
        h.daemon.get("web").is_ok_and(|d| d.vcpu_info.len() == 2)
    });
    assert_eq!(h.daemon.get("web").unwrap().state, DomainState::Running);
    assert_eq!(h.records(), ["1.json"]);
    h.daemon.set_paused("web", true).unwrap();
    assert_eq!(h.daemon.get("web").unwrap().state, DomainState::Paused);
    h.daemon.set_paused("web", false).unwrap();
    h.daemon.shutdown("web").unwrap();
    h.wait("on_poweroff = destroy", || h.domids().is_empty());
    assert!(lock(&h.vmm.last("web").requests).contains(&"ack-outcome".to_owned()));
    assert!(h.records().is_empty());
    assert!(!exists(&h.runtime().join("1")));
    assert_eq!(
        *lock(&h.store.events),
        ["publish 1 web", "release 1"],
        "published once, released once"
    );
}

#[test]
fn a_refused_create_spends_no_domid_and_leaves_nothing() {
    let h = Harness::new();
    let bad = h.config(
        "bad",
        "kernel = '/nonexistent/kernel'\ndisk = [ '/nonexistent/d.img,raw,xvda,rw' ]\n",
    );
    let e = h.daemon.create(bad, false).unwrap_err();
    assert_eq!(e.status, 400);
    assert!(
        e.message.starts_with("cannot start domain 'bad':\n  bad.cfg:5:10: kernel: cannot read kernel /nonexistent/kernel"),
        "{}",
        e.message
    );
    assert!(
        e.message
            .contains("bad.cfg:6:10: disk: disk `xvda`: cannot open disk image /nonexistent/d.img"),
        "{}",
        e.message
    );
    assert_eq!(h.vmm.spawned(), 0, "no VMM started");
    assert!(h.domids().is_empty());
    assert!(h.records().is_empty());
    assert!(!exists(&h.runtime()), "no runtime directory");
    assert!(
        !exists(&h.dir.path().join("log/domus-vmm-bad.log")),
        "no log file"
    );
    assert!(lock(&h.store.events).is_empty(), "no store nodes");
    let hvm = h.config("hvm", "type = 'hvm'\n");
    assert!(h
        .daemon
        .create(hvm, false)
        .unwrap_err()
        .message
        .contains("hvm.cfg:5:8: type: type = \"hvm\" needs firmware"));
    // The next good create gets the domid a first create would have got.
    assert_eq!(
        h.daemon.create(h.config("good", ""), false).unwrap().domid,
        1
    );
}

#[test]
fn reboot_restarts_under_the_same_name_with_a_new_domid() {
    let h = Harness::new();
    h.daemon.create(h.config("r", ""), false).unwrap();
    h.daemon.reboot("r", true).unwrap();
    h.wait_running("r", 2);
    assert_eq!(h.domids(), [2]);
    let d = h.daemon.get("r").unwrap();
    assert_eq!((d.domid, d.restarts), (2, 1));
    assert_eq!(h.vmm.spawned(), 2);
    assert_eq!(h.records(), ["2.json"]);
    // A soft reboot: the power button, then the guest's poweroff counts as its reboot.
    h.daemon.reboot("r", false).unwrap();
    h.wait_running("r", 3);
    assert_eq!(h.daemon.get("r").unwrap().restarts, 2);
    h.daemon.destroy("r").unwrap();
    assert!(h.domids().is_empty());
}

#[test]
fn a_crash_with_preserve_is_kept_until_destroyed() {
    let h = Harness::new();
    h.daemon
        .create(h.config("c", "on_crash = 'preserve'\n"), false)
        .unwrap();
    h.vmm.last("c").stop("crash", Some("pvpanic"));
    h.wait("the crash", || {
        h.daemon
            .get("c")
            .is_ok_and(|d| d.state == DomainState::Crashed)
    });
    let d = h.daemon.get("c").unwrap();
    assert_eq!(d.shutdown_reason, Some(ShutdownReason::Crash));
    assert_eq!(d.stop_detail.as_deref(), Some("pvpanic"));
    assert_eq!(d.pid, None);
    assert!(h
        .daemon
        .shutdown("c")
        .unwrap_err()
        .message
        .contains("not running"));
    h.daemon.destroy("c").unwrap();
    assert!(h.domids().is_empty());
    assert!(h.records().is_empty());
}

#[test]
fn a_vanished_vmm_is_a_crash() {
    let h = Harness::new();
    h.daemon.create(h.config("v", ""), false).unwrap();
    h.daemon
        .create(h.config("p", "on_crash = 'preserve'\n"), false)
        .unwrap();
    h.vmm.last("v").vanish();
    h.vmm.last("p").vanish();
    h.wait("both stops", || {
        h.domids() == [2]
            && h.daemon
                .get("p")
                .is_ok_and(|d| d.state == DomainState::Crashed)
    });
    let d = h.daemon.get("p").unwrap();
    assert_eq!(
        d.stop_detail.as_deref(),
        Some("domus-vmm killed by signal 9")
    );
}

#[test]
fn destroy_stops_the_vmm_and_rename_keeps_the_config_in_step() {
    let h = Harness::new();
    h.daemon.create(h.config("d", ""), false).unwrap();
    h.daemon.rename("d", "e").unwrap();
    let d = h.daemon.get("e").unwrap();
    assert_eq!(d.config.as_ref().map(|c| c.name.as_str()), Some("e"));
    h.daemon.mem_max("e", 64).unwrap();
    assert_eq!(h.daemon.get("e").unwrap().maxmem_mib, 64);
    assert_eq!(
        h.daemon.get("e").unwrap().config.map(|c| c.maxmem_mib),
        Some(64)
    );
    h.daemon.destroy("e").unwrap();
    assert!(h.domids().is_empty());
    assert!(lock(&h.vmm.last("d").requests).contains(&"destroy".to_owned()));
    let e = h.daemon.get("e").unwrap_err();
    assert_eq!(e.status, 404);
}

#[test]
fn a_saved_domain_is_gone_once_its_vmm_unlocked_its_disks_and_an_old_vmm_is_waited_for() {
    let h = Harness::new();
    for name in ["s", "old"] {
        h.daemon.create(h.config(name, ""), false).unwrap();
        h.daemon.destroy_with(name, true).unwrap();
        assert_eq!(h.daemon.get(name).unwrap_err().status, 404, "{name}");
        let asked = lock(&h.vmm.last(name).requests).clone();
        assert!(asked.contains(&"destroy-unlocked".to_owned()), "{asked:?}");
        // Only a VMM that refused it gets the plain destroy (and its exit waited for).
        assert_eq!(
            asked.contains(&"destroy".to_owned()),
            name == "old",
            "{asked:?}"
        );
    }
    assert!(h.domids().is_empty());
    assert!(h.records().is_empty(), "{:?}", h.records());
}

#[test]
fn mem_set_moves_the_balloon_and_records_the_target() {
    let h = Harness::new();
    h.daemon
        .create(h.config("m", "memory = 32\nmaxmem = 64\n"), false)
        .unwrap();
    h.daemon.mem_set("m", 48).unwrap();
    assert!(lock(&h.vmm.last("m").requests).contains(&"balloon-set".to_owned()));
    let d = h.daemon.get("m").unwrap();
    assert_eq!(d.config.map(|c| c.memory_mib), Some(48), "the target");
    assert_eq!(h.daemon.mem_set("m", 65).unwrap_err().status, 400);
    assert_eq!(h.daemon.mem_set("m", 8).unwrap_err().status, 400);
    let e = h.daemon.mem_max("m", 40).unwrap_err();
    assert!(
        e.message
            .contains("memory_static_max must be greater than or equal to memory_dynamic_max"),
        "{}",
        e.message
    );
    // A machine without a balloon cannot follow: a conflict that says so, nothing recorded.
    h.daemon
        .create(h.config("n", "memory = 32\nballoon = 0\n"), false)
        .unwrap();
    let e = h.daemon.mem_set("n", 24).unwrap_err();
    assert_eq!(e.status, 409);
    assert!(e.message.contains("has no balloon device"), "{}", e.message);
    assert_eq!(
        h.daemon.get("n").unwrap().config.map(|c| c.memory_mib),
        Some(32)
    );
    assert!(!lock(&h.vmm.last("n").requests).contains(&"balloon-set".to_owned()));
}

#[test]
fn config_update_is_checked_and_used_at_the_next_restart() {
    let h = Harness::new();
    h.daemon.create(h.config("u", ""), false).unwrap();
    let mut bad = h.config("other", "vcpus = 3\n");
    bad.domain_type = domus_config::DomainType::Hvm;
    assert_eq!(h.daemon.config_update("u", bad).unwrap_err().status, 400);
    h.daemon
        .config_update("u", h.config("other", "vcpus = 3\non_reboot = 'restart'\n"))
        .unwrap();
    h.daemon.reboot("u", true).unwrap();
    h.wait_running("u", 2);
    let d = h.daemon.get("u").unwrap();
    assert_eq!(
        (d.name.as_str(), d.vcpus),
        ("u", 3),
        "name kept, new vCPU count"
    );
    assert_eq!(d.config.map(|c| c.on_poweroff), Some(Action::Destroy));
}
