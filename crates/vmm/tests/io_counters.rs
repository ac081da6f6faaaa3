//! The per-disk I/O counters of the control socket's `state` reply against what the probe guest's
//! CPL3 virtio-blk driver did: `blk-fill` writes the disk in 1 MiB requests, `blk-sum` reads it in
//! 1 MiB requests (GET_ID is not a read). The VMM child is killed if the test fails half-way.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{control, probe, temp_dir, vmm, wait_bounded, wait_for_path};

const LIMIT: Duration = Duration::from_secs(120);
const DISK_BYTES: u64 = 3 << 20;

/// Kills and reaps the child on drop unless it was taken.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts the VMM on the probe with `img` as xvda (`mode` rw or ro) and a control socket; returns the
/// guard and the guest's console lines.
fn start(dir: &Path, img: &Path, mode: &str, extra: &str) -> (Guard, mpsc::Receiver<String>) {
    let cfg = dir.join(format!("{mode}.cfg"));
    std::fs::write(
        &cfg,
        format!(
            "name = \"io\"\nkernel = \"{}\"\nmemory = 96\nvcpus = 1\ndisk = ['{},raw,xvda,{mode}']\nextra = \"{extra}\"\n",
            probe().display(),
            img.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(vmm())
        .arg("--config")
        .arg(&cfg)
        .arg("--control")
        .arg(dir.join("ctl.sock"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn domus-vmm");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Guard(Some(child)), rx)
}

fn wait_line(rx: &mpsc::Receiver<String>, prefix: &str) -> String {
    let start = Instant::now();
    while let Some(left) = LIMIT.checked_sub(start.elapsed()) {
        match rx.recv_timeout(left) {
            Ok(l) if l.starts_with(prefix) => return l,
            Ok(_) => {}
            Err(e) => panic!("no line starting with {prefix:?}: {e}"),
        }
    }
    panic!("no line starting with {prefix:?} within {LIMIT:?}");
}

fn disk0(ctl: &Path) -> (u64, u64, u64, u64) {
    let v = control(ctl, r#"{"cmd":"state"}"#);
    assert_eq!(v["ok"], true, "{v}");
    let d = &v["disks"];
    assert_eq!(d.as_array().map(Vec::len), Some(1), "one disk: {v}");
    let n = |k: &str| d[0][k].as_u64().unwrap_or_else(|| panic!("no {k}: {v}"));
    (n("rd_reqs"), n("rd_sectors"), n("wr_reqs"), n("wr_sectors"))
}

#[test]
fn state_counts_the_requests_and_sectors_the_guest_moved() {
    let dir = temp_dir("io-counters");
    let img = dir.join("d.img");
    std::fs::write(&img, vec![0u8; DISK_BYTES as usize]).unwrap();
    let ctl = dir.join("ctl.sock");
    let mib_requests = DISK_BYTES >> 20;
    let sectors = DISK_BYTES / 512;

    // blk-fill: every byte written once, in 1 MiB requests; nothing read.
    let (mut g, rx) = start(&dir, &img, "rw", "probe=blk-fill seed=7 hold=1");
    let l = wait_line(&rx, "PROBE blk-fill sha256=");
    assert!(l.contains(&format!("bytes={DISK_BYTES}")), "{l}");
    wait_line(&rx, "PROBE blk-fill holding");
    assert_eq!(disk0(&ctl), (0, 0, mib_requests, sectors));
    let mut child = g.0.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_file(&ctl);

    // blk-sum: every byte read once, in 1 MiB requests; nothing written. The counters stay readable
    // after the guest stopped, until the outcome is acknowledged.
    let (mut g, rx) = start(&dir, &img, "ro", "probe=blk-sum");
    wait_line(&rx, "PROBE blk-sum disks=1");
    wait_for_path(&ctl, LIMIT);
    let start = Instant::now();
    while control(&ctl, r#"{"cmd":"state"}"#)["state"] != "shutdown" {
        assert!(start.elapsed() < LIMIT, "the guest never stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(disk0(&ctl), (mib_requests, sectors, 0, 0));
    assert_eq!(control(&ctl, r#"{"cmd":"ack-outcome"}"#)["ok"], true);
    let r = wait_bounded(g.0.take().unwrap(), LIMIT, "blk-sum");
    assert_eq!(r.code, 0, "{r:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
