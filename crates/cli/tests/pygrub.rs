//! `bootloader = "pygrub"` through the whole toolstack: `domus create` (domusd runs the sandboxed
//! bootloader over the first disk before it starts the VMM, and the CLI prints the choice), `create -N`,
//! and a reboot that picks up a changed default entry, as a VPS user updating their own kernel would.
#![allow(clippy::unwrap_used)]

#[path = "../../bootloader/tests/support/mod.rs"]
mod images;
mod support;

use std::path::{Path, PathBuf};

use support::{wait_for, Host, TIMEOUT};

/// An ext4 boot disk: the probe as /boot/domus-probe, entries 'Probe idle' (0) and 'Probe hello' (1),
/// the default from grubenv's saved_entry.
fn boot_disk(h: &Host, imgs: &images::Images, saved: &str) -> PathBuf {
    let t = images::Tree::new();
    t.file("boot/domus-probe", &std::fs::read(&h.bins.probe).unwrap())
        .file(
            "boot/grub/grub.cfg",
            b"load_env\nset default=\"${saved_entry}\"\n\
              menuentry 'Probe idle' {\n  linux /boot/domus-probe probe=idle\n}\n\
              menuentry 'Probe hello' {\n  linux /boot/domus-probe probe=hello\n}\n",
        );
    let mut env = format!("# GRUB Environment Block\nsaved_entry={saved}\n").into_bytes();
    env.resize(1024, b'#');
    t.file("boot/grub/grubenv", &env);
    imgs.ext("ext4", &t, 16)
}

fn pygrub_cfg(h: &Host, name: &str, disk: &Path, extra_lines: &str) {
    std::fs::write(
        h.path(&format!("cfg/{name}.cfg")),
        format!(
            "name = \"{name}\"\nbootloader = \"pygrub\"\nmemory = 16\nvcpus = 1\n\
             disk = [ 'format=raw, vdev=xvda, access=ro, target={}' ]\n{extra_lines}",
            disk.display()
        ),
    )
    .unwrap();
}

fn bootloader_dir_is_empty(h: &Host) -> bool {
    std::fs::read_dir(h.path("run/bootloader")).map_or(true, |d| d.count() == 0)
}

#[test]
fn create_prints_the_choice_and_boots_it() {
    let h = Host::start();
    let imgs = images::Images::new();
    let disk = boot_disk(&h, &imgs, "0");
    pygrub_cfg(&h, "vps", &disk, "on_poweroff = \"destroy\"\n");
    let o = h.domus(&["create", "vps.cfg"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}\n{}", h.domusd_log());
    assert!(
        stderr.contains(
            "pygrub: entry 0 'Probe idle' of /boot/grub/grub.cfg, kernel /boot/domus-probe on the whole disk, args 'probe=idle'"
        ),
        "{stderr}"
    );
    h.wait_console("vps", "PROBE idle ready");
    assert!(
        bootloader_dir_is_empty(&h),
        "extracted files are removed once the VMM has loaded them"
    );
    // The record keeps the bootloader (so a restart runs it again), not the extracted paths.
    let cfg = &h.long("vps")["config"];
    assert_eq!(cfg["bootloader"], "pygrub");
    assert!(cfg["kernel"].is_null(), "{cfg}");
    h.ok(&["destroy", "vps"]);
}

#[test]
fn dry_run_shows_the_choice() {
    let h = Host::start();
    let imgs = images::Images::new();
    let disk = boot_disk(&h, &imgs, "Probe hello");
    pygrub_cfg(&h, "dry", &disk, "extra = \"console=ttyS0\"\n");
    let o = h.domus(&["create", "-N", "dry.cfg"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("pygrub: entry 1 'Probe hello' of /boot/grub/grub.cfg, kernel /boot/domus-probe on the whole disk, args 'probe=hello console=ttyS0'"),
        "{stderr}"
    );
    // libxl's JSON: the config still says pygrub (the choice is made again at every boot).
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["config"]["b_info"]["bootloader"], "pygrub", "{json}");
    assert!(json["config"]["b_info"]["kernel"].is_null(), "{json}");
    assert_eq!(h.list().len(), 1, "a dry run creates nothing");
}

#[test]
fn reboot_runs_pygrub_again_and_boots_the_new_default() {
    let h = Host::start();
    let imgs = images::Images::new();
    let disk = boot_disk(&h, &imgs, "0");
    pygrub_cfg(
        &h,
        "upd",
        &disk,
        "on_poweroff = \"destroy\"\non_reboot = \"restart\"\n",
    );
    h.ok(&["create", "upd.cfg"]);
    h.wait_console("upd", "PROBE idle ready");
    // The guest changes its default entry, as grub-set-default does: grubenv rewritten in place.
    let mut img = std::fs::read(&disk).unwrap();
    let old = b"saved_entry=0\n#";
    let at = img.windows(old.len()).position(|w| w == old).unwrap();
    img[at..at + old.len()].copy_from_slice(b"saved_entry=1\n#");
    std::fs::write(&disk, img).unwrap();
    h.ok(&["reboot", "upd"]);
    // The second boot is the hello entry: it prints and powers off (destroyed by on_poweroff).
    wait_for("the second boot's hello", TIMEOUT, || {
        h.console_log("upd").contains("PROBE hello").then_some(())
    });
    wait_for("the domain to go", TIMEOUT, || {
        h.row("upd").is_none().then_some(())
    });
    assert!(
        h.domusd_log().contains("pygrub: entry 1 'Probe hello'"),
        "{}",
        h.domusd_log()
    );
    assert!(bootloader_dir_is_empty(&h));
}

#[test]
fn hostile_or_missing_disk_fails_create_cleanly() {
    let h = Host::start();
    pygrub_cfg(&h, "gone", Path::new("/nonexistent/disk.img"), "");
    let e = h.fails(&["create", "gone.cfg"]);
    assert!(
        e.contains("pygrub on /nonexistent/disk.img: cannot open boot disk /nonexistent/disk.img read-only: No such file or directory"),
        "{e}"
    );
    let imgs = images::Images::new();
    let junk = imgs.raw("junk.img", &[(0, b"XFSB")], 4 << 20);
    pygrub_cfg(&h, "junk", &junk, "");
    let e = h.fails(&["create", "junk.cfg"]);
    assert!(e.contains("XFS filesystems are not supported"), "{e}");
    assert_eq!(h.list().len(), 1, "no domain left behind");
    assert!(bootloader_dir_is_empty(&h));
}
