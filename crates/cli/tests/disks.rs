//! Disks through the toolstack: `domus disk create`, a domain with disks, Xen's vbd nodes in the store
//! as `xenstore-ls`/`xenstore-read` (Debian's Xen clients) see them, `block-list`, and the refused
//! `block-attach`/`block-detach`.
#![allow(clippy::unwrap_used)]

mod support;

use support::{wait_for, Host, TIMEOUT};

#[test]
fn disk_create_vbd_nodes_block_list_and_no_hotplug() {
    let h = Host::start();
    let img = h.path("a.img");
    let img_s = img.to_str().unwrap().to_owned();
    h.ok(&["disk", "create", &img_s, "4M"]);
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 4 << 20);
    let err = h.fails(&["disk", "create", &img_s, "4M"]);
    assert!(err.contains("already exists"), "{err}");
    h.ok(&["disk", "create", &img_s, "8M", "--sparse", "--force"]);
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 8 << 20);

    let cfg = h.probe_cfg(
        "dk.cfg",
        "dk",
        "idle",
        &format!("disk = ['{img_s},raw,xvda,rw', '{img_s},raw,hdc:cdrom,r']\n"),
    );
    h.ok(&["create", cfg.to_str().unwrap()]);
    h.wait_console("dk", "PROBE idle ready");
    let domid: u32 = h.ok(&["domid", "dk"]).trim().parse().unwrap();

    let be = format!("/local/domain/0/backend/vbd/{domid}/51712");
    assert_eq!(
        h.xenstore("xenstore-read", &[&format!("{be}/params")])
            .trim(),
        img_s
    );
    assert_eq!(
        h.xenstore("xenstore-read", &[&format!("{be}/mode")]).trim(),
        "w"
    );
    assert_eq!(
        h.xenstore("xenstore-read", &[&format!("{be}/dev")]).trim(),
        "xvda"
    );
    let cd = format!("/local/domain/0/backend/vbd/{domid}/5632");
    assert_eq!(
        h.xenstore("xenstore-read", &[&format!("{cd}/mode")]).trim(),
        "r"
    );
    assert_eq!(
        h.xenstore("xenstore-read", &[&format!("{cd}/device-type")])
            .trim(),
        "cdrom"
    );
    let fe = h.xenstore(
        "xenstore-ls",
        &[&format!("/local/domain/{domid}/device/vbd")],
    );
    assert!(
        fe.contains("51712 =") && fe.contains(&format!("backend = \"{be}\"")),
        "{fe}"
    );

    let list = h.ok(&["block-list", "dk"]);
    let lines: Vec<&str> = list.lines().collect();
    assert!(
        lines[0].starts_with("Vdev  BE  handle state evt-ch ring-ref BE-path"),
        "{list}"
    );
    assert_eq!(lines.len(), 3, "{list}");
    let cols: Vec<&str> = lines[1].split_whitespace().collect();
    let dom = domid.to_string();
    assert_eq!(
        cols,
        ["51712", "0", dom.as_str(), "4", "-", "-", be.as_str()],
        "{list}"
    );

    let err = h.fails(&["block-attach", "dk", &format!("{img_s},raw,xvdb,w")]);
    assert!(err.contains("virtio-mmio has no hotplug"), "{err}");
    let err = h.fails(&["block-detach", "dk", "xvda"]);
    assert!(err.contains("virtio-mmio has no hotplug"), "{err}");

    h.ok(&["destroy", "dk"]);
    wait_for("dk gone", TIMEOUT, || h.row("dk").is_none().then_some(()));
    let left = h.xenstore("xenstore-ls", &["/local/domain/0"]);
    assert!(
        !left.contains(&format!("{domid}/51712")) && !left.contains("params"),
        "{left}"
    );
}

/// xentop's VBD columns and `-x` lines carry the VMM's counters: a guest that filled its 2 MiB disk
/// in 1 MiB writes shows VBD_WR 2 and VBD_WSECT 4096 (no reads).
#[test]
fn xentop_shows_the_requests_a_guest_wrote() {
    let h = Host::start();
    let img = h.path("w.img");
    let img_s = img.to_str().unwrap().to_owned();
    h.ok(&["disk", "create", &img_s, "2M"]);
    let cfg = h.path("cfg/w.cfg");
    std::fs::write(
        &cfg,
        format!(
            "name = \"writer\"\ntype = \"pvh\"\nkernel = \"{}\"\nextra = \"probe=blk-fill seed=5 hold=1\"\nmemory = 96\nvcpus = 1\ndisk = ['{img_s},raw,xvda,rw']\n",
            h.bins.probe.display()
        ),
    )
    .unwrap();
    h.ok(&["create", cfg.to_str().unwrap()]);
    h.wait_console("writer", "PROBE blk-fill holding");
    // domusd's watcher samples the VMM: wait for a sample taken after the fill.
    let row = wait_for("xentop counts the writes", TIMEOUT, || {
        let out = h.ok(&["top", "-b", "-i", "1", "-x"]);
        let row = out
            .lines()
            .find(|l| l.trim_start().starts_with("writer"))?
            .to_owned();
        let f: Vec<&str> = row.split_whitespace().collect();
        (f.get(15) == Some(&"2")).then_some(out)
    });
    let lines: Vec<&str> = row.lines().collect();
    let f: Vec<&str> = lines
        .iter()
        .find(|l| l.trim_start().starts_with("writer"))
        .unwrap()
        .split_whitespace()
        .collect();
    // VBDS, VBD_OO, VBD_RD, VBD_WR, VBD_RSECT, VBD_WSECT.
    assert_eq!(&f[12..18], ["1", "0", "0", "2", "0", "4096"], "{row}");
    assert!(
        row.contains("VBD BlkBack 51712 [ca: 0]  OO:        0   RD:        0   WR:        2   RSECT:          0   WSECT:       4096"),
        "{row}"
    );
    h.ok(&["destroy", "writer"]);
    wait_for("writer gone", TIMEOUT, || {
        h.row("writer").is_none().then_some(())
    });
}
