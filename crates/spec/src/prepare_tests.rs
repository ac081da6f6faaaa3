use super::*;

const HOST: HostLimits = HostLimits {
    memory_mib: 4096,
    kvm_max_vcpus: Some(8),
    nr_cpus: 2,
};

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pvh =
            crate::image::testing::elf_with_notes(&[(b"Xen", 18, &0x10_0000u32.to_le_bytes())]);
        std::fs::write(dir.path().join("pvh"), pvh).unwrap();
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        bz[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        std::fs::write(dir.path().join("bzimage"), bz).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a kernel\n").unwrap();
        std::fs::write(dir.path().join("disk.img"), vec![0u8; 4096]).unwrap();
        std::fs::write(dir.path().join("initrd"), b"initrd").unwrap();
        Dir { dir }
    }

    fn p(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn cfg(&self, text: &str) -> DomainConfig {
        DomainConfig::from_xl("t.cfg", text, &[]).unwrap()
    }

    fn errors(&self, text: &str) -> Vec<String> {
        match prepare(&self.cfg(text), &HOST) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }
}

#[test]
fn a_good_config_becomes_a_spec_with_open_files() {
    let d = Dir::new();
    let text = format!(
        "name = 'ok'\nkernel = '{}'\nramdisk = '{}'\nmemory = 64\nvcpus = 2\nextra = 'x=1'\n\
         disk = [ '{},raw,xvda,rw', ',raw,hdc:cdrom,r', '{},raw,xvdb,ro' ]\n",
        d.p("pvh"),
        d.p("initrd"),
        d.p("disk.img"),
        d.p("disk.img"),
    );
    let p = prepare(&d.cfg(&text), &HOST).unwrap();
    assert_eq!(p.spec.boot, BootProtocol::Pvh);
    assert_eq!((p.spec.memory_mib, p.spec.vcpus), (64, 2));
    assert_eq!(p.spec.cmdline, "x=1");
    assert_eq!(p.spec.disks.len(), 3);
    assert!(p.spec.disks[1].media.is_none() && p.spec.disks[1].cdrom);
    assert!(p.spec.disks[2].read_only && !p.spec.disks[2].discard);
    assert!(p.files.disks[1].is_none());
    assert!(
        p.spec.boot_line().contains("through PVH"),
        "{}",
        p.spec.boot_line()
    );
    assert!(p.spec.boot_line().contains("type = \"pv\""));
    let (spec, files) = p.hand_over();
    use std::os::fd::AsRawFd;
    let numbers: Vec<i32> = files.iter().map(AsRawFd::as_raw_fd).collect();
    assert_eq!(numbers.len(), 4, "kernel, ramdisk, xvda, xvdb");
    assert_eq!(spec.kernel.fd, Some(numbers[0]));
    assert_eq!(spec.ramdisk.as_ref().and_then(|r| r.fd), Some(numbers[1]));
    assert_eq!(
        spec.disks[0].media.as_ref().and_then(|r| r.fd),
        Some(numbers[2])
    );
    assert!(spec.disks[1].media.is_none());
    assert_eq!(
        spec.disks[2].media.as_ref().and_then(|r| r.fd),
        Some(numbers[3])
    );
    let json = serde_json::to_string(&spec).unwrap();
    assert_eq!(serde_json::from_str::<VmSpec>(&json).unwrap(), spec);
    assert!(serde_json::from_str::<VmSpec>(&json.replacen('{', "{\"bogus\":1,", 1)).is_err());
}

#[test]
fn linux_kernels_boot_through_the_linux_protocol() {
    let d = Dir::new();
    let p = prepare(&d.cfg(&format!("kernel = '{}'\n", d.p("bzimage"))), &HOST).unwrap();
    assert_eq!(p.spec.boot, BootProtocol::Linux64);
}

#[test]
fn every_refusal_is_located() {
    let d = Dir::new();
    let e = d.errors("name = 'x'\nkernel = '/nonexistent/vmlinuz'\n");
    assert_eq!(
        e,
        ["t.cfg:2:10: kernel: cannot read kernel /nonexistent/vmlinuz: No such file or directory (os error 2)"]
    );
    let e = d.errors(&format!("kernel = '{}'\n", d.p("notes.txt")));
    assert!(
        e[0].starts_with("t.cfg:1:10: kernel: ") && e[0].contains("is not a kernel"),
        "{e:?}"
    );
    let e = d.errors(&format!(
        "kernel = '{}'\nramdisk = '/nonexistent/initrd'\n",
        d.p("pvh")
    ));
    assert_eq!(e, ["t.cfg:2:11: ramdisk: cannot read ramdisk /nonexistent/initrd: No such file or directory (os error 2)"]);
    let e = d.errors(&format!(
        "kernel = '{}'\ndisk = [ '/nonexistent/d.img,raw,xvda,rw' ]\n",
        d.p("pvh")
    ));
    assert!(
        e[0].starts_with(
            "t.cfg:2:10: disk: disk `xvda`: cannot open disk image /nonexistent/d.img read-write"
        ),
        "{e:?}"
    );
    let e = d.errors(&format!(
        "kernel = '{}'\ndisk = [ '{}', 'format=qcow2,vdev=xvdb,target=/x.qcow2' ]\n",
        d.p("pvh"),
        format_args!("{},raw,xvda,rw", d.p("disk.img"))
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("t.cfg:2:") && e[0].contains("disk `xvdb`: format qcow2 is not supported"),
        "{e:?}"
    );
    let e = d.errors(&format!("type = 'hvm'\nkernel = '{}'\n", d.p("pvh")));
    assert!(
        e[0].starts_with("t.cfg:1:8: type: type = \"hvm\" needs firmware"),
        "{e:?}"
    );
    let e = d.errors(&format!("kernel = '{}'\nmemory = 8192\n", d.p("pvh")));
    assert_eq!(e, ["t.cfg:2:10: memory: memory = 8192 MiB is more than this host can give (4096 MiB of RAM + swap)"]);
    let e = d.errors(&format!("kernel = '{}'\nvcpus = 9\n", d.p("pvh")));
    assert_eq!(
        e,
        ["t.cfg:2:9: vcpus: vcpus = 9 is over KVM's limit of 8 vCPUs per VM on this host"]
    );
    let e = d.errors(&format!(
        "kernel = '{}'\nvcpus = 2\nmaxvcpus = 9\n",
        d.p("pvh")
    ));
    assert_eq!(
        e,
        ["t.cfg:3:12: maxvcpus: maxvcpus = 9 is over the limit of 8 vCPUs per VM on this host (KVM and the machine's 254 APIC ids)"]
    );
    let disks: Vec<String> = (0..15)
        .map(|i| format!("'{},raw,xvd{},ro'", d.p("disk.img"), char::from(b'a' + i)))
        .collect();
    let e = d.errors(&format!(
        "kernel = '{}'\ndisk = [ {} ]\n",
        d.p("pvh"),
        disks.join(", ")
    ));
    assert_eq!(e, ["t.cfg:2:8: disk: 15 disks, but the machine model has interrupt lines for at most 14 virtio devices (GSIs 10-23)"]);
}

#[test]
fn all_problems_are_reported_together() {
    let d = Dir::new();
    let e = d.errors(
        "type = 'hvm'\nkernel = '/nonexistent/k'\ndisk = [ '/nonexistent/d,raw,xvda,rw' ]\n",
    );
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].starts_with("t.cfg:1:8: type:"));
    assert!(e[1].starts_with("t.cfg:2:10: kernel:"));
    assert!(e[2].starts_with("t.cfg:3:10: disk:"));
}

#[test]
fn json_configs_are_checked_too() {
    // A config from JSON (the API) has no origins, and a duplicate vdev the parser would have caught.
    let d = Dir::new();
    let mut cfg = d.cfg(&format!(
        "kernel = '{}'\ndisk = [ '{},raw,xvda,ro' ]\n",
        d.p("pvh"),
        d.p("disk.img")
    ));
    cfg.disks.push(cfg.disks[0].clone());
    cfg.origins = domus_config::Origins::default();
    cfg.domain_type = DomainType::Hvm;
    let e = prepare(&cfg, &HOST).unwrap_err().to_string();
    assert_eq!(
        e,
        "type: type = \"hvm\" needs firmware this VMM does not have: boot the kernel directly with type = \"pvh\" (or \"pv\") and kernel = \"...\"\n\
         disk: vdev `xvda` (device number 51712) is already used by disk 0 (`xvda`): expected a unique vdev per disk"
    );
    cfg.domain_type = DomainType::Pvh;
    cfg.disks.pop();
    cfg.name = "123".into();
    cfg.on_crash = Action::CoredumpDestroy;
    cfg.bootloader = Some("/usr/bin/pvgrub".into());
    let e = prepare(&cfg, &HOST).unwrap_err().to_string();
    assert!(e.contains("invalid domain name \"123\""), "{e}");
    assert!(
        e.contains("on_crash=\"coredump-destroy\" is not supported"),
        "{e}"
    );
    assert!(
        e.contains("bootloader: bootloader \"/usr/bin/pvgrub\" is not supported: use bootloader = \"pygrub\""),
        "{e}"
    );
}

#[test]
fn relative_paths_resolve_against_the_given_directory() {
    let mut cfg = DomainConfig::from_xl(
        "t.cfg",
        "kernel = 'k'\nramdisk = '/abs/r'\ndisk = [ 'd.img,raw,xvda,rw' ]\n",
        &[],
    )
    .unwrap();
    resolve_paths(&mut cfg, Path::new("/a/b"));
    assert_eq!(cfg.kernel.as_deref(), Some("/a/b/k"));
    assert_eq!(cfg.ramdisk.as_deref(), Some("/abs/r"));
    assert_eq!(cfg.disks[0].target.as_deref(), Some("/a/b/d.img"));
}

#[test]
fn names_that_hide_or_disguise_are_refused() {
    for bad in [
        "",
        ".",
        "..",
        " ",
        "a b",
        "p1\u{a0}",
        "ab\u{202e}cd",
        "x\u{200b}",
        "\u{feff}y",
        "t\tab",
        "a/b",
        "42",
        "Domain-0",
        "n\u{2066}i",
    ] {
        assert!(!is_valid_name(bad), "{bad:?} accepted");
    }
    for good in ["p1", "web-1", "a.b", "...", "caf\u{e9}", "x_y"] {
        assert!(is_valid_name(good), "{good:?} refused");
    }
    assert!(!is_valid_name(&"a".repeat(65)));
}

#[test]
fn disks_are_locked_exclusive_when_writable_and_shared_when_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("d.img");
    std::fs::write(&img, vec![0u8; 4096]).unwrap();
    let rw = open_disk(&img, false, false, Some(false)).unwrap_or_else(|_| panic!("first writer"));
    let kind = |r: Result<File, DiskErr>| r.map(drop).map_err(|k| k("xvda".into()).to_string());
    let e = kind(open_disk(&img, false, false, Some(false))).unwrap_err();
    assert!(e.contains("is in use"), "{e}");
    assert!(
        kind(open_disk(&img, true, false, Some(true))).is_err(),
        "reader beside a writer"
    );
    drop(rw);
    let ro1 = open_disk(&img, true, false, Some(true)).unwrap_or_else(|_| panic!("reader 1"));
    let ro2 = open_disk(&img, true, false, Some(true)).unwrap_or_else(|_| panic!("reader 2"));
    assert!(
        kind(open_disk(&img, false, false, Some(false))).is_err(),
        "writer beside readers"
    );
    drop((ro1, ro2));
    // One domain using an image twice (rw disk and ro cdrom): one exclusive lock, taken once.
    let kdir = Dir::new();
    let one = format!(
        "name = 'two'\nkernel = '{}'\nmemory = 64\ndisk = [ '{p},raw,xvda,rw', '{p},raw,hdc:cdrom,r' ]\n",
        kdir.p("pvh"),
        p = img.display()
    );
    let held = prepare(&DomainConfig::from_xl("t.cfg", &one, &[]).unwrap(), &HOST).unwrap();
    assert!(
        kind(open_disk(&img, true, false, Some(true))).is_err(),
        "the image is not locked exclusively"
    );
    drop(held);
    assert!(kind(open_disk(&img, false, false, Some(false))).is_ok());
}

#[test]
fn placement_and_maxmem_admission() {
    let d = Dir::new();
    let text = format!(
        "kernel = '{}'\nvcpus = 2\nmaxvcpus = 3\ncpus = ['1', '0-1']\ncpus_soft = 'all,^0'\n\
         cpu_weight = 512\ncpu_cap = 25\n",
        d.p("pvh")
    );
    let p = prepare(&d.cfg(&text), &HOST).unwrap();
    assert_eq!((p.spec.vcpus, p.spec.maxvcpus), (2, 3));
    // vCPU 1's "0-1" is every host CPU (HOST has 2), and vCPU 2 is past the list: both unpinned.
    assert_eq!(p.spec.placement.hard, [vec![1], vec![], vec![]]);
    assert_eq!(p.spec.placement.soft, [vec![1], vec![1], vec![1]]);
    assert_eq!((p.spec.placement.weight, p.spec.placement.cap), (512, 25));
    let p = prepare(&d.cfg(&format!("kernel = '{}'\n", d.p("pvh"))), &HOST).unwrap();
    assert_eq!(p.spec.placement.weight, 256);
    assert!(p.spec.placement.hard.is_empty());
    let e = d.errors(&format!("kernel = '{}'\ncpus = '5-7'\n", d.p("pvh")));
    assert_eq!(
        e,
        ["cpus: `5-7` selects no CPU of this host for vCPU 0 (it has CPUs 0-1)"]
    );
    let e = d.errors(&format!(
        "kernel = '{}'\nmemory = 64\nmaxmem = 8192\n",
        d.p("pvh")
    ));
    assert_eq!(
        e,
        ["maxmem: maxmem = 8192 MiB is more than this host can give (4096 MiB of RAM + swap)"]
    );
}

#[test]
fn serial_other_than_pty_and_disk_scripts_are_refused_not_ignored() {
    let d = Dir::new();
    let base = format!("name = 's'\nkernel = '{}'\nmemory = 64\n", d.p("pvh"));
    let pty = format!("{base}serial = 'pty'\n");
    assert!(prepare(&d.cfg(&pty), &HOST).is_ok(), "pty is the console");
    let file = d.errors(&format!("{base}serial = 'file:/tmp/x'\n"));
    assert!(
        file.iter()
            .any(|e| e.contains("serial = \"file:/tmp/x\" is not supported")),
        "{file:?}"
    );
    let two = d.errors(&format!("{base}serial = ['pty', 'pty']\n"));
    assert!(
        two.iter().any(|e| e.contains("2 serial ports given")),
        "{two:?}"
    );
    let script = d.errors(&format!(
        "{base}disk = ['vdev=xvda, script=block-iscsi, target={}']\n",
        d.p("disk.img")
    ));
    assert!(
        script.iter().any(|e| e.contains("t.cfg:4:")
            && e.contains("disk `xvda`: script=block-iscsi is not supported")),
        "{script:?}"
    );
}

#[test]
fn the_entropy_device_is_on_by_default_and_takes_a_slot() {
    let d = Dir::new();
    let kernel = format!("kernel = '{}'\n", d.p("pvh"));
    let spec = |extra: &str| {
        prepare(&d.cfg(&format!("{kernel}{extra}")), &HOST)
            .unwrap()
            .spec
    };
    assert_eq!(spec("").rng, Some(RngSpec::default()));
    assert_eq!(spec("rng = 0\n").rng, None);
    assert_eq!(
        spec("rng_rate = 4096\n").rng,
        Some(RngSpec {
            rate_bytes_per_sec: 4096
        })
    );
    // Domus's own keys are not "unknown" to the xl.cfg parser.
    assert!(d.cfg("rng = 1\nrng_rate = 0\n").warnings.is_empty());
    let e = d.errors(&format!("{kernel}rng_rate = 'fast'\n"));
    assert_eq!(
        e,
        ["rng_rate: rng_rate = Str(\"fast\"): expected bytes per second (a number; 0 = no limit)"]
    );
    // 14 disks fill every slot: the entropy device must be turned off for them.
    let disks: Vec<String> = (0..14)
        .map(|i| format!("'{},raw,xvd{},ro'", d.p("disk.img"), char::from(b'a' + i)))
        .collect();
    let text = format!("{kernel}disk = [ {} ]\n", disks.join(", "));
    let e = d.errors(&text);
    assert_eq!(e, ["t.cfg:2:8: rng: 14 disks and the entropy device need 15 virtio devices, but the machine model has interrupt lines for at most 14 (GSIs 10-23): set `rng = 0` or use fewer disks"]);
    assert_eq!(
        spec(&format!("disk = [ {} ]\nrng = 0\n", disks.join(", ")))
            .disks
            .len(),
        14
    );
    // A spec written before the entropy device existed (no `rng` field) gets the default device.
    let mut json = serde_json::to_value(spec("")).unwrap();
    json.as_object_mut().unwrap().remove("rng");
    let back: VmSpec = serde_json::from_value(json).unwrap();
    assert_eq!(back.rng, Some(RngSpec::default()));
}

#[test]
fn vifs_with_a_tap_become_nics_in_the_slots_after_the_entropy_device() {
    let d = Dir::new();
    let kernel = format!("kernel = '{}'\n", d.p("pvh"));
    let spec = |extra: &str| {
        prepare(&d.cfg(&format!("{kernel}{extra}")), &HOST)
            .unwrap()
            .spec
    };
    let s = spec(
        "vif = [ 'mac=00:16:3e:01:02:03,vifname=tap0,mtu=9000,rate=10Mb/s@20ms', 'bridge=xenbr0', 'vifname=tap1' ]\n",
    );
    assert_eq!(s.nics.len(), 2, "the vif without a TAP has no NIC");
    let n = &s.nics[0];
    assert_eq!((n.devid, n.mtu), (0, 9000));
    assert_eq!(n.mac.to_string(), "00:16:3e:01:02:03");
    assert_eq!(
        n.rate,
        Some(domus_config::VifRate {
            bytes_per_second: 1_250_000,
            interval_us: 20_000
        })
    );
    assert_eq!(
        n.tap,
        TapSpec {
            name: "tap0".into(),
            fd: None
        }
    );
    assert_eq!((s.nics[1].devid, s.nics[1].mtu), (2, DEFAULT_MTU));
    assert_eq!(s.nics[1].rate, None);
    // Round trip through JSON; a spec from before NICs existed has none.
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<VmSpec>(&json).unwrap(), s);
    let mut v = serde_json::to_value(spec("")).unwrap();
    v.as_object_mut().unwrap().remove("nics");
    assert!(serde_json::from_value::<VmSpec>(v).unwrap().nics.is_empty());
    // 13 disks + the entropy device leave no slot for a NIC.
    let disks: Vec<String> = (0..13)
        .map(|i| format!("'{},raw,xvd{},ro'", d.p("disk.img"), char::from(b'a' + i)))
        .collect();
    let e = d.errors(&format!(
        "{kernel}disk = [ {} ]\nvif = [ 'vifname=tap0' ]\n",
        disks.join(", ")
    ));
    assert_eq!(e, ["vif: 13 disks, 1 entropy device and 1 NICs need 15 virtio devices, but the machine model has interrupt lines for at most 14 (GSIs 10-23): set `rng = 0` or use fewer disks or vifs"]);
    // Malformed vifs are the config parser's located errors.
    for bad in ["mac=01:00:00:00:00:01", "mtu=10", "mac=zz"] {
        let text = format!("{kernel}vif = [ '{bad},vifname=t' ]\n");
        assert!(DomainConfig::from_xl("t.cfg", &text, &[]).is_err(), "{bad}");
    }
}

#[test]
fn every_domain_gets_a_balloon_and_ram_is_maxmem() {
    let d = Dir::new();
    let kernel = format!("kernel = '{}'\n", d.p("pvh"));
    let spec = |extra: &str| {
        prepare(&d.cfg(&format!("{kernel}{extra}")), &HOST)
            .unwrap()
            .spec
    };
    // maxmem = memory (xl's default): a balloon all the same, RAM = memory.
    let s = spec("memory = 64\n");
    assert!(s.balloon);
    assert_eq!((s.memory_mib, s.maxmem_mib, s.ram_mib()), (64, 64, 64));
    // maxmem above memory: RAM = maxmem, the balloon starts at the difference.
    let s = spec("memory = 64\nmaxmem = 256\n");
    assert!(s.balloon);
    assert_eq!((s.memory_mib, s.maxmem_mib, s.ram_mib()), (64, 256, 256));
    // Turned off: RAM = memory, maxmem only recorded.
    let s = spec("memory = 64\nmaxmem = 256\nballoon = 0\n");
    assert!(!s.balloon);
    assert_eq!(s.ram_mib(), 64);
    assert!(d.cfg("balloon = 1\n").warnings.is_empty());
    let e = d.errors(&format!("{kernel}balloon = 'maybe'\n"));
    assert_eq!(e, ["balloon: balloon = Str(\"maybe\"): expected 0 or 1"]);
    // All 14 slots taken: no balloon, and maxmem above memory is refused at maxmem's line.
    let disks: Vec<String> = (0..13)
        .map(|i| format!("'{},raw,xvd{},ro'", d.p("disk.img"), char::from(b'a' + i)))
        .collect();
    let full = format!("disk = [ {} ]\n", disks.join(", "));
    assert!(!spec(&full).balloon);
    assert!(
        spec(&format!("{full}rng = 0\n")).balloon,
        "13 disks leave one slot"
    );
    let e = d.errors(&format!("{kernel}{full}memory = 64\nmaxmem = 128\n"));
    assert_eq!(e, ["t.cfg:4:10: maxmem: maxmem = 128 MiB above memory = 64 MiB needs the balloon device, but 14 virtio devices (disks, entropy device, NICs) already take all 14 interrupt lines: set maxmem = memory, `rng = 0`, or use fewer disks or vifs"]);
    // A spec written before ballooning (no `balloon` field) has none: its RAM stays `memory`.
    let mut json = serde_json::to_value(spec("memory = 64\nmaxmem = 128\n")).unwrap();
    json.as_object_mut().unwrap().remove("balloon");
    let back: VmSpec = serde_json::from_value(json).unwrap();
    assert!(!back.balloon);
    assert_eq!(back.ram_mib(), 64);
}
