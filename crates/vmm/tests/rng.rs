//! The virtio-rng device (on by default) under the real domus-vmm binary on /dev/kvm, read by the
//! probe guest's driver (`probe=rng bytes=N`).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{probe, run_probe, run_vmm, temp_dir, Run};

/// The hash of a `PROBE rng bytes=<bytes> sha256=...` line.
fn rng_hash(r: &Run, bytes: u64) -> String {
    let prefix = format!("PROBE rng bytes={bytes} sha256=");
    let line = r
        .stdout
        .lines()
        .find_map(|l| l.trim_end().strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in {r:?}"));
    assert_eq!(line.len(), 64, "{line}");
    assert!(line.bytes().all(|c| c.is_ascii_hexdigit()), "{line}");
    line.to_owned()
}

fn run_cfg(dir: &Path, extra_keys: &str, cmdline: &str) -> Run {
    let cfg = dir.join("rng.cfg");
    let text = format!(
        "name = \"rng\"\nkernel = \"{}\"\nmemory = 64\nvcpus = 1\nextra = \"{cmdline}\"\n{extra_keys}",
        probe().display()
    );
    std::fs::write(&cfg, text).unwrap();
    run_vmm(
        &["--config", cfg.to_str().unwrap()],
        Duration::from_secs(120),
    )
}

#[test]
fn two_boots_draw_different_entropy() {
    let a = run_probe("probe=rng bytes=4096", 64, 1);
    assert_eq!(a.code, 0, "{a:?}");
    let b = run_probe("probe=rng bytes=4096", 64, 1);
    assert_eq!(b.code, 0, "{b:?}");
    let (ha, hb) = (rng_hash(&a, 4096), rng_hash(&b, 4096));
    assert_ne!(ha, hb, "two boots got the same bytes");
    // Not the hash of 4096 zero bytes (a device that completes without writing).
    let zeros = "ad7facb2586fc6e966c004d7d1d16b024f5805ff7cb47c7a85dabd8b48892ca7";
    assert_ne!(ha, zeros);
    // A request size that is not a whole number of the driver's 4 KiB chunks.
    let c = run_probe("probe=rng bytes=10000", 64, 1);
    assert_eq!(c.code, 0, "{c:?}");
    rng_hash(&c, 10000);
}

#[test]
fn rng_can_be_turned_off() {
    let dir = temp_dir("rng-off");
    let r = run_cfg(&dir, "rng = 0\n", "probe=rng bytes=64");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("PROBE error rng reason=no-device"),
        "{r:?}"
    );
    let r = run_cfg(&dir, "rng = 0\nballoon = 0\n", "probe=virtio-scan");
    assert!(r.stdout.contains("PROBE virtio-scan devices=0"), "{r:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The rate limit holds the guest back: with 8 KiB/s (burst 8 KiB), 24 KiB cannot arrive in less
/// than two seconds. (A lower bound only: a slow host cannot make it fail.)
#[test]
fn rate_limit_holds_the_guest_back() {
    let dir = temp_dir("rng-rate");
    let t0 = Instant::now();
    let r = run_cfg(&dir, "rng_rate = 8192\n", "probe=rng bytes=24576");
    let took = t0.elapsed();
    assert_eq!(r.code, 0, "{r:?}");
    rng_hash(&r, 24576);
    assert!(took >= Duration::from_millis(1900), "took only {took:?}");
    let r = run_cfg(&dir, "rng_rate = \"fast\"\n", "probe=rng bytes=64");
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("rng_rate"), "{r:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
