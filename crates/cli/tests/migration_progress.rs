//! Issue 18's progress lines and paused-domain migration, end to end between two Domus "hosts"
//! (`support::migrate_hosts`): `migrate` and `save` print the VMM's progress reports (phase, round,
//! dirty pages, bytes) while they run — the interval is shortened with `DOMUS_PROGRESS_INTERVAL_MS`
//! so a test-sized guest yields several — and a paused domain migrates in one pass, arriving running
//! as with xl (or paused with `-p`), and stays paused on the source when the stream is cut.
#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use support::guest_lines::{last_epoch, wait_epoch_above};
use support::migrate_hosts::{host, locked_against, soak_cfg, soak_cfg_with, ssh_script};
use support::{wait_for, Host, TIMEOUT};

fn names(h: &Host) -> Vec<String> {
    h.list().into_iter().map(|r| r.name).collect()
}

/// Runs `domus ARGS` on `h` with progress lines every `ms`; returns (success, stderr).
fn with_progress(h: &Host, ms: u32, args: &[&str]) -> (bool, String) {
    with_progress_env(h, ms, &[], args)
}

/// [`with_progress`] with more environment.
fn with_progress_env(h: &Host, ms: u32, env: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    let out = h
        .command(args)
        .env("DOMUS_PROGRESS_INTERVAL_MS", ms.to_string())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One parsed progress line.
#[derive(Debug)]
struct Line {
    phase: String,
    round: u32,
    dirty: Option<u64>,
    bytes: u64,
}

/// The number right after `key` in `text`.
fn number_after(text: &str, key: &str) -> Option<u64> {
    let rest = &text[text.find(key)? + key.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The progress lines of `what` (`migration`, `save`) for domain `name` in `stderr`.
fn progress_lines(stderr: &str, what: &str, name: &str) -> Vec<Line> {
    let prefix = format!("{what} progress: {name}: ");
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|l| {
            let phase = if l.starts_with("pre-copy round") {
                "pre-copy"
            } else if l.starts_with("stop-and-copy round") {
                "stop-and-copy"
            } else {
                assert!(l.contains(" pages, "), "{l}");
                "snapshot"
            };
            Line {
                phase: phase.into(),
                round: number_after(l, "round ").map_or(0, |r| u32::try_from(r).unwrap()),
                dirty: number_after(l, ", ").filter(|_| l.contains(" dirty pages,")),
                bytes: number_after(l, " MiB sent (").unwrap_or_else(|| panic!("no bytes: {l}")),
            }
        })
        .collect()
}

#[test]
fn migrate_and_save_print_progress_lines_while_they_run() {
    let (_nsa, a) = host("mpa", true);
    let (nsb, b) = host("mpb", false);
    soak_cfg(&a, "soak", 96, 128);
    a.ok(&["create", "soak.cfg"]);
    wait_epoch_above(&a, "soak", 1);
    let to_b = ssh_script(&a, &b, &nsb, "ssh-b");
    // A downtime target of 0 ms keeps the pre-copy going while the guest dirties pages (until
    // the dirty set stops shrinking): several rounds.
    let (ok, err) = with_progress_env(
        &a,
        20,
        &[("DOMUS_MIGRATE_DOWNTIME_MS", "0")],
        &[
            "migrate",
            "-s",
            to_b.to_str().unwrap(),
            "--debug",
            "soak",
            "hostb",
        ],
    );
    assert!(ok, "{err}\n{}", b.domusd_log());
    println!("{err}");
    let lines = progress_lines(&err, "migration", "soak");
    assert!(lines.len() >= 2, "{err}");
    // Round 1 first (all of RAM), the stop-and-copy last, rounds and bytes never going back.
    assert_eq!(
        (lines[0].phase.as_str(), lines[0].round),
        ("pre-copy", 1),
        "{err}"
    );
    let last = lines.last().unwrap();
    assert_eq!(last.phase, "stop-and-copy", "{err}");
    assert!(
        lines.iter().filter(|l| l.phase == "stop-and-copy").count() >= 1
            && lines
                .iter()
                .skip_while(|l| l.phase == "pre-copy")
                .all(|l| l.phase == "stop-and-copy"),
        "{err}"
    );
    for w in lines.windows(2) {
        assert!(w[1].round >= w[0].round, "{err}");
        assert!(w[1].bytes >= w[0].bytes, "{err}");
    }
    // Round 1 sent the 96 MiB the guest filled before the stop-and-copy began.
    assert!(last.bytes >= 96 << 20, "{err}");
    let total = number_after(&err, "bytes sent:      ").unwrap();
    let rounds = number_after(&err, "pre-copy rounds: ").unwrap();
    assert!(last.bytes <= total, "{err}");
    assert_eq!(u64::from(last.round), rounds, "{err}");
    assert!(rounds >= 2, "{err}");
    // Dirty pages never exceed the guest's 128 MiB of RAM.
    assert!(
        lines
            .iter()
            .filter_map(|l| l.dirty)
            .all(|d| d <= (128 << 20) / 4096),
        "{err}"
    );
    // Each round shows up, from round 2 on with the dirty pages it sends.
    for r in 1..=rounds {
        let first = lines
            .iter()
            .find(|l| u64::from(l.round) == r)
            .unwrap_or_else(|| panic!("round {r}: {err}"));
        assert_eq!(first.dirty.is_some(), r > 1, "round {r}: {err}");
    }
    assert_eq!(names(&b), ["Domain-0", "soak"]);
    wait_epoch_above(&b, "soak", last_epoch(&a.console_log("soak")).unwrap() + 1);

    // save on the target: progress lines with the bytes written so far, up to the image's size.
    let image = b.path("soak.img");
    let (ok, err) = with_progress(&b, 20, &["save", "soak", image.to_str().unwrap()]);
    assert!(ok, "{err}");
    let size = std::fs::metadata(&image).unwrap().len();
    println!("{err}");
    let lines = progress_lines(&err, "save", "soak");
    assert!(!lines.is_empty(), "{err}");
    assert!(
        lines
            .iter()
            .all(|l| l.phase == "snapshot" && l.bytes <= size),
        "{err}"
    );
    for w in lines.windows(2) {
        assert!(w[1].bytes >= w[0].bytes, "{err}");
    }
    assert!(err.contains("save progress: soak: 32768 pages, "), "{err}");
    assert_eq!(names(&b), ["Domain-0"]);
    std::fs::remove_file(image).unwrap();
    wait_for("no VMM left on either host", TIMEOUT, || {
        (a.records().is_empty() && b.records().is_empty()).then_some(())
    });
}

/// An "ssh" that passes only the first `bytes` of the stream on to `inner`.
fn cut_script(from: &Host, inner: &Path, bytes: u64) -> PathBuf {
    let p = from.path("ssh-cut");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nhead -c {bytes} | exec {} \"$@\"\n",
            inner.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn state(h: &Host, name: &str) -> String {
    h.row(name).unwrap().state
}

/// The last epoch stays put for a while: the guest does not run. (Console output written before the
/// pause may reach the log a moment later: the first look waits for that.)
fn stays_still(h: &Host, name: &str) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let e = last_epoch(&h.console_log(name)).unwrap_or(0);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(
        last_epoch(&h.console_log(name)).unwrap_or(0),
        e,
        "{name} runs"
    );
    e
}

#[test]
fn a_paused_domain_migrates_and_arrives_as_xl_leaves_it() {
    let (nsa, a) = host("mqa", true);
    let (nsb, b) = host("mqb", false);
    // A writable disk (shared storage: the same path on both hosts): its lock moves with the domain.
    let disk = a.path("still.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    soak_cfg_with(
        &a,
        "still",
        32,
        64,
        &format!("disk = ['{},raw,xvda,rw']\n", disk.display()),
    );
    a.ok(&["create", "still.cfg"]);
    let domid = a.row("still").unwrap().domid;
    wait_epoch_above(&a, "still", 1);
    a.ok(&["pause", "still"]);
    let e = stays_still(&a, "still");

    // Cut midway: refused, the domain stays here, paused, same domid; nothing on the target.
    let to_b = ssh_script(&a, &b, &nsb, "ssh-b");
    let cut = cut_script(&a, &to_b, 8 << 20);
    let out = a.domus(&["migrate", "-s", cut.to_str().unwrap(), "still", "hostb"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("migration failed, still runs on here"),
        "{err}"
    );
    assert_eq!(a.row("still").unwrap().domid, domid);
    assert!(state(&a, "still").contains('p'), "{:?}", a.row("still"));
    wait_for("the target to clean up", TIMEOUT, || {
        (names(&b) == ["Domain-0"] && b.records().is_empty()).then_some(())
    });
    assert_eq!(stays_still(&a, "still"), e);
    // The source took its disk's lock back.
    assert!(locked_against(&b, &disk));

    // The target refuses (the name is taken there): the domain stays here, paused.
    soak_cfg(&b, "still", 8, 32);
    b.ok(&["create", "still.cfg"]);
    let out = a.domus(&["migrate", "-s", to_b.to_str().unwrap(), "still", "hostb"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(a.row("still").unwrap().domid, domid);
    assert!(state(&a, "still").contains('p'), "{:?}", a.row("still"));
    assert!(locked_against(&b, &disk));
    b.ok(&["destroy", "still"]);
    wait_for("the target to clean up", TIMEOUT, || {
        (names(&b) == ["Domain-0"] && b.records().is_empty()).then_some(())
    });

    // Without -p it runs on the target, as xl's migrate-receive unpauses it; one pass, no tracking.
    let (ok, err) = with_progress(
        &a,
        1000,
        &[
            "migrate",
            "-s",
            to_b.to_str().unwrap(),
            "--debug",
            "still",
            "hostb",
        ],
    );
    assert!(ok, "{err}\n{}", b.domusd_log());
    assert!(err.contains("dirty tracking:  none"), "{err}");
    assert!(err.contains("pre-copy rounds: 1"), "{err}");
    assert!(
        err.contains("migration progress: still: 16384 pages"),
        "{err}"
    );
    assert_eq!(names(&a), ["Domain-0"]);
    assert_eq!(names(&b), ["Domain-0", "still"]);
    assert!(!state(&b, "still").contains('p'), "{:?}", b.row("still"));
    assert!(
        locked_against(&a, &disk),
        "the target holds the disk's lock"
    );
    let moved = wait_epoch_above(&b, "still", e);
    assert!(!b.console_log("still").contains("corrupt"));

    // Paused again and back with -p: it arrives paused, and runs on once unpaused.
    b.ok(&["pause", "still"]);
    let e = stays_still(&b, "still");
    assert!(e >= moved);
    let to_a = ssh_script(&b, &a, &nsa, "ssh-a");
    let out = b.domus(&[
        "migrate",
        "-p",
        "-s",
        to_a.to_str().unwrap(),
        "still",
        "hosta",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(names(&b), ["Domain-0"]);
    assert_eq!(names(&a), ["Domain-0", "still"]);
    assert!(state(&a, "still").contains('p'), "{:?}", a.row("still"));
    assert_eq!(stays_still(&a, "still"), e);
    a.ok(&["unpause", "still"]);
    wait_epoch_above(&a, "still", e + 1);
    assert!(!a.console_log("still").contains("corrupt"));
    a.ok(&["destroy", "still"]);
    wait_for("no VMM left on either host", TIMEOUT, || {
        (a.records().is_empty() && b.records().is_empty()).then_some(())
    });
}
