//! `xl save` / `xl restore` end to end (issue 18) against a real domusd, domus-vmm and probe guest:
//! a mem-soak domain saved and restored carries on with the next epochs and no corruption (same name
//! and UUID, a new domid), `save -c` keeps it running, `list` is right at every step, and damaged
//! images (truncated, a flipped byte, a wrong version, not an image) and a name in use are refused with
//! nothing created.
#![allow(clippy::unwrap_used)]

mod support;

use support::guest_lines::{last_epoch, wait_epoch_above};
use support::{wait_for, Host, TIMEOUT};

fn soak_cfg(h: &Host, file: &str, name: &str) {
    std::fs::write(
        h.path(&format!("cfg/{file}")),
        format!(
            "name = \"{name}\"\ntype = \"pvh\"\nkernel = \"{}\"\nextra = \"probe=mem-soak mib=32\"\nmemory = 64\nvcpus = 1\n",
            h.bins.probe.display()
        ),
    )
    .unwrap();
}

#[test]
fn save_restore_continues_mem_soak_and_damaged_images_are_refused() {
    let h = Host::start();
    soak_cfg(&h, "soak.cfg", "soak");
    h.ok(&["create", "soak.cfg"]);
    let uuid = h.long("soak")["uuid"].as_str().unwrap().to_owned();
    let first_id = h.row("soak").unwrap().domid;
    let e1 = wait_epoch_above(&h, "soak", 1);

    // save -c: written, and the domain keeps running (epochs move on).
    let kept = h.path("kept.img");
    h.ok(&["save", "-c", "soak", kept.to_str().unwrap()]);
    assert!(kept.exists());
    let r = h.row("soak").unwrap();
    assert_eq!(r.domid, first_id);
    assert!(r.state.contains('r') || r.state.contains('b'), "{r:?}");
    let e2 = wait_epoch_above(&h, "soak", e1);

    // save (a relative FILE, from the current directory): the domain is gone afterwards.
    let out = h.domus_in(&h.path(""), &["save", "soak", "soak.img"]);
    assert!(out.status.success(), "{out:?}");
    let image = h.path("soak.img");
    assert!(image.exists());
    assert!(h.row("soak").is_none(), "destroyed after save");
    let saved = last_epoch(&h.console_log("soak")).unwrap();
    assert!(saved >= e2);
    let leftovers: Vec<_> = std::fs::read_dir(h.path(""))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // restore: same name and UUID, a new domid, the epochs continue, no corruption.
    h.ok(&["restore", image.to_str().unwrap()]);
    let r = h.row("soak").unwrap();
    assert_ne!(r.domid, first_id);
    assert_eq!(h.long("soak")["uuid"], uuid.as_str());
    wait_epoch_above(&h, "soak", saved + 1);
    assert!(!h.console_log("soak").contains("corrupt"));
    // The log continues the count: no epoch restarts at 1 after the restore.
    let log = h.console_log("soak");
    let after: Vec<u64> = log
        .lines()
        .filter_map(|l| l.trim().strip_prefix("PROBE mem-soak epoch="))
        .filter_map(|l| l.strip_suffix(" ok")?.parse().ok())
        .collect();
    assert!(after.iter().filter(|&&e| e == 1).count() == 1, "{after:?}");

    // The name is in use now: a second restore is refused, nothing created.
    let before = h.list().len();
    let e = h.fails(&["restore", kept.to_str().unwrap()]);
    assert!(e.contains("already exists"), "{e}");
    assert_eq!(h.list().len(), before);

    // restore -p of the kept image under the other name is refused too (same UUID in use)...
    // ...so destroy first, then restore -p: paused until unpause.
    h.ok(&["destroy", "soak"]);
    h.ok(&["restore", "-p", kept.to_str().unwrap()]);
    assert!(h.row("soak").unwrap().state.contains('p'));
    h.ok(&["unpause", "soak"]);
    let r = h.row("soak").unwrap();
    assert!(!r.state.contains('p'), "{r:?}");
    h.ok(&["destroy", "soak"]);

    // Damaged images: refused, nothing created, no domain left.
    let good = std::fs::read(&image).unwrap();
    let hdr = good.windows(7).position(|w| w == b"DOMUSVM").unwrap();
    let damaged: Vec<(&str, Vec<u8>, &str)> = vec![
        ("trunc.img", good[..good.len() / 3].to_vec(), "truncated"),
        ("trunc-head.img", good[..10].to_vec(), "truncated"),
        (
            "flip.img",
            {
                let mut b = good.clone();
                let i = b.len() - 100;
                b[i] ^= 0x20;
                b
            },
            "checksum mismatch",
        ),
        (
            "flip-head.img",
            {
                let mut b = good.clone();
                b[30] ^= 0x20;
                b
            },
            "checksum mismatch",
        ),
        (
            "version.img",
            {
                let mut b = good.clone();
                b[8] = 2;
                b
            },
            "version 2 is not supported",
        ),
        (
            "vmm-version.img",
            {
                let mut b = good.clone();
                b[hdr + 8] = 3;
                b
            },
            "version 3 is not supported",
        ),
        (
            "junk.img",
            b"this is not an image at all, just some text".to_vec(),
            "not a Domus",
        ),
    ];
    for (file, bytes, want) in damaged {
        let p = h.path(file);
        std::fs::write(&p, bytes).unwrap();
        let e = h.fails(&["restore", p.to_str().unwrap()]);
        assert!(e.contains(want), "{file}: {e}");
        assert!(h.row("soak").is_none(), "{file}: a domain was left");
        assert_eq!(h.list().len(), 1, "{file}: only Domain-0");
    }
    wait_for("no VMM left", TIMEOUT, || {
        h.records().is_empty().then_some(())
    });
}

#[test]
fn save_refusals() {
    let h = Host::start();
    h.probe_cfg("idle.cfg", "idle1", "idle", "");
    h.ok(&["create", "idle.cfg"]);
    // A missing directory: refused, the domain runs on.
    let e = h.fails(&["save", "idle1", "/nonexistent-dir/x.img"]);
    assert!(e.contains("cannot create"), "{e}");
    assert!(h.row("idle1").is_some());
    assert!(h.fails(&["save", "nope", "/tmp/x.img"]).contains("nope"));
    let e = h.fails(&["save", "0", h.path("d0.img").to_str().unwrap()]);
    assert!(e.contains("Domain-0"), "{e}");
    assert!(!h.path("d0.img").exists());
    h.ok(&["destroy", "idle1"]);
}
