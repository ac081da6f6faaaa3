//! `cpus` pins each vCPU thread from its start, with no supervisor involved (`domus-vmm --config`).
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{control, probe, temp_dir, vmm_command, wait_bounded, wait_for_path};

/// `Cpus_allowed_list` of the VMM's `vcpuN` threads, by N.
fn vcpu_masks(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let Some(n) = comm
            .trim()
            .strip_prefix("vcpu")
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        let status = std::fs::read_to_string(t.path().join("status")).unwrap();
        let mask = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_owned();
        out.push((n, mask));
    }
    out.sort();
    out
}

#[test]
fn per_vcpu_cpus_pin_the_threads_in_a_standalone_vmm() {
    let nr = std::thread::available_parallelism().unwrap().get();
    assert!(nr >= 2, "this test needs two host CPUs");
    let dir = temp_dir("affinity");
    let cfg = dir.join("pinned.cfg");
    std::fs::write(
        &cfg,
        format!(
            "name = 'pinned'\ntype = 'pvh'\nkernel = '{}'\nextra = 'probe=idle'\nmemory = 16\n\
             vcpus = 2\ncpus = ['1', '0']\n",
            probe().display()
        ),
    )
    .unwrap();
    let sock = dir.join("ctl.sock");
    let child = vmm_command()
        .arg("--config")
        .arg(&cfg)
        .arg("--control")
        .arg(&sock)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_path(&sock, Duration::from_secs(30));
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Each thread pins itself as it starts (before its first guest instruction): wait for both.
    let want = [(0, "1".to_owned()), (1, "0".to_owned())];
    let masks = loop {
        let m = vcpu_masks(pid);
        if m == want || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(masks, want);
    let reply = control(&sock, r#"{"cmd":"destroy"}"#);
    assert_eq!(reply["ok"], true, "{reply}");
    let run = wait_bounded(child, Duration::from_secs(30), "pinned VMM");
    assert_eq!(run.code, 0, "{run:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
