//! Finding and extracting the kernel in-process (the code the sandboxed child runs), over images built
//! with Debian's mkfs tools: each filesystem, each layout, each config format, entry selection, and
//! hostile images.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Seek;
use std::path::Path;

use domus_bootloader::disk::Region;
use domus_bootloader::find::{self, chain};
use domus_bootloader::protocol::{self, Limits, Report, Writer};
use domus_bootloader::BootRequest;
use support::{blob, Images, Tree};

struct Booted {
    report: Report,
    kernel: Vec<u8>,
    ramdisk: Vec<u8>,
}

fn boot_req(img: &Path, req: &BootRequest) -> Result<Booted, String> {
    let disk = Region::whole(std::fs::File::open(img).unwrap()).unwrap();
    let found = find::find(&disk, req).map_err(|e| chain(&e))?;
    let mut out = tempfile::tempfile().unwrap();
    let mut w = Writer::new(&mut out).unwrap();
    find::report(&found, Limits::default(), &mut w).map_err(|e| chain(&e))?;
    w.finish().unwrap();
    out.rewind().unwrap();
    let (mut kernel, mut ramdisk) = (Vec::new(), Vec::new());
    let report = protocol::parse(&mut out, Limits::default(), &mut kernel, &mut ramdisk).unwrap();
    Ok(Booted {
        report,
        kernel,
        ramdisk,
    })
}

fn boot(img: &Path) -> Result<Booted, String> {
    boot_req(img, &BootRequest::default())
}

fn entry(spec: &str) -> BootRequest {
    BootRequest {
        entry: Some(spec.into()),
        ..BootRequest::default()
    }
}

const GRUB_CFG: &str = r#"
# Generated-looking config with the usual noise.
if [ -s $prefix/grubenv ]; then
  set have_grubenv=true
  load_env
fi
set default="1"
set timeout=5
insmod ext2
function load_video {
  insmod all_video
}
menuentry 'Old kernel' --class debian $menuentry_id_option 'gnulinux-old' {
	load_video
	set root='hd0,msdos1'
	linux	/boot/vmlinuz-old root=/dev/xvda1 ro quiet
	initrd	/boot/initrd-old
}
menuentry "New kernel" --id gnulinux-new {
	set extra="probe=hello"
	linux (hd0,msdos1)/boot/vmlinuz-new root=/dev/xvda1 ro ${extra}
	initrd /boot/initrd-new
}
submenu 'Advanced options' {
	menuentry 'Recovery' {
		linux /boot/vmlinuz-old root=/dev/xvda1 single
	}
}
menuentry 'Xen hypervisor' {
	multiboot /boot/xen.gz
	module /boot/vmlinuz-old
}
"#;

fn grub_tree() -> Tree {
    let t = Tree::new();
    t.file("boot/vmlinuz-old", &blob(1, 100_000))
        .file("boot/initrd-old", &blob(2, 50_000))
        .file("boot/vmlinuz-new", &blob(3, 300_000))
        .file("boot/initrd-new", &blob(4, 70_000))
        .file("boot/grub/grub.cfg", GRUB_CFG.as_bytes());
    t
}

#[test]
fn ext4_grub2_default_entry() {
    let imgs = Images::new();
    let img = imgs.ext("ext4", &grub_tree(), 16);
    let b = boot(&img).unwrap();
    assert_eq!(b.report.title.as_deref(), Some("New kernel"));
    assert_eq!(b.report.position.as_deref(), Some("1"));
    assert_eq!(b.report.config.as_deref(), Some("/boot/grub/grub.cfg"));
    assert_eq!(b.report.volume.as_deref(), Some("the whole disk"));
    assert_eq!(b.report.kernel_path.as_deref(), Some("/boot/vmlinuz-new"));
    assert_eq!(
        b.report.args.as_deref(),
        Some("root=/dev/xvda1 ro probe=hello")
    );
    assert_eq!(b.kernel, blob(3, 300_000));
    assert_eq!(b.ramdisk, blob(4, 70_000));
    assert!(
        b.report
            .warnings
            .iter()
            .any(|w| w.contains("'Xen hypervisor' uses 'multiboot'")),
        "{:?}",
        b.report.warnings
    );
}

#[test]
fn grub2_entry_by_number_title_id_and_submenu_path() {
    let imgs = Images::new();
    let img = imgs.ext("ext4", &grub_tree(), 16);
    for (spec, title) in [
        ("0", "Old kernel"),
        ("Old kernel", "Old kernel"),
        ("gnulinux-old", "Old kernel"),
        ("gnulinux-new", "New kernel"),
        ("2>0", "Recovery"),
        ("Advanced options>Recovery", "Recovery"),
    ] {
        let b = boot_req(&img, &entry(spec)).unwrap();
        assert_eq!(b.report.title.as_deref(), Some(title), "--entry={spec}");
    }
    let b = boot_req(&img, &entry("0")).unwrap();
    assert_eq!(b.kernel, blob(1, 100_000));
    assert_eq!(b.report.args.as_deref(), Some("root=/dev/xvda1 ro quiet"));
}

#[test]
fn unknown_entry_is_an_error_listing_the_entries() {
    let imgs = Images::new();
    let img = imgs.ext("ext4", &grub_tree(), 16);
    let err = boot_req(&img, &entry("Windows")).err().unwrap();
    assert_eq!(
        err,
        "--entry=Windows names no entry of /boot/grub/grub.cfg (entries: 0 'Old kernel', 1 'New kernel', 2>0 'Recovery')"
    );
    // The Xen entry (3) takes a number but is not bootable.
    let err = boot_req(&img, &entry("3")).err().unwrap();
    assert!(err.starts_with("--entry=3 names no entry"), "{err}");
}

#[test]
fn grubenv_saved_entry_picks_the_default() {
    let t = grub_tree();
    let cfg = GRUB_CFG.replace("set default=\"1\"", "set default=\"${saved_entry}\"");
    t.file("boot/grub/grub.cfg", cfg.as_bytes());
    let mut env = b"# GRUB Environment Block\nsaved_entry=Advanced options>Recovery\n".to_vec();
    env.resize(1024, b'#');
    t.file("boot/grub/grubenv", &env);
    let imgs = Images::new();
    let img = imgs.ext("ext4", &t, 16);
    let b = boot(&img).unwrap();
    assert_eq!(b.report.title.as_deref(), Some("Recovery"));
    assert_eq!(b.report.position.as_deref(), Some("2>0"));
    assert_eq!(b.report.args.as_deref(), Some("root=/dev/xvda1 single"));
    assert!(b.ramdisk.is_empty());
    assert_eq!(b.report.ramdisk_bytes, None);
}

#[test]
fn config_args_are_appended_and_kernel_bypasses_the_menu() {
    let imgs = Images::new();
    let img = imgs.ext("ext4", &grub_tree(), 16);
    // pygrub: the entry's command line, then --args (libxl passes the config's extra there).
    let (req, _) =
        BootRequest::from_config(None, None, Some("console=hvc0"), &["--entry=0".into()]).unwrap();
    let b = boot_req(&img, &req).unwrap();
    assert_eq!(
        b.report.args.as_deref(),
        Some("root=/dev/xvda1 ro quiet console=hvc0")
    );
    // --kernel: that file, that ramdisk, exactly --args; no menu.
    let (req, _) = BootRequest::from_config(
        Some("/boot/vmlinuz-old"),
        None,
        Some("root=/dev/xvda1"),
        &[
            "--ramdisk=/boot/initrd-new".into(),
            "--args=probe=hello".into(),
        ],
    )
    .unwrap();
    let b = boot_req(&img, &req).unwrap();
    assert_eq!(b.report.title, None);
    assert_eq!(b.report.config, None);
    assert_eq!(b.report.args.as_deref(), Some("probe=hello"));
    assert_eq!(b.kernel, blob(1, 100_000));
    assert_eq!(b.ramdisk, blob(4, 70_000));
    let (req, _) = BootRequest::from_config(Some("/boot/nope"), None, None, &[]).unwrap();
    let err = boot_req(&img, &req).err().unwrap();
    assert_eq!(
        err,
        "no boot configuration found (the whole disk (ext2/3/4): no file /boot/nope)"
    );
}

#[test]
fn ext2_and_ext3_with_grub_legacy_menu_lst() {
    let menu = "default=1\ntimeout 5\n\ntitle Debian old\n  root (hd0,0)\n  kernel /vmlinuz-1 root=/dev/xvda1 ro\n\
                \ntitle Debian new\n  root (hd0,0)\n  kernel (hd0,0)/vmlinuz-2 root=/dev/xvda1 probe=hello\n  initrd /initrd-2\n\
                \ntitle Xen\n  kernel /xen.gz\n  module /vmlinuz-2\n";
    for kind in ["ext2", "ext3"] {
        let t = Tree::new();
        t.file("vmlinuz-1", &blob(5, 1000))
            .file("vmlinuz-2", &blob(6, 2000))
            .file("initrd-2", &blob(7, 3000))
            .file("grub/menu.lst", menu.as_bytes());
        let imgs = Images::new();
        let img = imgs.ext(kind, &t, 8);
        let b = boot(&img).unwrap();
        assert_eq!(b.report.config.as_deref(), Some("/grub/menu.lst"), "{kind}");
        assert_eq!(b.report.title.as_deref(), Some("Debian new"));
        assert_eq!(
            b.report.args.as_deref(),
            Some("root=/dev/xvda1 probe=hello")
        );
        assert_eq!((b.kernel, b.ramdisk), (blob(6, 2000), blob(7, 3000)));
        assert!(b
            .report
            .warnings
            .iter()
            .any(|w| w.contains("'Xen' uses 'module'")));
        let b = boot_req(&img, &entry("Debian old")).unwrap();
        assert_eq!(b.kernel, blob(5, 1000));
    }
}

#[test]
fn fat_with_extlinux_conf() {
    let t = Tree::new();
    t.file("boot/vmlinuz", &blob(8, 40_000))
        .file("boot/initrd.img", &blob(9, 10_000))
        .file(
            "boot/extlinux/extlinux.conf",
            b"UI menu.c32\nDEFAULT linux\nPROMPT 0\n\nLABEL hdt\n  COM32 hdt.c32\n\nLABEL linux\n  MENU LABEL Linux from FAT\n  KERNEL ../vmlinuz\n  APPEND initrd=../initrd.img root=/dev/xvda1 probe=hello\n",
        );
    let imgs = Images::new();
    let img = imgs.fat(&t, 8);
    let b = boot(&img).unwrap();
    assert_eq!(
        b.report.config.as_deref(),
        Some("/boot/extlinux/extlinux.conf")
    );
    assert_eq!(b.report.title.as_deref(), Some("Linux from FAT"));
    assert_eq!(b.report.position.as_deref(), Some("1"));
    assert_eq!(
        b.report.args.as_deref(),
        Some("root=/dev/xvda1 probe=hello")
    );
    assert_eq!((b.kernel, b.ramdisk), (blob(8, 40_000), blob(9, 10_000)));
    assert!(
        b.report
            .warnings
            .iter()
            .any(|w| w.contains("label 'hdt' uses COM32")),
        "{:?}",
        b.report.warnings
    );
}

#[test]
fn iso9660_with_isolinux_cfg_and_rock_ridge_names() {
    let t = Tree::new();
    t.file("install.amd/vmlinuz", &blob(10, 123_457))
        .file("install.amd/initrd.gz", &blob(11, 4097))
        .file(
            "isolinux/isolinux.cfg",
            b"default install\nlabel install\n\tmenu label ^Install\n\tkernel /install.amd/vmlinuz\n\tappend vga=788 initrd=/install.amd/initrd.gz --- quiet\n",
        );
    let imgs = Images::new();
    let img = imgs.iso(&t);
    let b = boot(&img).unwrap();
    assert_eq!(b.report.config.as_deref(), Some("/isolinux/isolinux.cfg"));
    assert_eq!(b.report.title.as_deref(), Some("Install"));
    assert_eq!(b.report.args.as_deref(), Some("vga=788 --- quiet"));
    assert_eq!((b.kernel, b.ramdisk), (blob(10, 123_457), blob(11, 4097)));
}

#[test]
fn mbr_prefers_the_active_partition() {
    let imgs = Images::new();
    let other = Tree::new();
    other
        .file(
            "boot/grub/grub.cfg",
            b"menuentry 'Wrong' { linux /boot/vmlinuz-x }\n",
        )
        .file("boot/vmlinuz-x", b"x");
    let first = imgs.ext("ext3", &other, 4);
    assert_eq!(boot(&first).unwrap().report.title.as_deref(), Some("Wrong"));
    let second = imgs.ext("ext4", &grub_tree(), 16);
    let disk = imgs.partitioned("dos", &[Some(&first), Some(&second)], Some(2));
    let b = boot(&disk).unwrap();
    assert_eq!(b.report.volume.as_deref(), Some("MBR partition 2"));
    assert_eq!(b.report.title.as_deref(), Some("New kernel"));
    // Without an active flag, table order: the first partition with a config wins.
    let disk = imgs.partitioned("dos", &[Some(&first), Some(&second)], None);
    assert_eq!(boot(&disk).unwrap().report.title.as_deref(), Some("Wrong"));
}

#[test]
fn gpt_finds_the_partition_with_boot() {
    let imgs = Images::new();
    let empty = Tree::new();
    empty.file("EFI/readme.txt", b"no config here");
    let esp = imgs.fat(&empty, 4);
    let root = imgs.ext("ext4", &grub_tree(), 16);
    let disk = imgs.partitioned("gpt", &[Some(&esp), None, Some(&root)], None);
    let b = boot(&disk).unwrap();
    assert_eq!(b.report.volume.as_deref(), Some("GPT partition 3 'part3'"));
    assert_eq!(b.report.title.as_deref(), Some("New kernel"));
    assert_eq!(b.kernel, blob(3, 300_000));
}

#[test]
fn unsupported_filesystems_are_named() {
    let imgs = Images::new();
    for (name, magic_at, magic) in [
        ("XFS", 0u64, &b"XFSB"[..]),
        ("Btrfs", 0x10040, b"_BHRfS_M"),
        ("NTFS", 3, b"NTFS    "),
        ("LUKS (encrypted)", 0, b"LUKS\xba\xbe"),
    ] {
        let img = imgs.raw("other.img", &[(magic_at, magic)], 1 << 20);
        let err = boot(&img).err().unwrap();
        assert_eq!(
            err,
            format!("no boot configuration found (the whole disk: {name} filesystems are not supported (supported: ext2/3/4, FAT, ISO 9660))")
        );
    }
    // One XFS partition and one unrecognisable: both explained.
    let xfs = imgs.raw("xfs.img", &[(0, b"XFSB")], 1 << 20);
    let zero = imgs.raw("zero.img", &[], 1 << 20);
    let disk = imgs.partitioned("dos", &[Some(&xfs), Some(&zero)], None);
    assert_eq!(
        boot(&disk).err().unwrap(),
        "no boot configuration found (MBR partition 1: XFS filesystems are not supported (supported: ext2/3/4, FAT, ISO 9660); \
         MBR partition 2: no filesystem recognised (supported: ext2/3/4, FAT, ISO 9660))"
    );
}

#[test]
fn filesystem_without_config_says_where_it_looked() {
    let t = Tree::new();
    t.file("boot/vmlinuz", b"k");
    let imgs = Images::new();
    let img = imgs.ext("ext4", &t, 4);
    let err = boot(&img).err().unwrap();
    assert!(err.starts_with("no boot configuration found (the whole disk (ext2/3/4): no boot configuration (looked for /boot/grub/grub.cfg"), "{err}");
}

#[test]
fn fuzz_seed_images_all_boot() {
    // The disk_image fuzz corpus starts from valid images (fuzz/make-corpus.sh): each one boots.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/disk_image");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.file_name().unwrap() == "fatfs-cluster-underflow" {
            continue; // a regression input, not a seed (see tests/launch.rs)
        }
        let b = boot(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(b.kernel, b"KERNEL", "{}", path.display());
        assert_eq!(b.ramdisk, b"INITRD", "{}", path.display());
        n += 1;
    }
    assert_eq!(n, 6);
}

#[test]
fn iso9660_with_a_hostile_root_directory_is_a_clear_error() {
    let t = Tree::new();
    t.file("isolinux/isolinux.cfg", b"default a\nlabel a\n kernel /k\n")
        .file("k", b"k");
    let imgs = Images::new();
    let img = imgs.iso(&t);
    // The primary volume descriptor's root record (sector 16, offset 156): data length (both-endian, at
    // +10) set to 3 GiB, then the extent moved past the image.
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    use std::os::unix::fs::FileExt;
    let root = 16 * 2048 + 156;
    f.write_all_at(&0xc000_0000u32.to_le_bytes(), root + 10)
        .unwrap();
    f.write_all_at(&0xc000_0000u32.to_be_bytes(), root + 14)
        .unwrap();
    let err = boot(&img).err().unwrap();
    assert!(
        err.starts_with(
            "no boot configuration found (the whole disk: ISO 9660 filesystem: extent at block"
        ),
        "{err}"
    );
    // Within a (padded) image but larger than a directory may be.
    f.set_len(20 << 20).unwrap();
    f.write_all_at(&0x0100_0000u32.to_le_bytes(), root + 10)
        .unwrap();
    let err = boot(&img).err().unwrap();
    assert!(
        err.contains("directory of 16777216 bytes is larger than the 4194304-byte limit"),
        "{err}"
    );
}
