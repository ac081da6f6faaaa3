//! The whole path through the sandbox: `Launcher::run` spawns the real `domus-bootloader` child (own
//! namespaces, empty root, nobody, seccomp, limits) over images built with Debian's tools, including
//! hostile ones, and collects the kernel, ramdisk and command line.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use domus_bootloader::{BootRequest, BootloaderError, Launcher};
use support::{blob, Images, Tree};

fn launcher() -> Launcher {
    Launcher::new(PathBuf::from(env!("CARGO_BIN_EXE_domus-bootloader")))
}

fn work_dir(base: &tempfile::TempDir) -> PathBuf {
    base.path().join("dom-test")
}

fn grub_image(imgs: &Images, cfg: &str) -> PathBuf {
    let t = Tree::new();
    t.file("boot/vmlinuz", &blob(1, 200_000))
        .file("boot/initrd.img", &blob(2, 30_000))
        .file("boot/grub/grub.cfg", cfg.as_bytes());
    imgs.ext("ext4", &t, 16)
}

fn run(
    l: &Launcher,
    disk: &Path,
    req: &BootRequest,
) -> (
    Result<domus_bootloader::BootFiles, BootloaderError>,
    Duration,
    tempfile::TempDir,
) {
    let base = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let r = l.run(disk, req, &work_dir(&base));
    (r, start.elapsed(), base)
}

fn chain(e: &BootloaderError) -> String {
    domus_bootloader::find::chain(e)
}

#[test]
fn sandboxed_child_extracts_kernel_ramdisk_and_args() {
    let imgs = Images::new();
    let disk = grub_image(
        &imgs,
        "set default=0\nmenuentry 'Probe' {\n linux /boot/vmlinuz probe=hello\n initrd /boot/initrd.img\n}\n",
    );
    let (req, _) = BootRequest::from_config(None, None, Some("console=ttyS0"), &[]).unwrap();
    let (r, _, base) = run(&launcher(), &disk, &req);
    let files = r.unwrap();
    assert_eq!(files.dir(), work_dir(&base));
    assert_eq!(std::fs::read(&files.kernel).unwrap(), blob(1, 200_000));
    assert_eq!(
        std::fs::read(files.ramdisk.as_ref().unwrap()).unwrap(),
        blob(2, 30_000)
    );
    assert_eq!(files.cmdline, "probe=hello console=ttyS0");
    assert_eq!(
        files.summary(),
        "entry 0 'Probe' of /boot/grub/grub.cfg, kernel /boot/vmlinuz, ramdisk /boot/initrd.img on the whole disk, args 'probe=hello console=ttyS0'"
    );
    // Only the two files remain in the work directory (the jail mount point is gone).
    let mut names: Vec<String> = std::fs::read_dir(files.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["kernel", "ramdisk"]);
    let dir = files.dir().to_owned();
    drop(files);
    assert!(
        !dir.exists(),
        "the per-domain directory is removed with BootFiles"
    );
}

#[test]
fn missing_boot_disk_is_reported_by_path() {
    let (r, _, base) = run(
        &launcher(),
        Path::new("/nonexistent/disk.img"),
        &BootRequest::default(),
    );
    assert_eq!(
        chain(&r.unwrap_err()),
        "cannot open boot disk /nonexistent/disk.img read-only: No such file or directory (os error 2)"
    );
    assert!(!work_dir(&base).exists());
}

#[test]
fn unreadable_boot_disk_is_a_clear_error() {
    let not_a_disk = tempfile::tempdir().unwrap();
    let (r, elapsed, base) = run(&launcher(), not_a_disk.path(), &BootRequest::default());
    assert_eq!(
        chain(&r.unwrap_err()),
        format!(
            "cannot open boot disk {} read-only: Is a directory (os error 21)",
            not_a_disk.path().display()
        )
    );
    assert!(elapsed < Duration::from_secs(10));
    assert!(
        !work_dir(&base).exists(),
        "a failed run leaves no directory behind"
    );
}

#[test]
fn nothing_bootable_carries_the_childs_explanation() {
    let imgs = Images::new();
    let disk = grub_image(&imgs, "menuentry 'Chain' {\n chainloader +1\n}\n");
    let (r, _, _) = run(&launcher(), &disk, &BootRequest::default());
    assert_eq!(
        chain(&r.unwrap_err()),
        "no boot configuration found (the whole disk (ext2/3/4): /boot/grub/grub.cfg has no bootable Linux entry: \
         grub.cfg line 1: entry 'Chain' uses 'chainloader', not a Linux kernel: skipped)"
    );
}

#[test]
fn corrupt_superblock_is_a_clear_error() {
    let imgs = Images::new();
    let disk = grub_image(&imgs, "menuentry 'x' { linux /boot/vmlinuz }\n");
    // Keep the magic, break the block size (s_log_block_size) and the block counts.
    let f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&[0xff; 4], 0x418).unwrap();
    f.write_all_at(&[0xff; 8], 0x404).unwrap();
    let (r, elapsed, _) = run(&launcher(), &disk, &BootRequest::default());
    let msg = chain(&r.unwrap_err());
    assert!(
        msg.starts_with("no boot configuration found (the whole disk: ext2/3/4 filesystem: "),
        "{msg}"
    );
    assert!(elapsed < Duration::from_secs(10));
}

#[test]
fn gigantic_kernel_is_refused_by_size() {
    let t = Tree::new();
    t.file(
        "boot/grub/grub.cfg",
        b"menuentry 'Huge' { linux /boot/vmlinuz }\n",
    );
    // Sparse: 200 MiB recorded, almost nothing stored.
    let k = t.path().join("boot/vmlinuz");
    std::fs::File::create(&k)
        .unwrap()
        .set_len(200 << 20)
        .unwrap();
    let imgs = Images::new();
    let disk = imgs.ext("ext4", &t, 16);
    let (r, elapsed, _) = run(&launcher(), &disk, &BootRequest::default());
    assert_eq!(
        chain(&r.unwrap_err()),
        "kernel /boot/vmlinuz on the whole disk: /boot/vmlinuz is 209715200 bytes, more than the 134217728-byte limit"
    );
    assert!(elapsed < Duration::from_secs(10));
}

#[test]
fn symlink_loop_is_a_clear_error() {
    let t = Tree::new();
    t.file("boot/vmlinuz", b"k");
    std::fs::create_dir_all(t.path().join("boot/grub")).unwrap();
    std::os::unix::fs::symlink("loop", t.path().join("boot/grub/grub.cfg")).unwrap();
    std::os::unix::fs::symlink("grub.cfg", t.path().join("boot/grub/loop")).unwrap();
    let imgs = Images::new();
    let disk = imgs.ext("ext4", &t, 8);
    let (r, elapsed, _) = run(&launcher(), &disk, &BootRequest::default());
    let msg = chain(&r.unwrap_err());
    assert!(
        msg.contains("/boot/grub/grub.cfg: ext2/3/4 filesystem: "),
        "{msg}"
    );
    assert!(elapsed < Duration::from_secs(10));
}

#[test]
fn fat_directory_cluster_loop_is_stopped() {
    let t = Tree::new();
    t.file(
        "boot/extlinux/extlinux.conf",
        b"DEFAULT l\nLABEL l\n KERNEL /boot/vmlinuz\n",
    )
    .file("boot/vmlinuz", b"k");
    // Enough 8.3 names that /boot fills its first cluster: no end-of-directory marker stops the walk.
    for i in 0..200 {
        t.file(&format!("boot/F{i:03}"), b"");
    }
    let imgs = Images::new();
    let disk = imgs.fat(&t, 20);
    // Point the FAT entry of /boot's first cluster at itself (both FAT copies): reading /boot loops.
    let out = std::process::Command::new("mshowfat")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(&disk)
        .arg("::/boot")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let cluster: u64 = text
        .split('<')
        .nth(1)
        .unwrap()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let bpb = std::fs::read(&disk).unwrap();
    let bytes_per_sector = u64::from(u16::from_le_bytes([bpb[11], bpb[12]]));
    let reserved = u64::from(u16::from_le_bytes([bpb[14], bpb[15]]));
    let fat_sectors = u64::from(u16::from_le_bytes([bpb[22], bpb[23]]));
    assert!(fat_sectors > 0, "expected FAT12/16");
    assert_eq!(&bpb[54..59], b"FAT16", "a 20 MiB mkfs.vfat is FAT16");
    let f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    use std::os::unix::fs::FileExt;
    for copy in 0..2 {
        let off = (reserved + copy * fat_sectors) * bytes_per_sector + cluster * 2;
        f.write_all_at(&u16::try_from(cluster).unwrap().to_le_bytes(), off)
            .unwrap();
    }
    let mut l = launcher();
    l.limits.cpu_time_secs = 2;
    l.limits.deadline = Duration::from_secs(5);
    let (r, elapsed, _) = run(&l, &disk, &BootRequest::default());
    let err = r.unwrap_err();
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(
        matches!(
            err,
            BootloaderError::Killed {
                signal: libc::SIGKILL,
                ..
            } | BootloaderError::TimedOut(_)
        ),
        "{err:?}"
    );
}

#[test]
fn deeply_nested_and_huge_configs_stay_bounded() {
    let mut cfg = String::new();
    cfg.push_str("menuentry 'Top' { linux /boot/vmlinuz probe=hello }\n");
    for _ in 0..20_000 {
        cfg.push_str("submenu 'x' {\n");
    }
    let imgs = Images::new();
    let disk = grub_image(&imgs, &cfg);
    let (r, elapsed, _) = run(&launcher(), &disk, &BootRequest::default());
    let files = r.unwrap();
    assert_eq!(files.cmdline, "probe=hello");
    assert!(
        files
            .report
            .warnings
            .iter()
            .any(|w| w.contains("nested too deeply")),
        "{:?}",
        files.report.warnings
    );
    assert!(elapsed < Duration::from_secs(10));
}

#[test]
fn a_panicking_disk_reader_is_reported_not_fatal() {
    // Found by the disk_image fuzz target: a FAT directory entry whose cluster is below 2 makes fatfs
    // 0.3.6 subtract with overflow (a panic in builds with overflow checks). The child's panic hook turns
    // it into a report; the parent gets a clear error, never a crash.
    let disk = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fatfs-cluster-underflow.img");
    let (r, elapsed, base) = run(&launcher(), &disk, &BootRequest::default());
    let err = r.unwrap_err();
    assert!(matches!(err, BootloaderError::NotFound { .. }), "{err:?}");
    if cfg!(debug_assertions) {
        assert!(
            chain(&err).starts_with(
                "the bootloader failed on this disk image (a bug in a disk reader): panicked at"
            ),
            "{}",
            chain(&err)
        );
    }
    assert!(elapsed < Duration::from_secs(10));
    assert!(!work_dir(&base).exists());
}
