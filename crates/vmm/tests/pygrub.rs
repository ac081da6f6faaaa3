//! `bootloader = "pygrub"` in standalone `domus-vmm --config`: boot disks built in the test with
//! Debian's tools (`mkfs.ext4 -d`, `mkfs.vfat` + `mcopy`, `xorriso`, `sfdisk`) hold the probe guest as
//! their kernel and a boot config whose entries pick different probe scenarios; the probe's output shows
//! which entry's command line it booted with.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;
#[path = "../../bootloader/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use common::{probe, run_vmm, Run};
use support::{Images, Tree};

/// A grub.cfg with two probe entries; the default is `default`.
fn grub_cfg(default: &str) -> String {
    format!(
        "set default=\"{default}\"\n\
         menuentry 'Probe hello' --id hello {{\n  linux /boot/domus-probe probe=hello\n}}\n\
         menuentry 'Probe poweroff' {{\n  linux /boot/domus-probe probe=poweroff\n}}\n"
    )
}

fn tree_with(config_path: &str, config: &str) -> Tree {
    let t = Tree::new();
    t.file("boot/domus-probe", &std::fs::read(probe()).unwrap())
        .file(config_path, config.as_bytes());
    t
}

fn boot(disk: &Path, extra_lines: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("pg.cfg");
    std::fs::write(
        &cfg,
        format!(
            "name = \"pg\"\nbootloader = \"pygrub\"\nmemory = 64\nvcpus = 1\ndisk = [ 'file:{},xvda,r' ]\n{extra_lines}",
            disk.display()
        ),
    )
    .unwrap();
    run_vmm(
        &["--config", cfg.to_str().unwrap()],
        Duration::from_secs(60),
    )
}

fn assert_booted(r: &Run, scenario_line: &str, chosen: &str) {
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(scenario_line), "stdout:\n{}", r.stdout);
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with("domus-vmm: pygrub: ") && l.contains(chosen)),
        "stderr:\n{}",
        r.stderr
    );
}

#[test]
fn ext4_grub2_default_and_entry_by_number_and_id() {
    let imgs = Images::new();
    let disk = imgs.ext("ext4", &tree_with("boot/grub/grub.cfg", &grub_cfg("1")), 16);
    let r = boot(&disk, "");
    assert_booted(&r, "PROBE poweroff", "entry 1 'Probe poweroff' of /boot/grub/grub.cfg, kernel /boot/domus-probe on the whole disk, args 'probe=poweroff'");
    let r = boot(&disk, "bootloader_args = [ '--entry=0' ]\n");
    assert_booted(
        &r,
        "PROBE hello vcpus=1 mem_mib=64",
        "entry 0 'Probe hello'",
    );
    let r = boot(&disk, "bootloader_args = [ '--entry=hello' ]\n");
    assert_booted(&r, "PROBE hello", "entry 0 'Probe hello'");
}

#[test]
fn grubenv_saved_entry() {
    let t = tree_with(
        "boot/grub/grub.cfg",
        &format!("load_env\n{}", grub_cfg("${saved_entry}")),
    );
    t.file(
        "boot/grub/grubenv",
        b"# GRUB Environment Block\nsaved_entry=Probe hello\n",
    );
    let imgs = Images::new();
    let disk = imgs.ext("ext4", &t, 16);
    assert_booted(&boot(&disk, ""), "PROBE hello", "entry 0 'Probe hello'");
}

#[test]
fn config_extra_is_appended_and_kernel_option_skips_the_menu() {
    let cfg = "menuentry 'Plain' {\n  linux /boot/domus-probe console=ttyS0\n}\n";
    let imgs = Images::new();
    let disk = imgs.ext("ext4", &tree_with("boot/grub/grub.cfg", cfg), 16);
    // pygrub: the entry's command line, then the config's extra (libxl's --args).
    let r = boot(&disk, "extra = \"probe=hello\"\n");
    assert_booted(&r, "PROBE hello", "args 'console=ttyS0 probe=hello'");
    // `kernel` in the config names a file on the guest's disk; the menu is not read.
    let r = boot(
        &disk,
        "kernel = \"/boot/domus-probe\"\nextra = \"probe=poweroff\"\n",
    );
    assert_booted(
        &r,
        "PROBE poweroff",
        "kernel /boot/domus-probe on the whole disk, args 'probe=poweroff'",
    );
    // The full path of pygrub, as old configs have it, and bootloader_args overriding the config.
    let r = boot(
        &disk,
        "bootloader = \"/usr/lib/xen-4.17/bin/pygrub\"\nbootloader_args = [ '--kernel=/boot/domus-probe', '--args=probe=hello' ]\n",
    );
    assert_booted(&r, "PROBE hello", "args 'probe=hello'");
}

#[test]
fn ext2_menu_lst_on_an_mbr_partition() {
    let menu = "default 1\ntimeout 3\ntitle hello\n  root (hd0,1)\n  kernel /boot/domus-probe probe=hello\n\
                title poweroff\n  root (hd0,1)\n  kernel /boot/domus-probe probe=poweroff\n";
    let imgs = Images::new();
    let fs = imgs.ext("ext2", &tree_with("boot/grub/menu.lst", menu), 8);
    let swap = imgs.raw("swap.img", &[(4086, b"SWAPSPACE2")], 1 << 20);
    let disk = imgs.partitioned("dos", &[Some(&swap), Some(&fs)], Some(2));
    let r = boot(&disk, "");
    assert_booted(
        &r,
        "PROBE poweroff",
        "entry 1 'poweroff' of /boot/grub/menu.lst, kernel /boot/domus-probe on MBR partition 2",
    );
}

#[test]
fn fat_extlinux_on_a_gpt_partition() {
    let conf = "DEFAULT hello\nLABEL poweroff\n  LINUX /boot/domus-probe\n  APPEND probe=poweroff\n\
                LABEL hello\n  MENU LABEL Hello from FAT\n  LINUX ../domus-probe\n  APPEND probe=hello\n";
    let imgs = Images::new();
    let fs = imgs.fat(&tree_with("boot/extlinux/extlinux.conf", conf), 16);
    let disk = imgs.partitioned("gpt", &[None, Some(&fs)], None);
    let r = boot(&disk, "");
    assert_booted(&r, "PROBE hello", "entry 1 'Hello from FAT' of /boot/extlinux/extlinux.conf, kernel /boot/domus-probe on GPT partition 2 'part2'");
}

#[test]
fn iso9660_isolinux_installer_image() {
    let conf =
        "default install\nlabel install\n  kernel /install.amd/domus-probe\n  append probe=hello\n";
    let t = Tree::new();
    t.file("install.amd/domus-probe", &std::fs::read(probe()).unwrap())
        .file("isolinux/isolinux.cfg", conf.as_bytes());
    let imgs = Images::new();
    let disk = imgs.iso(&t);
    let r = boot(&disk, "");
    assert_booted(
        &r,
        "PROBE hello",
        "entry 0 'install' of /isolinux/isolinux.cfg, kernel /install.amd/domus-probe",
    );
}

#[test]
fn missing_boot_disk_and_bad_options_are_configuration_errors() {
    let r = boot(Path::new("/nonexistent/boot.img"), "");
    assert_eq!(r.code, 1, "{}", r.stderr);
    // Located at the bootloader line, reported with the disk's own problem.
    assert!(
        r.stderr.contains(
            "pg.cfg:2:14: bootloader: pygrub on /nonexistent/boot.img: cannot open boot disk /nonexistent/boot.img read-only: No such file or directory (os error 2)\n"
        ),
        "{}",
        r.stderr
    );
    let imgs = Images::new();
    let disk = imgs.ext("ext4", &tree_with("boot/grub/grub.cfg", &grub_cfg("0")), 16);
    let r = boot(&disk, "bootloader_args = [ '--entry=7' ]\n");
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.reason().ends_with("--entry=7 names no entry of /boot/grub/grub.cfg (entries: 0 'Probe hello', 1 'Probe poweroff')"), "{}", r.reason());
    let r = boot(&disk, "bootloader_args = [ '--frobnicate' ]\n");
    assert!(r.reason().ends_with("bootloader_args: unknown option '--frobnicate' (supported: --entry=N|TITLE, --kernel=PATH, --ramdisk=PATH, --args=ARGS, -q)"), "{}", r.reason());
    let r = boot(&disk, "bootloader = \"/usr/bin/grub-legacy\"\n");
    assert!(
        r.reason()
            .contains("bootloader \"/usr/bin/grub-legacy\" is not supported"),
        "{}",
        r.reason()
    );
}
