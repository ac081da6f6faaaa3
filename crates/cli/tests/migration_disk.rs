//! Live migration of a domain with a writable disk (issue 18): the disk's lock is handed from the
//! source VMM to the target VMM (`domus_vmm::machine::disk_locks`). A guest in the middle of
//! `blk-fill` moves to the other host and finishes there with the disk holding exactly what it wrote;
//! while it runs there, the disk is locked against everyone else. A migration whose target refuses
//! the stream after the source paused (and released the lock) leaves the domain running on the
//! source with the lock back.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::migrate_hosts::{host, locked_against, ssh_script};
use support::{wait_for, Host, TIMEOUT};

/// Bytes allocated to `p` (the sparse disk grows as the guest writes).
fn du_bytes(p: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).unwrap().blocks() * 512
}

fn fill_cfg(h: &Host, file: &str, name: &str, disk: &std::path::Path, memory: u32) {
    h.probe_cfg(
        file,
        name,
        "blk-fill seed=23",
        &format!(
            "memory = {memory}\ndisk = ['{},raw,xvda,rw']\non_poweroff = \"preserve\"\n",
            disk.display()
        ),
    );
}

fn sha_line(h: &Host, name: &str) -> Option<String> {
    h.console_log(name)
        .lines()
        .find_map(|l| l.trim().strip_prefix("PROBE blk-fill sha256="))
        .map(str::to_owned)
}

/// The whole `blk-fill sha256=` line: only lines the log already ended with a newline count (the
/// UART prints it byte by byte, so the log may end inside it).
fn full_sha_line(h: &Host, name: &str) -> Option<String> {
    let log = h.console_log(name);
    let whole = log
        .get(..log.rfind('\n').map_or(0, |i| i + 1))
        .unwrap_or_default();
    whole
        .lines()
        .find_map(|l| l.trim().strip_prefix("PROBE blk-fill sha256="))
        .map(str::to_owned)
}

#[test]
fn a_domain_mid_blk_fill_moves_with_its_writable_disk() {
    // Host A's VMMs log at info level: the test reads the hand-over's lines.
    let nsa = support::netns::Netns::new("mda");
    let a = Host::start_in(
        Some(&nsa.name),
        vec![("RUST_LOG".to_owned(), "info".to_owned())],
    );
    let (nsb, b) = host("mdb", false);
    let disk = a.path("disk.img");
    let f = std::fs::File::create(&disk).unwrap();
    f.set_len(2 << 30).unwrap();
    drop(f);
    fill_cfg(&a, "fill.cfg", "fill", &disk, 64);
    a.ok(&["create", "fill.cfg"]);
    a.wait_console("fill", "PROBE boot");
    wait_for("some of the disk written", TIMEOUT, || {
        (du_bytes(&disk) > 64 << 20).then_some(())
    });
    let to_b = ssh_script(&a, &b, &nsb, "ssh-b");

    // Failure after the stop-and-copy: the target's configuration (-C) has more RAM than the
    // stream, which the target VMM finds once the whole stream is in, i.e. after the source
    // paused its guest and released the disk's lock. The source takes the lock back and runs on.
    fill_cfg(&a, "bigger.cfg", "fill", &disk, 80);
    let out = a.domus(&[
        "migrate",
        "-s",
        to_b.to_str().unwrap(),
        "-C",
        a.path("cfg/bigger.cfg").to_str().unwrap(),
        "fill",
        "hostb",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("runs on here"), "{err}");
    assert!(b.row("fill").is_none(), "nothing left on the target");
    let r = a.row("fill").unwrap();
    assert!(!r.state.contains('p'), "running again on the source: {r:?}");
    // The hand-over really happened: released at the pause, taken back before the resume.
    let vmm_log = std::fs::read_to_string(a.path("log/domus-vmm-fill.log")).unwrap();
    assert!(
        vmm_log.contains("disk lock released for the hand-over")
            && vmm_log.contains("disk locks taken back"),
        "{vmm_log}"
    );
    assert!(locked_against(&b, &disk), "the source holds the lock again");
    assert!(
        sha_line(&a, "fill").is_none(),
        "the fill finished before the migration: the test moved nothing in flight"
    );

    // The real move, mid-fill.
    let before = du_bytes(&disk);
    let out = a.domus(&["migrate", "-s", to_b.to_str().unwrap(), "fill", "hostb"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}\n{}", b.domusd_log());
    assert!(
        sha_line(&a, "fill").is_none(),
        "the fill finished on the source: nothing was in flight"
    );
    assert!(a.row("fill").is_none());
    assert!(before < 2 << 30);
    // The target runs it and holds the lock: the source's host cannot take the disk.
    assert!(locked_against(&a, &disk), "the target holds the lock");
    let line = wait_for(
        "the fill to finish on the target",
        Duration::from_secs(180),
        || full_sha_line(&b, "fill"),
    );
    let reported = line.split_whitespace().next().unwrap().to_owned();
    assert!(line.contains("flush=0"), "{line}");
    let on_disk = support::sha256_of(&disk);
    assert_eq!(on_disk, reported, "the disk holds what the guest wrote");
    b.ok(&["destroy", "fill"]);
    wait_for("no VMM left on either host", TIMEOUT, || {
        (a.records().is_empty() && b.records().is_empty()).then_some(())
    });
}
