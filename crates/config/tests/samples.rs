//! Every sample under tests/data/ (and the HOWTO examples under examples/) round-trips: parse, print,
//! parse again, compare — both at the language level (XlConfig) and the typed level (DomainConfig::to_xl).
//! The samples' expected values are checked too.

use std::path::{Path, PathBuf};

use domus_config::{Action, DevType, DiskFormat, DomainConfig, DomainType, PlainValue};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn samples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir())
        .expect("tests/data exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cfg"))
        .collect();
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    files.push(examples.join("howto-foo.cfg"));
    files.push(examples.join("howto-nbsd.cfg"));
    files.sort();
    assert!(files.len() >= 7, "samples missing: {files:?}");
    files
}

fn load(path: &Path) -> (String, String) {
    let text = std::fs::read_to_string(path).expect("sample readable");
    (path.display().to_string(), text)
}

#[test]
fn every_sample_round_trips() {
    for path in samples() {
        let (name, text) = load(&path);
        // Language level: settings print back to text with the same settings.
        let parsed = domus_config::parse(&name, &text).unwrap_or_else(|e| panic!("{e}"));
        let printed = parsed.to_string();
        let reparsed =
            domus_config::parse(&name, &printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
        assert_eq!(
            reparsed, parsed,
            "{name}: settings changed through print:\n{printed}"
        );
        // Typed level: the resolved config prints back to a config that resolves the same.
        let cfg = DomainConfig::from_xl(&name, &text, &[]).unwrap_or_else(|e| panic!("{e}"));
        let xl = cfg.to_xl();
        let mut again =
            DomainConfig::from_xl(&name, &xl, &[]).unwrap_or_else(|e| panic!("{e}\n{xl}"));
        let mut want = cfg.clone();
        want.warnings.clear();
        again.warnings.clear();
        assert_eq!(again, want, "{name}: config changed through to_xl:\n{xl}");
        // And the JSON form deserialises to the same value.
        let json = serde_json::to_string(&cfg).expect("serialises");
        let back: DomainConfig = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, cfg, "{name}: JSON round trip");
    }
}

fn sample(name: &str) -> DomainConfig {
    let (source, text) = load(&data_dir().join(name));
    DomainConfig::from_xl(&source, &text, &[]).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn linux_pvh_values() {
    let cfg = sample("linux-pvh.cfg");
    assert_eq!(cfg.name, "web");
    assert_eq!(cfg.uuid, "6f1c2e0a-93c5-4b6e-9f33-2d6f0b1e4a57");
    assert_eq!(cfg.domain_type, DomainType::Pvh);
    assert_eq!(cfg.ramdisk.as_deref(), Some("/boot/initrd.img-6.1"));
    assert_eq!(
        cfg.cmdline.as_deref(),
        Some("root=/dev/xvda1 console=hvc0 quiet")
    );
    assert_eq!((cfg.memory_mib, cfg.maxmem_mib), (1024, 2048));
    assert_eq!((cfg.vcpus, cfg.maxvcpus), (2, 4));
    assert_eq!(
        cfg.cpus,
        Some(domus_config::CpusConfig::All("all,^0".into()))
    );
    assert_eq!(cfg.on_crash, Action::Preserve);
    assert_eq!(cfg.on_watchdog, Action::CoredumpRestart);
    let targets: Vec<_> = cfg.disks.iter().map(|d| d.target.as_deref()).collect();
    assert_eq!(
        targets,
        [
            Some("images/web-root.img"),
            Some("/dev/vg0/web-data"),
            Some("/srv/iso/debian.iso")
        ],
        "relative paths stay as written"
    );
    let devnums: Vec<_> = cfg.disks.iter().map(|d| d.devnum).collect();
    assert_eq!(devnums, [51712, 51728, 51744]);
    assert_eq!(cfg.disks[2].devtype, DevType::Cdrom);
    assert_eq!(cfg.vifs[0].mtu, Some(9000));
    assert_eq!(cfg.vifs[0].ip.as_deref(), Some("192.0.2.10"));
    let rate = cfg.vifs[1].rate.expect("rate");
    assert_eq!(
        (rate.bytes_per_second, rate.interval_us),
        (1_250_000, 20_000)
    );
    assert_eq!(cfg.vifs[1].devid, 1);
    assert_eq!(cfg.vifs[1].vifname.as_deref(), Some("web-back"));
    assert_eq!(cfg.serial, ["pty"]);
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
}

#[test]
fn hvm_everything_values() {
    let cfg = sample("hvm-everything.cfg");
    assert_eq!(cfg.name, "win");
    assert_eq!(cfg.domain_type, DomainType::Hvm);
    assert_eq!(cfg.memory_mib, 4096);
    assert_eq!(cfg.vcpus, 4);
    assert_eq!(cfg.cmdline.as_deref(), Some("ignored by hvm"));
    assert_eq!(cfg.bootloader.as_deref(), Some("pygrub"));
    assert_eq!(
        cfg.bootloader_args,
        ["--kernel=/vmlinuz", "--ramdisk=/initrd"]
    );
    assert_eq!(cfg.disks.len(), 2);
    assert_eq!(cfg.disks[0].format, DiskFormat::Qcow2);
    assert_eq!(cfg.disks[0].devnum, 0x300);
    assert_eq!(cfg.disks[1].format, DiskFormat::Empty);
    assert_eq!(cfg.disks[1].target, None);
    assert_eq!(cfg.disks[1].devnum, 22 << 8);
    assert_eq!(cfg.vifs.len(), 2);
    assert_eq!(cfg.vifs[0].mac.to_string(), "02:00:00:00:00:01");
    assert_eq!(cfg.vifs[1].devid, 1);
    assert_eq!(cfg.pci.len(), 2);
    assert_eq!((cfg.pci[0].bus, cfg.pci[0].vslot), (3, Some(4)));
    assert_eq!((cfg.pci[1].bus, cfg.pci[1].func), (4, 1));
    assert_eq!(cfg.serial, ["pty", "file:/tmp/win-serial.log"]);
    assert_eq!(cfg.on_crash, Action::RenameRestart);
    assert_eq!(
        cfg.other_keys["vnclisten"],
        PlainValue::Str("0.0.0.0".into())
    );
    assert_eq!(
        cfg.other_keys["my_custom_key"],
        PlainValue::List(vec![
            PlainValue::Num(1),
            PlainValue::Str("two".into()),
            PlainValue::List(vec![PlainValue::Num(3)])
        ])
    );
    let w: Vec<&str> = cfg.warnings.iter().map(String::as_str).collect();
    let name = data_dir().join("hvm-everything.cfg").display().to_string();
    assert_eq!(
        w,
        [
            format!("{name}:2: `builder` is deprecated: write type = \"hvm\" instead"),
            format!("{name}:17: key `sdl` is an xl setting Domus does not implement: ignored"),
            format!("{name}:18: key `vnc` is an xl setting Domus does not implement: ignored"),
            format!(
                "{name}:19: key `vnclisten` is an xl setting Domus does not implement: ignored"
            ),
            format!(
                "{name}:20: key `usbdevice` is an xl setting Domus does not implement: ignored"
            ),
            format!("{name}:21: unknown key `my_custom_key`: kept but not used"),
        ]
    );
}

#[test]
fn minimal_escapes_and_legacy_values() {
    let cfg = sample("minimal.cfg");
    assert_eq!(cfg.name, "minimal.cfg");
    assert_eq!(
        (cfg.memory_mib, cfg.vcpus, cfg.domain_type),
        (32, 1, DomainType::Pv)
    );
    assert!(cfg.disks.is_empty() && cfg.vifs.is_empty() && cfg.pci.is_empty());

    let cfg = sample("escapes.cfg");
    assert_eq!(
        cfg.kernel.as_deref(),
        Some("with\tab\x41\x41 and 'quotes' \"double\" back\\slash")
    );
    assert_eq!(cfg.cmdline.as_deref(), Some("a b c"));

    let cfg = sample("legacy-xm.cfg");
    assert_eq!(cfg.domain_type, DomainType::Pv);
    assert_eq!(cfg.cmdline.as_deref(), Some("root=xbd0"));
    assert_eq!(cfg.bootloader_args, ["-q", "-v"]);
    let devnums: Vec<_> = cfg.disks.iter().map(|d| d.devnum).collect();
    assert_eq!(devnums, [1, 2, 51744]);
    assert_eq!(cfg.disks[2].target.as_deref(), Some("/xen/old-swap.img"));
    assert_eq!(cfg.vifs[1].bridge.as_deref(), Some("bridge1"));
    assert_eq!(cfg.warnings.len(), 3, "{:?}", cfg.warnings);
}
