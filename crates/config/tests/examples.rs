//! The NetBSD HOWTO's two example configs (examples/howto-foo.cfg, examples/howto-nbsd.cfg) and Xen's own
//! /etc/xen/xlexample.* (from Debian's xen-utils-common, fetched into $DOMUS_TESTDEPS by
//! scripts/fetch-test-deps.sh) parse to the expected values.

use std::path::PathBuf;

use domus_config::{Access, Action, DevType, DiskFormat, DomainConfig, DomainType};

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &PathBuf) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn testdeps() -> PathBuf {
    std::env::var_os("DOMUS_TESTDEPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".cache/testdeps"))
}

fn xen_example(name: &str) -> String {
    let path = testdeps().join("xen/etc/xen").join(name);
    assert!(
        path.is_file(),
        "missing test dependency {}: run scripts/fetch-test-deps.sh (or set DOMUS_TESTDEPS)",
        path.display()
    );
    read(&path)
}

fn assert_xl_defaults(cfg: &DomainConfig) {
    assert_eq!(cfg.on_poweroff, Action::Destroy);
    assert_eq!(cfg.on_reboot, Action::Restart);
    assert_eq!(cfg.on_crash, Action::Destroy);
    assert_eq!(cfg.on_watchdog, Action::Destroy);
    assert_eq!(cfg.uuid.len(), 36, "a uuid is generated");
}

#[test]
fn howto_foo_file_server() {
    let text = read(&workspace_root().join("examples/howto-foo.cfg"));
    // The HOWTO names the file /usr/pkg/etc/xen/foo: the domain takes the file's name.
    let cfg = DomainConfig::from_xl("/usr/pkg/etc/xen/foo", &text, &[]).unwrap();
    assert_eq!(cfg.name, "foo");
    assert_eq!(cfg.domain_type, DomainType::Pv);
    assert_eq!(
        cfg.kernel.as_deref(),
        Some("/netbsd-XEN3PAE_DOMU-i386-foo.gz")
    );
    assert_eq!(cfg.memory_mib, 1024);
    assert_eq!(cfg.maxmem_mib, 1024);
    assert_eq!((cfg.vcpus, cfg.maxvcpus), (1, 1));
    assert_eq!(cfg.cmdline, None);
    assert_eq!(cfg.vifs.len(), 1);
    assert_eq!(cfg.vifs[0].devid, 0);
    assert_eq!(cfg.vifs[0].mac.to_string(), "aa:00:00:d1:00:09");
    assert_eq!(cfg.vifs[0].bridge.as_deref(), Some("bridge0"));
    assert_eq!(cfg.disks.len(), 2);
    for (i, disk) in cfg.disks.iter().enumerate() {
        assert_eq!(
            disk.target.as_deref(),
            Some(format!("/n0/xen/foo-wd{i}").as_str())
        );
        assert_eq!(disk.format, DiskFormat::Raw);
        assert_eq!(disk.vdev, format!("0x{i}"));
        assert_eq!(disk.devnum, u32::try_from(i).unwrap());
        assert_eq!(disk.access, Access::Rw);
        assert_eq!(disk.devtype, DevType::Disk);
        assert_eq!(disk.script, None);
    }
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    assert_xl_defaults(&cfg);
}

#[test]
fn howto_nbsd_commented_example() {
    let text = read(&workspace_root().join("examples/howto-nbsd.cfg"));
    let cfg = DomainConfig::from_xl("/usr/pkg/etc/xen/nbsd", &text, &[]).unwrap();
    assert_eq!(cfg.name, "nbsd");
    assert_eq!(cfg.kernel.as_deref(), Some("/home/bouyer/netbsd-XEN3_DOMU"));
    assert_eq!(cfg.memory_mib, 128);
    assert_eq!(cfg.vcpus, 1);
    assert_eq!(cfg.cmdline.as_deref(), Some("root=xbd0"));
    assert_eq!(cfg.vifs.len(), 1);
    assert_eq!(cfg.vifs[0].mac.to_string(), "aa:00:00:50:02:f0");
    assert_eq!(cfg.vifs[0].bridge.as_deref(), Some("bridge0"));
    assert_eq!(cfg.disks.len(), 1);
    let disk = &cfg.disks[0];
    assert_eq!(disk.target.as_deref(), Some("/dev/wd0e"));
    assert_eq!((disk.vdev.as_str(), disk.devnum), ("0x1", 1));
    assert_eq!(disk.access, Access::Rw);
    // `nics` is xm's: kept, with a warning naming the file and line.
    assert_eq!(
        cfg.warnings,
        ["/usr/pkg/etc/xen/nbsd:29: `nics` is an xm setting that xl ignores: interfaces come from `vif`"]
    );
    assert_xl_defaults(&cfg);

    // The HOWTO's install variants: the install kernel, the CD-ROM, and the commented disk forms.
    let overrides = [
        "kernel = \"/home/bouyer/netbsd-INSTALL_XEN3_DOMU\"".to_string(),
        "disk = [ 'phy:/dev/wd0e,0x1,w', 'phy:/dev/cd0a,0x2,r' ]".to_string(),
    ];
    let cfg = DomainConfig::from_xl("nbsd", &text, &overrides).unwrap();
    assert_eq!(
        cfg.kernel.as_deref(),
        Some("/home/bouyer/netbsd-INSTALL_XEN3_DOMU")
    );
    assert_eq!(cfg.disks.len(), 2);
    assert_eq!(cfg.disks[1].target.as_deref(), Some("/dev/cd0a"));
    assert_eq!((cfg.disks[1].devnum, cfg.disks[1].access), (2, Access::Ro));
    for (disk, devnum) in [
        ("'file:/var/xen/nbsd-disk,0x01,w'", 1),
        ("'file:/var/xen/nbsd-disk,0x301,w'", 0x301),
    ] {
        let cfg = DomainConfig::from_xl("nbsd", &text, &[format!("disk = [ {disk} ]")]).unwrap();
        assert_eq!(cfg.disks[0].target.as_deref(), Some("/var/xen/nbsd-disk"));
        assert_eq!(cfg.disks[0].devnum, devnum);
    }
    // Uncommenting the xm-era line is an error that says what to write instead.
    let err = DomainConfig::from_xl("nbsd", &text, &["autorestart = True".into()]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "command line:1:15: autorestart: `autorestart = True` is an xm setting that xl does not support: remove it; \
         xl restarts a domain that reboots by default (on_reboot = \"restart\"), and on_poweroff = \"restart\" / \
         on_crash = \"restart\" restart it in the other cases"
    );
}

#[test]
fn xen_xlexample_pvlinux() {
    let cfg =
        DomainConfig::from_xl("xlexample.pvlinux", &xen_example("xlexample.pvlinux"), &[]).unwrap();
    assert_eq!(cfg.name, "example.pvlinux");
    assert_eq!(cfg.domain_type, DomainType::Pv);
    assert_eq!(cfg.kernel.as_deref(), Some("/boot/vmlinuz"));
    assert_eq!(cfg.cmdline.as_deref(), Some("root=/dev/xvda1"));
    assert_eq!((cfg.memory_mib, cfg.maxmem_mib), (128, 128));
    assert_eq!((cfg.vcpus, cfg.maxvcpus), (2, 2));
    assert_eq!(cfg.vifs.len(), 1);
    assert_eq!(
        &cfg.vifs[0].mac.0[..3],
        &[0x00, 0x16, 0x3e],
        "generated under Xen's OUI"
    );
    assert_eq!(cfg.vifs[0].bridge, None);
    assert_eq!(cfg.disks.len(), 1);
    assert_eq!(cfg.disks[0].target.as_deref(), Some("/dev/vg/guest-volume"));
    assert_eq!(cfg.disks[0].format, DiskFormat::Raw);
    assert_eq!(
        (cfg.disks[0].vdev.as_str(), cfg.disks[0].devnum),
        ("xvda", 51712)
    );
    assert_eq!(cfg.disks[0].access, Access::Rw);
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    assert_xl_defaults(&cfg);
}

#[test]
fn xen_xlexample_pvhlinux() {
    let cfg = DomainConfig::from_xl(
        "xlexample.pvhlinux",
        &xen_example("xlexample.pvhlinux"),
        &[],
    )
    .unwrap();
    assert_eq!(cfg.name, "example.pvhlinux");
    assert_eq!(cfg.domain_type, DomainType::Pvh);
    assert_eq!(cfg.kernel.as_deref(), Some("/boot/vmlinuz"));
    assert_eq!(cfg.cmdline.as_deref(), Some("root=/dev/xvda1"));
    assert_eq!(cfg.memory_mib, 512);
    assert_eq!(cfg.vcpus, 4);
    assert_eq!(cfg.vifs.len(), 1);
    assert_eq!(
        cfg.disks[0].target.as_deref(),
        Some("/dev/zvol/tank/guest-volume")
    );
    assert_eq!(cfg.disks[0].devnum, 51712);
    assert_xl_defaults(&cfg);
}

#[test]
fn xen_xlexample_hvm() {
    let cfg = DomainConfig::from_xl("xlexample.hvm", &xen_example("xlexample.hvm"), &[]).unwrap();
    assert_eq!(cfg.name, "example.hvm");
    assert_eq!(cfg.domain_type, DomainType::Hvm);
    assert_eq!(cfg.kernel, None);
    assert_eq!(cfg.memory_mib, 128);
    assert_eq!(cfg.vcpus, 2);
    assert_eq!(cfg.vifs.len(), 1);
    assert_eq!(cfg.disks[0].target.as_deref(), Some("/dev/vg/guest-volume"));
    assert_eq!(
        (cfg.disks[0].vdev.as_str(), cfg.disks[0].devnum),
        ("xvda", 51712)
    );
    // `sdl = 1` is an xl key Domus does not implement: kept and warned about, with its line.
    assert_eq!(cfg.other_keys["sdl"], domus_config::PlainValue::Num(1));
    assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
    assert!(
        cfg.warnings[0].starts_with("xlexample.hvm:")
            && cfg.warnings[0]
                .ends_with(": key `sdl` is an xl setting Domus does not implement: ignored"),
        "{}",
        cfg.warnings[0]
    );
    assert_xl_defaults(&cfg);
}
