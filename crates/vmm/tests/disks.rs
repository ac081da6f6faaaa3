//! virtio-blk end to end: the probe guest's CPL3 driver against the real domus-vmm on /dev/kvm, with
//! real image files (and a loop device for `phy:`). Each VMM child is owned by a [`Guard`] that kills
//! it if the test fails half-way, so no process outlives a failing test.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{probe, temp_dir, vmm, wait_bounded, Run};

/// Kills and reaps the child on drop unless it was handed to `wait_bounded`.
struct Guard(Option<Child>);

impl Guard {
    fn take(mut self) -> Child {
        self.0.take().unwrap()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn write_cfg(dir: &Path, disks: &[String], extra: &str) -> PathBuf {
    let list: Vec<String> = disks.iter().map(|d| format!("'{d}'")).collect();
    let text = format!(
        "name = \"disks\"\nkernel = \"{}\"\nmemory = 96\nvcpus = 1\ndisk = [{}]\nextra = \"{extra}\"\n",
        probe().display(),
        list.join(", ")
    );
    let p = dir.join("domain.cfg");
    std::fs::write(&p, text).unwrap();
    p
}

fn spawn_cfg(cfg: &Path, wrapper: &[&str]) -> Guard {
    let mut cmd = if let Some((first, rest)) = wrapper.split_first() {
        let mut c = Command::new(first);
        c.args(rest).arg(vmm());
        c
    } else {
        Command::new(vmm())
    };
    let child = cmd
        .arg("--config")
        .arg(cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn domus-vmm");
    Guard(Some(child))
}

fn run(dir: &Path, disks: &[String], extra: &str) -> Run {
    let cfg = write_cfg(dir, disks, extra);
    wait_bounded(spawn_cfg(&cfg, &[]).take(), Duration::from_secs(120), extra)
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

fn line_with<'a>(r: &'a Run, prefix: &str) -> &'a str {
    r.stdout
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in {r:?}"))
}

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum (coreutils) must be installed");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

/// A deterministic, non-repeating image of `len` bytes.
fn make_image(path: &Path, len: usize, seed: u64) {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    std::fs::write(path, v).unwrap();
}

#[test]
fn blk_fill_matches_host_file() {
    let dir = temp_dir("blk-fill");
    let img = dir.join("fill.img");
    std::fs::write(&img, vec![0u8; 6 << 20]).unwrap();
    let r = run(
        &dir,
        &[format!("{},raw,xvda,rw", img.display())],
        "probe=blk-fill seed=42",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let l = line_with(&r, "PROBE blk-fill sha256=");
    assert_eq!(field(l, "flush"), Some("0"), "{l}");
    assert_eq!(field(l, "bytes"), Some("6291456"), "{l}");
    assert_eq!(field(l, "sha256").unwrap(), sha256sum(&img), "{r:?}");
    // A different seed writes different data.
    let r2 = run(
        &dir,
        &[format!("{},raw,xvda,rw", img.display())],
        "probe=blk-fill seed=43",
    );
    let l2 = line_with(&r2, "PROBE blk-fill sha256=");
    assert_ne!(field(l2, "sha256"), field(l, "sha256"));
    assert_eq!(field(l2, "sha256").unwrap(), sha256sum(&img));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The thread-pool I/O path (hosts without io_uring) gives the same bytes.
#[test]
fn blk_fill_through_the_thread_pool() {
    let dir = temp_dir("blk-pool");
    let img = dir.join("pool.img");
    std::fs::write(&img, vec![0u8; 3 << 20]).unwrap();
    let cfg = write_cfg(
        &dir,
        &[format!("{},raw,xvda,rw", img.display())],
        "probe=blk-fill seed=11",
    );
    let child = Command::new(vmm())
        .arg("--config")
        .arg(&cfg)
        .env("DOMUS_VMM_NO_IO_URING", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let r = wait_bounded(
        Guard(Some(child)).take(),
        Duration::from_secs(120),
        "pool fill",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let l = line_with(&r, "PROBE blk-fill sha256=");
    assert_eq!(field(l, "sha256").unwrap(), sha256sum(&img), "{r:?}");
    let r = run(
        &dir,
        &[format!("{},raw,xvda,ro", img.display())],
        "probe=blk-sum",
    );
    assert_eq!(
        field(line_with(&r, "PROBE blk-sum disk=0"), "sha256").unwrap(),
        sha256sum(&img)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn blk_sum_matches_sha256sum_in_list_order() {
    let dir = temp_dir("blk-sum");
    let a = dir.join("a.img");
    let b = dir.join("b.img");
    make_image(&a, 3 << 20, 1);
    make_image(&b, (1 << 20) + 4096, 2);
    // `b` first: the guest must see the disks in the config's order.
    let r = run(
        &dir,
        &[
            format!("format=raw, vdev=xvdb, access=rw, target={}", b.display()),
            format!("{},raw,xvdc,ro,direct-io-safe", a.display()),
        ],
        "probe=blk-sum",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let sums: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("PROBE blk-sum disk="))
        .collect();
    assert_eq!(sums.len(), 2, "{r:?}");
    assert_eq!(field(sums[0], "sha256").unwrap(), sha256sum(&b));
    assert_eq!(field(sums[0], "sectors"), Some("2056"));
    assert_eq!(
        field(sums[0], "id"),
        Some("xvdb"),
        "GET_ID answers the vdev"
    );
    assert_eq!(field(sums[1], "id"), Some("xvdc"));
    assert_eq!(field(sums[1], "sha256").unwrap(), sha256sum(&a));
    assert!(r.stdout.contains("PROBE blk-sum disks=2"), "{r:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn read_only_and_cdrom_refuse_writes() {
    let dir = temp_dir("blk-ro");
    let img = dir.join("ro.img");
    make_image(&img, 1 << 20, 3);
    let before = sha256sum(&img);
    for spec in [
        format!("{},raw,xvda,ro", img.display()),
        format!("{},raw,hdc:cdrom,r", img.display()),
    ] {
        let r = run(&dir, std::slice::from_ref(&spec), "probe=blk-ro");
        assert_eq!(r.code, 0, "{r:?}");
        assert!(r.stdout.contains("PROBE blk-ro ok"), "{spec}: {r:?}");
    }
    assert_eq!(sha256sum(&img), before);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn kill_9_after_flush_keeps_the_data() {
    let dir = temp_dir("blk-kill");
    let img = dir.join("k.img");
    std::fs::write(&img, vec![0u8; 2 << 20]).unwrap();
    let cfg = write_cfg(
        &dir,
        &[format!("{},raw,xvda,rw", img.display())],
        "probe=blk-fill seed=9 hold=1",
    );
    let mut g = spawn_cfg(&cfg, &[]);
    let child = g.0.as_mut().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let start = Instant::now();
    let mut sha = None;
    let mut line = String::new();
    while start.elapsed() < Duration::from_secs(60) {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if line.starts_with("PROBE blk-fill sha256=") {
            sha = field(&line, "sha256").map(str::to_owned);
        }
        if line.starts_with("PROBE blk-fill holding") {
            break;
        }
    }
    let sha = sha.expect("the guest never reported its fill");
    // kill -9 through the command, as an operator would.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert_eq!(sha256sum(&img), sha);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Under strace with every fdatasync's return delayed by 300 ms: the guest may only report its
/// FLUSH as complete (the console line it prints after seeing the used entry) after fdatasync on
/// the image returned. A device that completed FLUSH early, or without fdatasync, fails this.
#[test]
fn flush_completes_only_after_fdatasync_returned() {
    let dir = temp_dir("blk-strace");
    let img = dir.join("s.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    let cfg = write_cfg(
        &dir,
        &[format!("{},raw,xvda,rw", img.display())],
        "probe=blk-fill seed=5",
    );
    // Both I/O paths: io_uring (writes invisible to strace) and the thread pool (pwritev visible, so
    // the trace also shows every data write before the fdatasync).
    for pool in [false, true] {
        flush_order(&dir, &cfg, pool);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn flush_order(dir: &Path, cfg: &Path, pool: bool) {
    let log = dir.join(format!("strace-{pool}.txt"));
    let log_s = log.to_str().unwrap().to_owned();
    let env = if pool {
        "DOMUS_VMM_NO_IO_URING=1"
    } else {
        "DOMUS_VMM_IO_URING=1"
    };
    let wrapper = [
        "env",
        env,
        "strace",
        "-f",
        "-s",
        "16",
        "-o",
        &log_s,
        "-e",
        "trace=fdatasync,write,pwritev,pwrite64",
        "-e",
        "inject=fdatasync:delay_exit=300000",
    ];
    let r = wait_bounded(
        spawn_cfg(cfg, &wrapper).take(),
        Duration::from_secs(120),
        "strace",
    );
    assert_eq!(
        r.code, 0,
        "strace must be installed and the guest must power off: {r:?}"
    );
    assert!(r.stdout.contains("PROBE blk-fill sha256="), "{r:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Where fdatasync returned (a plain line, or the "resumed" half of an interrupted one).
    let returned = lines
        .iter()
        .position(|l| {
            (l.contains("fdatasync(") && l.contains("= 0") && !l.contains("unfinished"))
                || (l.contains("<... fdatasync resumed>") && l.contains("= 0"))
        })
        .unwrap_or_else(|| panic!("no completed fdatasync in the trace:\n{text}"));
    // Rebuild the console stream from write(1, ...) calls and find where the fill line starts.
    let mut console = String::new();
    let mut reported = None;
    let mut last_data_write = 0;
    for (i, l) in lines.iter().enumerate() {
        if l.contains("pwritev(") || l.contains("pwrite64(") {
            last_data_write = i;
        }
        if let Some(rest) = l.split_once("write(1, \"").map(|x| x.1) {
            if let Some((s, _)) = rest.split_once('"') {
                console.push_str(&s.replace("\\n", "\n"));
            }
            if reported.is_none() && console.contains("PROBE blk-fill") {
                reported = Some(i);
            }
        }
    }
    let reported = reported.unwrap_or_else(|| panic!("fill line not in the trace:\n{text}"));
    if pool {
        assert!(last_data_write > 0, "no pwritev in the trace:\n{text}");
    }
    assert!(
        last_data_write < returned,
        "a data write came after the flush"
    );
    assert!(
        returned < reported,
        "the guest saw FLUSH complete (trace line {reported}) before fdatasync returned (line {returned})"
    );
}

#[test]
fn hostile_guest_gets_errors_and_the_vmm_survives() {
    let dir = temp_dir("blk-hostile");
    let img = dir.join("h.img");
    make_image(&img, 1 << 20, 4);
    let before = sha256sum(&img);
    let r = run(
        &dir,
        &[format!("{},raw,xvda,rw", img.display())],
        "probe=hostile",
    );
    assert_eq!(
        r.code, 0,
        "the VMM must survive and the guest power off: {r:?}"
    );
    let case = |name: &str| line_with(&r, &format!("PROBE hostile disk=0 case={name} "));
    for name in [
        "out-of-range",
        "beyond-end",
        "data-outside-ram",
        "header-outside-ram",
        "huge-len",
    ] {
        assert_eq!(
            field(case(name), "status"),
            Some("1"),
            "{name}: IOERR expected: {r:?}"
        );
    }
    assert_eq!(field(case("loop"), "used_len"), Some("0"), "{r:?}");
    assert_eq!(field(case("loop"), "status"), Some("255"), "{r:?}");
    assert_eq!(
        field(case("bad-avail-idx"), "needs_reset"),
        Some("1"),
        "{r:?}"
    );
    assert_eq!(field(case("no-handshake"), "completed"), Some("0"), "{r:?}");
    assert_eq!(
        field(case("queue-outside-ram"), "needs_reset"),
        Some("1"),
        "{r:?}"
    );
    assert!(r.stdout.contains("PROBE hostile disk=0 alive=0"), "{r:?}");
    assert_eq!(
        sha256sum(&img),
        before,
        "hostile reads must not change the disk"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `phy:` backend: a loop device over an image (needs root and /dev/loop-control; fails loudly
/// otherwise).
#[test]
fn loop_device_as_phy_backend() {
    let dir = temp_dir("blk-phy");
    let img = dir.join("phy.img");
    make_image(&img, 2 << 20, 5);
    let out = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&img)
        .output()
        .expect("losetup (util-linux) must be installed");
    assert!(
        out.status.success(),
        "losetup failed (this test needs root and loop devices): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dev = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = Command::new("losetup").args(["-d", &self.0]).status();
        }
    }
    let _detach = Detach(dev.clone());
    let r = run(&dir, &[format!("phy:{dev},xvda,w")], "probe=blk-sum");
    assert_eq!(r.code, 0, "{r:?}");
    let l = line_with(&r, "PROBE blk-sum disk=0");
    assert_eq!(field(l, "sectors"), Some("4096"), "{l}");
    assert_eq!(field(l, "sha256").unwrap(), sha256sum(&img));
    let r = run(
        &dir,
        &[format!("phy:{dev},xvda,w")],
        "probe=blk-fill seed=77",
    );
    let l = line_with(&r, "PROBE blk-fill sha256=");
    assert_eq!(field(l, "sha256").unwrap(), sha256sum(&img));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn qcow2_and_missing_disks_are_clear_errors() {
    let dir = temp_dir("blk-bad");
    let img = dir.join("x.qcow2");
    std::fs::write(&img, b"QFI\xfb").unwrap();
    let r = run(
        &dir,
        &[format!("{},qcow2,xvda,rw", img.display())],
        "probe=hello",
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.reason().contains("format qcow2 is not supported"),
        "{}",
        r.reason()
    );
    let r = run(
        &dir,
        &[format!("{},raw,xvda,rw", dir.join("missing.img").display())],
        "probe=hello",
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.reason().contains("cannot open disk"), "{}", r.reason());
    assert!(r.reason().contains("missing.img"), "{}", r.reason());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// DISCARD punches a hole, WRITE_ZEROES zeroes; both read back as zeros and the rest is untouched.
#[test]
fn discard_and_write_zeroes_reach_the_file() {
    use std::os::unix::fs::MetadataExt;
    let dir = temp_dir("blk-zero");
    let img = dir.join("z.img");
    make_image(&img, 4 << 20, 6);
    let before = std::fs::read(&img).unwrap();
    let blocks = std::fs::metadata(&img).unwrap().blocks();
    let r = run(
        &dir,
        &[format!("{},raw,xvda,rw", img.display())],
        "probe=blk-zero",
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("PROBE blk-zero write_zeroes=0 discard=0 flush=0 zero=1"),
        "{r:?}"
    );
    let after = std::fs::read(&img).unwrap();
    assert!(after[..2 << 20].iter().all(|&b| b == 0));
    assert_eq!(after[2 << 20..], before[2 << 20..]);
    let blocks_after = std::fs::metadata(&img).unwrap().blocks();
    assert!(
        blocks_after < blocks,
        "DISCARD should free space: {blocks} -> {blocks_after} blocks"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Each disk is an `LNRO0005` device in the DSDT: slot i at 0xd000_0000 + 4 KiB·i, GSI 10 + i (the
/// probe reads address and GSI from the DSDT's `_CRS`, not from the fixed window).
#[test]
fn dsdt_announces_each_disk_in_order() {
    let dir = temp_dir("blk-dsdt");
    let a = dir.join("a.img");
    let b = dir.join("b.img");
    make_image(&a, 1 << 20, 7);
    make_image(&b, 1 << 20, 8);
    // Disks only: the entropy device and the balloon (on by default) would be more `LNRO0005` devices.
    let cfg = write_cfg(
        &dir,
        &[
            format!("{},raw,xvda,rw", a.display()),
            format!("{},raw,xvdb,rw", b.display()),
        ],
        "probe=virtio-scan",
    );
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("rng = 0\nballoon = 0\n");
    std::fs::write(&cfg, text).unwrap();
    let r = wait_bounded(
        spawn_cfg(&cfg, &[]).take(),
        Duration::from_secs(120),
        "virtio-scan",
    );
    assert_eq!(r.code, 0, "{r:?}");
    for (i, addr, irq) in [(0, "0xd0000000", "10"), (1, "0xd0001000", "11")] {
        let l = line_with(&r, &format!("PROBE virtio-scan dev={i} "));
        assert_eq!(field(l, "addr"), Some(addr), "{l}");
        assert_eq!(field(l, "irq"), Some(irq), "{l}");
        assert_eq!(field(l, "version"), Some("2"), "{l}");
        assert_eq!(field(l, "device_id"), Some("2"), "{l}");
    }
    assert!(r.stdout.contains("PROBE virtio-scan devices=2"), "{r:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The entropy device (on by default) takes the slot after the disks: device type 4 (virtio-rng).
#[test]
fn rng_follows_the_disks() {
    let dir = temp_dir("blk-rng-slot");
    let a = dir.join("a.img");
    make_image(&a, 1 << 20, 7);
    // No balloon: it would take the slot after the entropy device.
    let cfg = write_cfg(
        &dir,
        &[format!("{},raw,xvda,rw", a.display())],
        "probe=virtio-scan",
    );
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("balloon = 0\n");
    std::fs::write(&cfg, text).unwrap();
    let r = wait_bounded(
        spawn_cfg(&cfg, &[]).take(),
        Duration::from_secs(120),
        "virtio-scan",
    );
    assert_eq!(r.code, 0, "{r:?}");
    let disk = line_with(&r, "PROBE virtio-scan dev=0 ");
    assert_eq!(field(disk, "device_id"), Some("2"), "{disk}");
    let rng = line_with(&r, "PROBE virtio-scan dev=1 ");
    assert_eq!(field(rng, "addr"), Some("0xd0001000"), "{rng}");
    assert_eq!(field(rng, "irq"), Some("11"), "{rng}");
    assert_eq!(field(rng, "device_id"), Some("4"), "{rng}");
    assert!(r.stdout.contains("PROBE virtio-scan devices=2"), "{r:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
