//! Table-driven tests of disk specs: every rule of xl-disk-configuration(5).

use super::*;

/// (spec, target, format, vdev, devnum, access, devtype, script)
type Row = (
    &'static str,
    Option<&'static str>,
    DiskFormat,
    &'static str,
    u32,
    Access,
    DevType,
    Option<&'static str>,
);

const GOOD: &[Row] = &[
    // The man page's first equivalence class.
    (
        "/dev/vg/guest-volume,,hda",
        Some("/dev/vg/guest-volume"),
        DiskFormat::Raw,
        "hda",
        0x300,
        Access::Rw,
        DevType::Disk,
        None,
    ),
    (
        "/dev/vg/guest-volume,raw,hda,rw",
        Some("/dev/vg/guest-volume"),
        DiskFormat::Raw,
        "hda",
        0x300,
        Access::Rw,
        DevType::Disk,
        None,
    ),
    (
        "format=raw, vdev=hda, access=rw, target=/dev/vg/guest-volume",
        Some("/dev/vg/guest-volume"),
        DiskFormat::Raw,
        "hda",
        0x300,
        Access::Rw,
        DevType::Disk,
        None,
    ),
    (
        "raw:/dev/vg/guest-volume,hda,w",
        Some("/dev/vg/guest-volume"),
        DiskFormat::Raw,
        "hda",
        0x300,
        Access::Rw,
        DevType::Disk,
        None,
    ),
    // The second (cdroms).
    (
        "/root/image.iso,,hdc,cdrom",
        Some("/root/image.iso"),
        DiskFormat::Raw,
        "hdc",
        22 << 8,
        Access::Ro,
        DevType::Cdrom,
        None,
    ),
    (
        "/root/image.iso,,hdc,,cdrom",
        Some("/root/image.iso"),
        DiskFormat::Raw,
        "hdc",
        22 << 8,
        Access::Ro,
        DevType::Cdrom,
        None,
    ),
    (
        "/root/image.iso,raw,hdc,devtype=cdrom",
        Some("/root/image.iso"),
        DiskFormat::Raw,
        "hdc",
        22 << 8,
        Access::Ro,
        DevType::Cdrom,
        None,
    ),
    (
        "format=raw, vdev=hdc, access=ro, devtype=cdrom, target=/root/image.iso",
        Some("/root/image.iso"),
        DiskFormat::Raw,
        "hdc",
        22 << 8,
        Access::Ro,
        DevType::Cdrom,
        None,
    ),
    (
        "raw:/root/image.iso,hdc:cdrom,ro",
        Some("/root/image.iso"),
        DiskFormat::Raw,
        "hdc",
        22 << 8,
        Access::Ro,
        DevType::Cdrom,
        None,
    ),
    // xend's empty cdrom.
    (
        ",hdc:cdrom,r",
        None,
        DiskFormat::Empty,
        "hdc",
        22 << 8,
        Access::Ro,
        DevType::Cdrom,
        None,
    ),
    (
        "vdev=hdc, cdrom",
        None,
        DiskFormat::Empty,
        "hdc",
        22 << 8,
        Access::Ro,
        DevType::Cdrom,
        None,
    ),
    // Positional with every format.
    (
        "/img,qcow2,xvda,rw",
        Some("/img"),
        DiskFormat::Qcow2,
        "xvda",
        51712,
        Access::Rw,
        DevType::Disk,
        None,
    ),
    (
        "/img,qcow,xvdb",
        Some("/img"),
        DiskFormat::Qcow,
        "xvdb",
        51728,
        Access::Rw,
        DevType::Disk,
        None,
    ),
    (
        "/img,vhd,xvdc,r",
        Some("/img"),
        DiskFormat::Vhd,
        "xvdc",
        51744,
        Access::Ro,
        DevType::Disk,
        None,
    ),
    (
        "/img,qed,xvdd,ro",
        Some("/img"),
        DiskFormat::Qed,
        "xvdd",
        51760,
        Access::Ro,
        DevType::Disk,
        None,
    ),
    (
        "/img,raw,xvda1,w",
        Some("/img"),
        DiskFormat::Raw,
        "xvda1",
        51713,
        Access::Rw,
        DevType::Disk,
        None,
    ),
    // Keyed before positional: positional fill the unspecified slots in order.
    (
        "vdev=xvda, /img, qcow2, ro",
        Some("/img"),
        DiskFormat::Qcow2,
        "xvda",
        51712,
        Access::Ro,
        DevType::Disk,
        None,
    ),
    (
        "access=ro, /img, , sda",
        Some("/img"),
        DiskFormat::Raw,
        "sda",
        2048,
        Access::Ro,
        DevType::Disk,
        None,
    ),
    (
        "format=vhd,/img,xvdb,r",
        Some("/img"),
        DiskFormat::Vhd,
        "xvdb",
        51728,
        Access::Ro,
        DevType::Disk,
        None,
    ),
    (
        "/img, vdev=d1p2, format=raw",
        Some("/img"),
        DiskFormat::Raw,
        "d1p2",
        202 << 8 | 1 << 4 | 2,
        Access::Rw,
        DevType::Disk,
        None,
    ),
    // target= swallows the rest, commas included.
    (
        "vdev=xvda,target=/a,b c,d",
        Some("/a,b c,d"),
        DiskFormat::Raw,
        "xvda",
        51712,
        Access::Rw,
        DevType::Disk,
        None,
    ),
    // script= and backendtype=.
    (
        "vdev=xvda, script=block-iscsi, target=iqn.2001-05.com.example:disk",
        Some("iqn.2001-05.com.example:disk"),
        DiskFormat::Raw,
        "xvda",
        51712,
        Access::Rw,
        DevType::Disk,
        Some("block-iscsi"),
    ),
    (
        "/dev/sdb,raw,xvda,rw,backendtype=phy",
        Some("/dev/sdb"),
        DiskFormat::Raw,
        "xvda",
        51712,
        Access::Rw,
        DevType::Disk,
        None,
    ),
    // Legacy prefixes: the HOWTO's forms, numbers as vdevs.
    (
        "phy:/dev/wd0e,0x1,w",
        Some("/dev/wd0e"),
        DiskFormat::Raw,
        "0x1",
        1,
        Access::Rw,
        DevType::Disk,
        None,
    ),
    (
        "file:/n0/xen/foo-wd0,0x0,w",
        Some("/n0/xen/foo-wd0"),
        DiskFormat::Raw,
        "0x0",
        0,
        Access::Rw,
        DevType::Disk,
        None,
    ),
    (
        "file:/var/xen/nbsd-disk,0x01,w",
        Some("/var/xen/nbsd-disk"),
        DiskFormat::Raw,
        "0x01",
        1,
        Access::Rw,
        DevType::Disk,
        None,
    ),
    (
        "file:/var/xen/nbsd-disk,0x301,w",
        Some("/var/xen/nbsd-disk"),
        DiskFormat::Raw,
        "0x301",
        0x301,
        Access::Rw,
        DevType::Disk,
        None,
    ),
    (
        "phy:/dev/cd0a,0x2,r",
        Some("/dev/cd0a"),
        DiskFormat::Raw,
        "0x2",
        2,
        Access::Ro,
        DevType::Disk,
        None,
    ),
    (
        "tap:aio:/img.raw,xvda,w",
        Some("/img.raw"),
        DiskFormat::Raw,
        "xvda",
        51712,
        Access::Rw,
        DevType::Disk,
        None,
    ),
    (
        "tap:qcow2:/img.qcow2,xvda,w",
        Some("/img.qcow2"),
        DiskFormat::Qcow2,
        "xvda",
        51712,
        Access::Rw,
        DevType::Disk,
        None,
    ),
    (
        "tap2:vhd:/img.vhd,hda,r",
        Some("/img.vhd"),
        DiskFormat::Vhd,
        "hda",
        0x300,
        Access::Ro,
        DevType::Disk,
        None,
    ),
    (
        "qcow:/old.img,xvda,w",
        Some("/old.img"),
        DiskFormat::Qcow,
        "xvda",
        51712,
        Access::Rw,
        DevType::Disk,
        None,
    ),
    (
        "tapdisk:ioemu:/x,xvda,w",
        Some("/x"),
        DiskFormat::Raw,
        "xvda",
        51712,
        Access::Rw,
        DevType::Disk,
        None,
    ),
    (
        "nbd:server:10809,xvda,w",
        Some("server:10809"),
        DiskFormat::Raw,
        "xvda",
        51712,
        Access::Rw,
        DevType::Disk,
        Some("block-nbd"),
    ),
    (
        "drbd:res0,xvda,w",
        Some("res0"),
        DiskFormat::Raw,
        "xvda",
        51712,
        Access::Rw,
        DevType::Disk,
        Some("block-drbd"),
    ),
    (
        "iscsi:iqn.x,xvda,w",
        Some("iqn.x"),
        DiskFormat::Raw,
        "xvda",
        51712,
        Access::Rw,
        DevType::Disk,
        Some("block-iscsi"),
    ),
    (
        "enbd:x,xvda,w",
        Some("x"),
        DiskFormat::Raw,
        "xvda",
        51712,
        Access::Rw,
        DevType::Disk,
        Some("block-enbd"),
    ),
    // Unknown prefixes are part of the target; relative paths stay relative.
    (
        "disks/foo.img,raw,xvda,rw",
        Some("disks/foo.img"),
        DiskFormat::Raw,
        "xvda",
        51712,
        Access::Rw,
        DevType::Disk,
        None,
    ),
    (
        "weird:name,raw,xvda",
        Some("weird:name"),
        DiskFormat::Raw,
        "xvda",
        51712,
        Access::Rw,
        DevType::Disk,
        None,
    ),
    // vdev:disk and explicit devtype=disk.
    (
        "phy:/dev/x,xvdb:disk,w",
        Some("/dev/x"),
        DiskFormat::Raw,
        "xvdb",
        51728,
        Access::Rw,
        DevType::Disk,
        None,
    ),
];

#[test]
fn good_specs_resolve_and_round_trip() {
    for row in GOOD {
        let (text, target, format, vdev, devnum, access, devtype, script) = *row;
        let spec: DiskSpec = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        let disk = DiskConfig::try_from(&spec).unwrap();
        assert_eq!(disk.target.as_deref(), target, "target of {text}");
        assert_eq!(disk.format, format, "format of {text}");
        assert_eq!(disk.vdev, vdev, "vdev of {text}");
        assert_eq!(disk.devnum, devnum, "devnum of {text}");
        assert_eq!(disk.access, access, "access of {text}");
        assert_eq!(disk.devtype, devtype, "devtype of {text}");
        assert_eq!(disk.script.as_deref(), script, "script of {text}");
        // Display round-trips the spec, and the explicit form of the resolved disk resolves the same.
        let printed = spec.to_string();
        assert_eq!(
            printed.parse::<DiskSpec>().unwrap(),
            spec,
            "{text} -> {printed}"
        );
        let explicit = DiskSpec::from(&disk);
        let reparsed: DiskSpec = explicit.to_string().parse().unwrap();
        assert_eq!(DiskConfig::try_from(&reparsed).unwrap(), disk, "{text}");
    }
}

#[test]
fn flags_and_options() {
    let spec: DiskSpec = "/img,raw,xvda,rw,no-discard,direct-io-safe,backend=drv,colo,colo-host=h"
        .parse()
        .unwrap();
    assert_eq!(spec.discard, Some(false));
    assert!(spec.direct_io_safe);
    assert_eq!(spec.backend.as_deref(), Some("drv"));
    assert_eq!(spec.ignored, ["colo", "colo-host=h"]);
    let disk = DiskConfig::try_from(&spec).unwrap();
    assert!(!disk.discard);
    assert_eq!(
        spec.to_string(),
        "format=raw, vdev=xvda, access=rw, backend=drv, no-discard, direct-io-safe, colo, colo-host=h, target=/img"
    );
    let spec: DiskSpec = "/img,,xvda,,backendtype=qdisk,discard".parse().unwrap();
    assert_eq!(spec.backendtype, Some(BackendType::Qdisk));
    assert_eq!(spec.discard, Some(true));
    assert_eq!(spec.format, None);
    assert_eq!(spec.access, None);
}

#[test]
fn disk_config_json_fields() {
    let spec: DiskSpec = "file:/n0/xen/foo-wd0,0x0,w".parse().unwrap();
    let json = serde_json::to_value(DiskConfig::try_from(&spec).unwrap()).unwrap();
    assert_eq!(json["target"], "/n0/xen/foo-wd0");
    assert_eq!(json["format"], "raw");
    assert_eq!(json["vdev"], "0x0");
    assert_eq!(json["devnum"], 0);
    assert_eq!(json["access"], "rw");
    assert_eq!(json["devtype"], "disk");
    assert!(json["backendtype"].is_null());
    assert!(json["script"].is_null());
}

#[test]
fn bad_specs() {
    let cases: &[(&str, &str)] = &[
        ("/img,raw,xvda,rw,extra", "too many positional disk parameters at `extra`: expected at most target, format, vdev, access"),
        ("/img,raw,xvda,rw,foo=bar", "unknown disk parameter `foo=bar`"),
        ("/img,raw,xvda,rw,bogus-flag=1", "unknown disk parameter `bogus-flag=1`"),
        ("/img,raw", "disk spec `/img,raw` has no vdev: expected e.g."),
        ("/img", "disk spec `/img` has no vdev"),
        ("", "disk spec `` has no vdev"),
        ("/img,raw,wd0,rw", "unknown vdev `wd0`: expected xvdX, sdX, hdX"),
        ("/img,raw,xvda0", "unknown vdev `xvda0`: partition 0 is the whole disk"),
        ("/img,raw,hde", "unknown vdev `hde`: hd disks must be hda..hdd"),
        ("/img,vmdk,xvda", "unknown disk format `vmdk`: expected raw, qcow, qcow2, vhd or qed"),
        ("/img,raw,xvda,x", "invalid disk access `x`: expected ro, r, rw or w"),
        ("/img,raw,xvda,w!", "invalid disk access `w!`"),
        ("/img,raw,xvda,devtype=floppy", "invalid devtype `floppy`: expected cdrom or disk"),
        ("phy:/x,xvda:floppy,w", "invalid devtype `floppy`"),
        ("/img,raw,xvda,backendtype=nfs", "invalid backendtype `nfs`: expected phy, tap, qdisk or standalone"),
        ("/img,raw,xvda,vdev=xvdb", "disk parameter `vdev` is specified twice (at `vdev=xvdb`)"),
        ("format=raw,/img,qcow2,xvda", "invalid disk access `xvda`"),
        ("format=raw,raw:/img,xvda,w", "disk parameter `format` is specified twice"),
        ("/img,raw,xvda,cdrom,cdrom", "disk parameter `devtype` is specified twice"),
        ("/img,raw,xvda,discard,no-discard", "disk parameter `discard` is specified twice"),
        ("xvda, target=/img", "disk parameter `target` is specified twice (at `target=/img`)"),
        (",,xvda", "disk spec `,,xvda` has no target: expected a path (only a cdrom may be empty)"),
        ("phy:,0x1,w", "disk spec `phy:,0x1,w` has no target"),
        ("/img,raw,xvda,rw,script=a,script=b", "disk parameter `script` is specified twice"),
        ("nbd:a,xvda,w,script=x", "disk parameter `script` is specified twice"),
    ];
    for (text, want) in cases {
        let err = text.parse::<DiskSpec>().unwrap_err().to_string();
        assert!(err.starts_with(want), "{text}:\n got {err}\nwant {want}");
    }
}
