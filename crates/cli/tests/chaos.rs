//! domusd killed (SIGKILL) at random instants inside create, destroy, shutdown and reboot, restarted each
//! time; after every restart the host must be in a truthful state: every running domus-vmm listed exactly
//! once, no runtime directory without a listed domain, destroyed domains gone for good, a create that
//! reported success listed, and outcomes applied as configured (poweroff destroys, reboot restarts).
//!
//! Bounded: `CHAOS_ROUNDS` rounds (default 30), one kill each; the seed is printed (set `CHAOS_SEED` to
//! replay a run).
#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::{wait_for, Host};

/// A small xorshift generator: the run is replayable from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// (pid, domid) of every domus-vmm whose control socket is under `domains_dir`.
fn vmms(domains_dir: &Path) -> Vec<(u32, u32)> {
    let prefix = format!("{}/", domains_dir.display());
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(c) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if !support::alive(pid) {
            continue;
        }
        let args: Vec<String> = c
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let Some(ctl) = args.windows(2).find(|w| w[0] == "--control").map(|w| &w[1]) else {
            continue;
        };
        if let Some(id) = ctl
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix("/control.sock"))
            .and_then(|d| d.parse().ok())
        {
            out.push((pid, id));
        }
    }
    out
}

fn runtime_dirs(domains_dir: &Path) -> BTreeSet<u32> {
    fs::read_dir(domains_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The domain cgroups (`domain-DOMID-UUID`) under domusd's Domus parent in the v1 pids hierarchy
/// (domusd runs in this test's cgroup), with their domids.
fn domain_cgroups(h: &Host) -> Vec<(u32, String)> {
    let own = fs::read_to_string("/proc/self/cgroup").unwrap();
    let Some(path) = own.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        ctrls
            .split(',')
            .any(|c| c == "pids")
            .then(|| path.to_owned())
    }) else {
        return Vec::new(); // no v1 pids controller: domusd runs without those cgroups here
    };
    let parent = Path::new("/sys/fs/cgroup/pids")
        .join(path.trim_start_matches('/'))
        .join(&h.cgroup_parent);
    let Ok(rd) = fs::read_dir(parent) else {
        return Vec::new();
    };
    rd.filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| {
            let domid = n.strip_prefix("domain-")?.split('-').next()?.parse().ok()?;
            Some((domid, n))
        })
        .collect()
}

/// What is wrong with the host now, if anything.
fn violations(h: &Host, destroyed: &BTreeSet<String>) -> Vec<String> {
    let domains_dir = h.path("run/domains");
    let rows: Vec<_> = h.list().into_iter().filter(|r| r.domid != 0).collect();
    let mut bad = Vec::new();
    let mut by_domid: BTreeMap<u32, usize> = BTreeMap::new();
    let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &rows {
        *by_domid.entry(r.domid).or_default() += 1;
        *by_name.entry(&r.name).or_default() += 1;
        if destroyed.contains(&r.name) {
            bad.push(format!(
                "destroyed domain {} is back as {}",
                r.name, r.domid
            ));
        }
    }
    bad.extend(
        by_name
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(name, n)| format!("{name} listed {n} times")),
    );
    let procs = vmms(&domains_dir);
    let mut vmm_per_domid: BTreeMap<u32, usize> = BTreeMap::new();
    for (pid, domid) in &procs {
        *vmm_per_domid.entry(*domid).or_default() += 1;
        if by_domid.get(domid) != Some(&1) {
            bad.push(format!(
                "domus-vmm {pid} runs domain {domid}, which is not listed once"
            ));
        }
    }
    for r in &rows {
        if vmm_per_domid.get(&r.domid) != Some(&1) {
            bad.push(format!(
                "listed domain {} ({}, {}) has {} VMMs",
                r.domid,
                r.name,
                r.state,
                vmm_per_domid.get(&r.domid).copied().unwrap_or(0)
            ));
        }
    }
    for d in runtime_dirs(&domains_dir) {
        if !by_domid.contains_key(&d) {
            bad.push(format!(
                "runtime directory of domain {d}, which is not listed"
            ));
        }
    }
    for (domid, leaf) in domain_cgroups(h) {
        if !by_domid.contains_key(&domid) {
            bad.push(format!("cgroup {leaf}, whose domain is not listed"));
        }
    }
    bad
}

/// Waits until `f` holds; panics naming `what`, with domusd's log.
fn eventually(h: &Host, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\ndomusd log:\n{}",
            h.domusd_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the host is consistent (recovery and restarts may take a moment); panics naming what
/// stayed wrong.
fn settle(h: &Host, destroyed: &BTreeSet<String>, round: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = violations(h, destroyed);
        if v.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "round {round} ({what}): after the restart:\n  {}\ndomusd log:\n{}",
            v.join("\n  "),
            h.domusd_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kill9_domusd_at_random_instants_of_the_lifecycle() {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let rounds: usize = std::env::var("CHAOS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    eprintln!("chaos seed {seed} ({rounds} rounds)");
    let mut rng = Rng(seed);
    let mut h = Host::start();
    let mut destroyed: BTreeSet<String> = BTreeSet::new();
    let mut next = 0u32;
    let extra = "on_poweroff = \"destroy\"\non_reboot = \"restart\"\non_crash = \"restart\"\n";
    let started = Instant::now();
    for round in 0..rounds {
        let running = |h: &Host| -> Vec<String> {
            h.list()
                .into_iter()
                .filter(|r| r.domid != 0 && !r.state.contains('d'))
                .map(|r| r.name)
                .collect()
        };
        // Keep two domains to work on: created without a kill.
        while running(&h).len() < 2 {
            next += 1;
            let name = format!("c{next}");
            let cfg = h.probe_cfg(&format!("{name}.cfg"), &name, "idle", extra);
            h.ok(&["create", &cfg.display().to_string()]);
        }
        let names = running(&h);
        let op = ["create", "destroy", "shutdown", "reboot"][rng.below(4) as usize];
        let (args, name) = if op == "create" {
            next += 1;
            let name = format!("c{next}");
            let cfg = h.probe_cfg(&format!("{name}.cfg"), &name, "idle", extra);
            (vec!["create".to_owned(), cfg.display().to_string()], name)
        } else {
            let name = names[rng.below(names.len() as u64) as usize].clone();
            (vec![op.to_owned(), name.clone()], name)
        };
        // Spread over the operation's length (a create takes longest: the VMM must answer).
        // Short delays are weighted up: most of an operation happens in its first milliseconds.
        let span = [
            3_000,
            20_000,
            if op == "create" { 300_000 } else { 120_000 },
        ][rng.below(3) as usize];
        let delay = Duration::from_micros(rng.below(span));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = h
            .command(&refs)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        h.kill9_domusd();
        let out = child.wait_with_output().unwrap();
        let ok = out.status.success();
        let what = format!(
            "{op} {name} killed after {delay:?}, client {}",
            if ok { "succeeded" } else { "failed" }
        );
        eprintln!("round {round}: {what}");
        h.start_domusd();
        settle(&h, &destroyed, round, &what);
        let listed = |h: &Host| h.row(&name).is_some();
        match op {
            "create" if ok => assert!(
                listed(&h),
                "round {round}: {what}, but {name} is not listed"
            ),
            "destroy" | "shutdown" if ok => {
                // Destroy is done; a shutdown's guest powers off and on_poweroff destroys it.
                eventually(
                    &h,
                    &format!("round {round}: {name} gone after {op}"),
                    || !listed(&h),
                );
            }
            "reboot" => {
                // Whether or not the request got through, the domain is there afterwards: either
                // untouched, or rebooted (power button, then poweroff-as-reboot: on_reboot restarts it).
                eventually(
                    &h,
                    &format!("round {round}: {name} listed after reboot"),
                    || listed(&h),
                );
            }
            _ => {}
        }
        if !listed(&h) && op != "create" && op != "reboot" {
            destroyed.insert(name.clone());
        }
        settle(&h, &destroyed, round, &what);
    }
    let log = h.domusd_log();
    eprintln!(
        "chaos: creates undone {}, outcomes applied after restart {}, VMMs swept {}, restarts finished {}",
        log.matches("undoing a create").count(),
        log.matches("applying its outcome").count(),
        log.matches("killing a domus-vmm no domain record claims").count(),
        log.matches("finishing a restart").count()
    );
    // Clean up through the API: everything goes, nothing is left behind.
    for r in h.list().into_iter().filter(|r| r.domid != 0) {
        h.ok(&["destroy", &r.name]);
    }
    let domains_dir = h.path("run/domains");
    wait_for(
        "no VMM, no runtime directory and no domain cgroup left",
        Duration::from_secs(20),
        || {
            (vmms(&domains_dir).is_empty()
                && runtime_dirs(&domains_dir).is_empty()
                && domain_cgroups(&h).is_empty())
            .then_some(())
        },
    );
    eprintln!("chaos: {rounds} rounds in {:?}", started.elapsed());
}
