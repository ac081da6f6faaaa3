//! `xl save` / `xl restore` with devices (issue 18): a disk saved in the middle of `blk-fill` ends up
//! with exactly what the guest wrote, and a NIC answering ping (domusd in a network namespace the test
//! creates) answers again after the restore, on a TAP domusd made again for the new domid on the same
//! bridge with the same MAC.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::netns::Netns;
use support::{wait_for, Host, TIMEOUT};

#[test]
fn disk_saved_mid_fill_is_complete_after_restore() {
    let h = Host::start();
    let disk = h.path("disk.img");
    let f = std::fs::File::create(&disk).unwrap();
    f.set_len(1 << 30).unwrap();
    drop(f);
    h.probe_cfg(
        "fill.cfg",
        "fill",
        "blk-fill seed=11",
        &format!(
            "memory = 64\ndisk = ['{},raw,xvda,rw']\non_poweroff = \"preserve\"\n",
            disk.display()
        ),
    );
    h.ok(&["create", "fill.cfg"]);
    h.wait_console("fill", "PROBE boot");
    // Well into the fill (1 GiB takes several seconds here), not done.
    wait_for("some of the disk written", TIMEOUT, || {
        (std::fs::metadata(&disk).unwrap().len() > 0 && du_bytes(&disk) > 64 << 20).then_some(())
    });
    let image = h.path("fill.img");
    h.ok(&["save", "fill", image.to_str().unwrap()]);
    assert!(
        !h.console_log("fill").contains("PROBE blk-fill sha256="),
        "the fill finished before the save: the test saved nothing in flight"
    );
    assert!(h.row("fill").is_none());
    // `save` answers before the VMM has finished exiting, never before it let go of the disk.
    assert!(
        lock_is_free(&disk),
        "the disk is still locked after save returned"
    );
    h.ok(&["restore", image.to_str().unwrap()]);
    // The whole line (the UART prints it byte by byte: the end may still be on its way).
    wait_for("the fill to finish", Duration::from_secs(120), || {
        h.console_log("fill")
            .lines()
            .find_map(|l| l.trim().strip_prefix("PROBE blk-fill sha256="))
            .filter(|l| l.contains(" flush="))
            .map(str::to_owned)
    });
    let line = h
        .console_log("fill")
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("PROBE blk-fill sha256=")
                .map(str::to_owned)
        })
        .unwrap();
    let reported = line.split_whitespace().next().unwrap().to_owned();
    assert!(line.contains("flush=0"), "{line}");
    let on_disk = support::sha256_of(&disk);
    assert_eq!(on_disk, reported, "the disk holds what the guest wrote");
    h.ok(&["destroy", "fill"]);
}

/// Whether another open file can take `disk`'s exclusive lock now (no VMM holds one; domusd locks
/// each disk with an open file description lock and the VMM inherits it).
fn lock_is_free(disk: &std::path::Path) -> bool {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .unwrap();
    // SAFETY: `flock` is a plain C struct of integers, for which all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: F_OFD_SETLK reads the `flock` (valid for the call) on an open descriptor; the lock
    // goes with `f` when it closes.
    unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &fl) == 0 }
}

/// Bytes allocated to `p` (a sparse file grows as the guest writes).
fn du_bytes(p: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).unwrap().blocks() * 512
}

#[test]
fn nic_answers_ping_again_after_restore() {
    let ns = Netns::new("sr");
    ns.sh(
        "ip link add bridge0 type bridge && ip addr add 10.0.7.1/24 dev bridge0 && ip link set bridge0 up",
    );
    let h = Host::start_in(Some(&ns.name), Vec::new());
    std::fs::write(
        h.path("cfg/echo.cfg"),
        format!(
            "name = \"echo\"\ntype = \"pvh\"\nkernel = \"{}\"\nextra = \"probe=net-echo ip=10.0.7.10/24\"\nmemory = 64\nvcpus = 1\nvif = ['mac=aa:00:00:07:00:0a,bridge=bridge0']\n",
            h.bins.probe.display()
        ),
    )
    .unwrap();
    h.ok(&["create", "echo.cfg"]);
    let first = h.row("echo").unwrap().domid;
    h.wait_console("echo", "PROBE net-echo ready mac=aa:00:00:07:00:0a");
    assert!(ns.ping([10, 0, 7, 10], 5), "answers before the save");
    let image = h.path("echo.img");
    h.ok(&["save", "echo", image.to_str().unwrap()]);
    wait_for("the old vif gone", TIMEOUT, || {
        (!ns.links().contains(&format!("vif{first}.0"))).then_some(())
    });
    assert!(!ns.ping([10, 0, 7, 10], 1), "nothing answers while saved");
    h.ok(&["restore", image.to_str().unwrap()]);
    let second = h.row("echo").unwrap().domid;
    assert_ne!(first, second);
    let vif = format!("vif{second}.0");
    wait_for("the new vif on the bridge", TIMEOUT, || {
        (ns.master(&vif).as_deref() == Some("bridge0")).then_some(())
    });
    assert!(ns.ping([10, 0, 7, 10], 10), "answers after the restore");
    let nic = &serde_json::from_str::<serde_json::Value>(&h.ok(&["list", "-l", "echo"])).unwrap()
        [0]["config"]["nics"][0];
    assert_eq!(nic["mac"], "aa:00:00:07:00:0a");
    h.ok(&["destroy", "echo"]);
    wait_for("no vif left", TIMEOUT, || {
        (!ns.links().iter().any(|l| l.starts_with("vif"))).then_some(())
    });
}
