//! domusd under hostile conditions: a full state file system, clients that stall or never read, umask
//! 000, disks two domains want, more memory than the host has, and names and numbers that are out of
//! bounds. Each test boots real probe guests through the real domusd and domus-vmm.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::Host;

/// A probe config with any lines (memory, disks, ...) after the name and kernel.
fn cfg(h: &Host, name: &str, lines: &str) -> String {
    let p = h.path(&format!("cfg/{name}.cfg"));
    fs::write(
        &p,
        format!(
            "name = \"{name}\"\ntype = \"pvh\"\nkernel = \"{}\"\nextra = \"probe=idle\"\nvcpus = 1\n{lines}",
            h.bins.probe.display()
        ),
    )
    .unwrap();
    p.display().to_string()
}

/// Lazily unmounts a test's tmpfs when dropped.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn xenstore_write(h: &Host, path: &str, value: &str) -> bool {
    let deps = std::env::var_os("DOMUS_TESTDEPS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/testdeps"),
        PathBuf::from,
    );
    Command::new(deps.join("xen/usr/bin/xenstore-write"))
        .args([path, value])
        .env("LD_LIBRARY_PATH", deps.join("xen/usr/lib/x86_64-linux-gnu"))
        .env("XENSTORED_PATH", h.path("run/xenstored/socket"))
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn a_full_state_file_system_fails_closed_and_recovers_by_itself() {
    let mut h = Host::start();
    h.term_domusd();
    let state = h.path("state");
    fs::remove_dir_all(&state).unwrap();
    fs::create_dir_all(&state).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&state)
        .status()
        .unwrap();
    assert!(st.success(), "cannot mount a tmpfs (tests run as root)");
    let _mount = Mount(state.clone());
    h.start_domusd();
    h.ok(&["create", &cfg(&h, "before", "memory = 16\n")]);
    let before = h.row("before").unwrap().domid;
    // Fill the file system.
    let mut fill = fs::File::create(state.join("fill")).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while fill.write_all(&chunk).is_ok() {}
    let _ = fill.flush();
    // Creates and changes are refused with a clear error; nothing is half-made.
    let err = h.fails(&["create", &cfg(&h, "during", "memory = 16\n")]);
    assert!(err.contains("cannot be written"), "{err}");
    assert!(h.row("during").is_none());
    let err = h.fails(&["rename", "before", "renamed"]);
    assert!(err.contains("cannot be written"), "{err}");
    // Running domains and reads go on; the store refuses to acknowledge a write it cannot keep.
    assert_eq!(h.row("before").unwrap().domid, before);
    assert_eq!(
        h.xenstore("xenstore-read", &[&format!("/local/domain/{before}/name")])
            .trim(),
        "before"
    );
    // Values larger than any slack left in the journal's last page: some write must be refused, and
    // whatever was acknowledged must survive (checked after the kill below).
    let big = "v".repeat(2000);
    let mut acked = Vec::new();
    let mut refused = 0;
    for k in 0..8 {
        let key = format!("/tool/full/{k}");
        if xenstore_write(&h, &key, &big) {
            acked.push(key);
        } else {
            refused += 1;
        }
    }
    assert!(
        refused > 0,
        "every store write was acknowledged on a full disk"
    );
    assert!(
        acked.len() < 3,
        "{} writes acknowledged on a full disk",
        acked.len()
    );
    assert_eq!(
        h.xenstore("xenstore-read", &[&format!("/local/domain/{before}/name")])
            .trim(),
        "before",
        "the store stopped serving reads"
    );
    // Space returns: everything works again without a restart.
    drop(fill);
    fs::remove_file(state.join("fill")).unwrap();
    h.ok(&["create", &cfg(&h, "after", "memory = 16\n")]);
    assert!(xenstore_write(&h, "/tool/full", "y"));
    let after = h.row("after").unwrap().domid;
    assert_ne!(after, before);
    // Everything reported done survives a kill -9; no domid is shared.
    h.kill9_domusd();
    h.start_domusd();
    let rows: Vec<_> = h.list().into_iter().filter(|r| r.domid != 0).collect();
    let names: Vec<_> = rows.iter().map(|r| (r.name.as_str(), r.domid)).collect();
    assert_eq!(names, [("before", before), ("after", after)]);
    assert_eq!(h.xenstore("xenstore-read", &["/tool/full"]).trim(), "y");
    for key in &acked {
        assert_eq!(
            h.xenstore("xenstore-read", &[key]).trim(),
            big,
            "{key} was acknowledged, then lost"
        );
    }
    for n in ["before", "after"] {
        h.ok(&["destroy", n]);
    }
    h.kill9_domusd();
}

#[test]
fn stalled_and_non_reading_clients_do_not_delay_list() {
    let h = Host::start();
    h.ok(&["create", &cfg(&h, "busy", "memory = 16\n")]);
    let sock = h.path("run/domusd.sock");
    let mut held = Vec::new();
    // 200 clients that send half a request and go silent.
    for _ in 0..200 {
        let mut s = UnixStream::connect(&sock).unwrap();
        s.write_all(b"GET /v1/domains HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        held.push(s);
    }
    // 130 clients that send a whole request and never read the reply.
    for _ in 0..130 {
        let mut s = UnixStream::connect(&sock).unwrap();
        s.write_all(b"GET /v1/dmesg HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        held.push(s);
    }
    // 20 clients sending one byte at a time.
    let trickle: Vec<UnixStream> = (0..20)
        .map(|_| UnixStream::connect(&sock).unwrap())
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = std::sync::Arc::clone(&stop);
    let t = std::thread::spawn(move || {
        let mut trickle = trickle;
        let msg = b"GET /v1/domains HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut i = 0;
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) && i < msg.len() {
            for s in &mut trickle {
                let _ = s.write_all(&msg[i..=i]);
            }
            i += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    for _ in 0..5 {
        let t0 = Instant::now();
        let rows = h.list();
        let took = t0.elapsed();
        assert!(rows.iter().any(|r| r.name == "busy"));
        assert!(
            took < Duration::from_secs(2),
            "list took {took:?} with stalled clients open"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    t.join().unwrap();
    // The stalled ones are dropped at the read deadline, not served forever.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.write_all(b"GET /v1/domains HTTP/1.1\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let t0 = Instant::now();
    let mut reply = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut reply);
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "a stalled client was kept"
    );
    assert!(
        String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    drop(held);
    h.ok(&["destroy", "busy"]);
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, fs::Metadata)>) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let m = fs::symlink_metadata(e.path()).unwrap();
        if m.is_dir() {
            walk(&e.path(), out);
        }
        out.push((e.path(), m));
    }
}

#[test]
fn files_and_sockets_are_private_under_umask_000() {
    let mut h = Host::start();
    h.term_domusd();
    h.start_domusd_with(Some(0), &[]);
    h.ok(&["create", &cfg(&h, "private", "memory = 16\n")]);
    h.wait_console("private", "PROBE");
    let mut all = Vec::new();
    for d in ["run", "state", "log"] {
        all.push((h.path(d), fs::metadata(h.path(d)).unwrap()));
        walk(&h.path(d), &mut all);
    }
    let names: Vec<String> = all
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for must in [
        "domusd.sock",
        "socket",
        "control.sock",
        "console.sock",
        "spec.json",
        "journal",
        "guest-private.log",
        "domus-vmm-private.log",
    ] {
        assert!(
            names.iter().any(|n| n == must),
            "{must} not found: {names:?}"
        );
    }
    for (p, m) in &all {
        let mode = m.mode() & 0o777;
        if m.is_dir() {
            assert_eq!(mode & 0o027, 0, "{} is {mode:o}", p.display());
        } else {
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", p.display());
        }
    }
    assert_eq!(
        fs::metadata(h.path("state")).unwrap().permissions().mode() & 0o777,
        0o700
    );
    h.ok(&["destroy", "private"]);
}

#[test]
fn disks_are_locked_and_a_refusal_names_the_holder() {
    let h = Host::start();
    let img = h.path("shared.img");
    fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    let rw = format!("memory = 16\ndisk = [ '{},raw,xvda,rw' ]\n", img.display());
    let ro = format!("memory = 16\ndisk = [ '{},raw,xvda,ro' ]\n", img.display());
    h.ok(&["create", &cfg(&h, "writer", &rw)]);
    let writer = h.row("writer").unwrap().domid;
    for (name, lines) in [("second", &rw), ("reader", &ro)] {
        let err = h.fails(&["create", &cfg(&h, name, lines)]);
        assert!(
            err.contains(&format!("held by domain {writer} (writer)")),
            "{name}: {err}"
        );
        assert!(h.row(name).is_none());
    }
    h.ok(&["destroy", "writer"]);
    // Read-only: shared by any number; a writer is then refused.
    h.ok(&["create", &cfg(&h, "r1", &ro)]);
    h.ok(&["create", &cfg(&h, "r2", &ro)]);
    let err = h.fails(&["create", &cfg(&h, "w2", &rw)]);
    assert!(
        err.contains("is in use") && err.contains("held by domain"),
        "{err}"
    );
    // Another program honouring the locks cannot take the disk for writing either.
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .unwrap();
    assert!(
        rustix::fs::fcntl_lock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err(),
        "a writer's lock was granted while domains read the disk"
    );
    drop(f);
    // And what another program locks, no domain gets.
    let other = h.path("other.img");
    fs::write(&other, vec![0u8; 1 << 20]).unwrap();
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&other)
        .unwrap();
    rustix::fs::fcntl_lock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    let lines = format!(
        "memory = 16\ndisk = [ '{},raw,xvda,rw' ]\n",
        other.display()
    );
    let err = h.fails(&["create", &cfg(&h, "w3", &lines)]);
    assert!(err.contains("locked by another domain or program"), "{err}");
    drop(f);
    h.ok(&["create", &cfg(&h, "w3", &lines)]);
    for n in ["r1", "r2", "w3"] {
        h.ok(&["destroy", n]);
    }
}

#[test]
fn admission_counts_running_domains_and_the_host_reserve() {
    let mut h = Host::start();
    h.term_domusd();
    let args = ["--host-memory-mib", "600", "--host-reserve-mib", "300"];
    h.start_domusd_with(None, &args);
    h.ok(&["create", &cfg(&h, "m1", "memory = 128\n")]);
    h.ok(&["create", &cfg(&h, "m2", "memory = 128\n")]);
    let err = h.fails(&["create", &cfg(&h, "m3", "memory = 128\n")]);
    assert!(
        err.contains("not enough memory")
            && err.contains("running domains hold 256 MiB")
            && err.contains("300 MiB are reserved"),
        "{err}"
    );
    assert!(h.row("m3").is_none());
    // Re-adopted domains still count after a restart; overcommit must be asked for, and is logged.
    h.kill9_domusd();
    h.start_domusd_with(None, &args);
    assert!(h
        .fails(&["create", &cfg(&h, "m3", "memory = 128\n")])
        .contains("not enough memory"));
    h.kill9_domusd();
    let mut over = args.to_vec();
    over.push("--overcommit-memory");
    h.start_domusd_with(None, &over);
    h.ok(&["create", &cfg(&h, "m3", "memory = 128\n")]);
    assert!(h.domusd_log().contains("overcommit enabled"));
    for n in ["m1", "m2", "m3"] {
        h.ok(&["destroy", n]);
    }
}

#[test]
fn names_and_numbers_out_of_bounds_are_refused() {
    let h = Host::start();
    for (file, bad) in [
        ("dots", ".."),
        ("dot", "."),
        ("space", " "),
        ("nbsp", "p1\u{a0}"),
        ("rlo", "ab\u{202e}cd"),
        ("zw", "a\u{200b}b"),
    ] {
        let err = h.fails(&["create", &cfg_named(&h, file, bad)]);
        assert!(err.contains("name"), "{bad:?}: {err}");
    }
    let rows: Vec<_> = h.list().into_iter().filter(|r| r.domid != 0).collect();
    assert!(rows.is_empty(), "{rows:?}");
    h.ok(&["create", &cfg(&h, "p1", "memory = 16\n")]);
    let err = h.fails(&["rename", "p1", ".."]);
    assert!(err.contains("invalid domain name"), "{err}");
    let err = h.fails(&["rename", "p1", "p1\u{a0}"]);
    assert!(err.contains("invalid domain name"), "{err}");
    for huge in ["18446744073709551615", "99999999999999g"] {
        let err = h.fails(&["mem-max", "p1", huge]);
        assert!(err.contains("out of range"), "{huge}: {err}");
    }
    // Waits and delays are bounded too (a huge one would overflow a deadline).
    let err = h.fails(&["top", "-b", "-i", "1", "-d", "18446744073709551615"]);
    assert!(err.contains("18446744073709551615"), "{err}");
    let err = h.fails(&["shutdown", "-w", "--timeout", "99999999999999", "p1"]);
    assert!(err.contains("99999999999999"), "{err}");
    assert!(h.row("p1").is_some(), "a refused shutdown acted");
    let l = h.long("p1");
    assert_eq!(l["maxmem_mib"], 16, "{l}");
    h.ok(&["destroy", "p1"]);
}

/// A config whose name is `name` (any text), in file `file`.
fn cfg_named(h: &Host, file: &str, name: &str) -> String {
    let p = h.path(&format!("cfg/{file}.cfg"));
    fs::write(
        &p,
        format!(
            "name = \"{name}\"\ntype = \"pvh\"\nkernel = \"{}\"\nmemory = 16\n",
            h.bins.probe.display()
        ),
    )
    .unwrap();
    p.display().to_string()
}
