//! Each malformed input of issue 2's list gives one clear located error; the tests assert the message.
//! Plus the language rules seen through `DomainConfig::from_xl`: overrides, defaults, name from the file.

use domus_config::{ConfigErrorKind, DomainConfig};

fn error(text: &str) -> String {
    DomainConfig::from_xl("/etc/xen/bad.cfg", text, &[])
        .expect_err("config should be rejected")
        .to_string()
}

#[test]
fn issue_list_of_malformed_inputs() {
    let cases: &[(&str, &str)] = &[
        // unterminated string
        (
            "name = 'ok'\nkernel = \"/boot/vmlinuz\n",
            "/etc/xen/bad.cfg:2:10: kernel: unterminated string: expected a closing \" before the end of the line",
        ),
        // bad escape
        (
            "extra = \"console=ttyS0 \\d\"",
            "/etc/xen/bad.cfg:1:24: extra: invalid escape `\\d` in string: expected one of \\a \\b \\f \\n \\r \\t \\v \\xHH \\ooo \\\\ \\' \\\"",
        ),
        // += type mismatch
        (
            "extra = 'quiet'\nextra += [ 'x' ]",
            "/etc/xen/bad.cfg:2:10: extra: `+=` cannot append a list to a string: expected a string",
        ),
        (
            "memory = 128\nmemory += 64",
            "/etc/xen/bad.cfg:2:11: memory: `+=` cannot append to a number: expected a string or a list, found number",
        ),
        // negative number
        (
            "vcpus = -2",
            "/etc/xen/bad.cfg:1:9: vcpus: negative number `-2`: expected a number >= 0 (xl.cfg has no negative numbers)",
        ),
        // unknown vdev
        (
            "disk = [ 'phy:/dev/wd0e,wd0e,w' ]",
            "/etc/xen/bad.cfg:1:10: disk: unknown vdev `wd0e`: expected xvdX, sdX, hdX (with an optional partition number), dN[pM] or a device number",
        ),
        // bad MAC
        (
            "vif = [ 'bridge=xenbr0',\n        'mac=00:16:3e:1:2:3' ]",
            "/etc/xen/bad.cfg:2:9: vif: invalid MAC address `00:16:3e:1:2:3`: expected six pairs of hex digits separated by colons, e.g. 00:16:3e:12:34:56",
        ),
        // two disks with the same vdev (xvda and its number)
        (
            "disk = [ '/a.img,raw,xvda,rw',\n  '/b.img,raw,51712,rw' ]",
            "/etc/xen/bad.cfg:2:3: disk: vdev `51712` (device number 51712) is already used by disk 0 (`xvda`): expected a unique vdev per disk",
        ),
        // xm-era Python forms
        (
            "autorestart = True",
            "/etc/xen/bad.cfg:1:15: autorestart: `autorestart = True` is an xm setting that xl does not support: remove it;",
        ),
        (
            "acpi = True",
            "/etc/xen/bad.cfg:1:8: acpi: `True` is Python (xm) syntax, not xl.cfg: write 1 instead",
        ),
        (
            "kernel = netbsd",
            "/etc/xen/bad.cfg:1:10: kernel: bare word `netbsd` is not a value (xm accepted Python names, xl does not): write \"netbsd\" to make it a string",
        ),
        (
            "autorestart = 1",
            "/etc/xen/bad.cfg:1:15: autorestart: `autorestart = 1` is an xm setting that xl does not support",
        ),
    ];
    for (text, want) in cases {
        let got = error(text);
        assert!(
            got.starts_with(want),
            "input {text:?}\n got: {got}\nwant: {want}"
        );
    }
}

#[test]
fn typed_key_errors() {
    let cases: &[(&str, &str)] = &[
        ("type = 'xen'", "/etc/xen/bad.cfg:1:8: type: expected pv, pvh or hvm, found `xen`"),
        ("on_crash = 'reboot'", "/etc/xen/bad.cfg:1:12: on_crash: expected destroy, restart, rename-restart, preserve, coredump-destroy or coredump-restart, found `reboot`"),
        ("memory = [ 1 ]", "/etc/xen/bad.cfg:1:10: memory: expected a number, found list"),
        ("memory = 'lots'", "/etc/xen/bad.cfg:1:10: memory: invalid memory size `lots`"),
        ("memory = 0", "/etc/xen/bad.cfg:1:10: memory: expected a size in MiB between 1 and 2^44, found `0`"),
        ("memory = 512\nmaxmem = 256", "/etc/xen/bad.cfg:2:10: maxmem: expected maxmem >= memory (512 MiB), found `256 MiB`"),
        ("vcpus = 0", "/etc/xen/bad.cfg:1:9: vcpus: expected a vCPU count between 1 and 1024, found `0`"),
        ("vcpus = 4\nmaxvcpus = 2", "/etc/xen/bad.cfg:2:12: maxvcpus: expected maxvcpus >= vcpus (4), found `2`"),
        ("cpus = '3-1'", "/etc/xen/bad.cfg:1:8: cpus: invalid cpus range `3-1`"),
        ("cpus = [ '1', 'x' ]", "/etc/xen/bad.cfg:1:15: cpus: invalid cpus item `x`"),
        ("cpus_soft = 'nodes:'", "/etc/xen/bad.cfg:1:13: cpus_soft: invalid cpus item `nodes:`"),
        ("cpu_weight = 0", "/etc/xen/bad.cfg:1:14: cpu_weight: expected a weight between 1 and 65535, found `0`"),
        ("cpu_cap = 70000", "/etc/xen/bad.cfg:1:11: cpu_cap: expected a cap between 0 and 65535"),
        ("uuid = 'abc'", "/etc/xen/bad.cfg:1:8: uuid: expected a UUID"),
        ("disk = '/img,raw,xvda'", "/etc/xen/bad.cfg:1:8: disk: expected a list of strings, found string"),
        ("disk = [ [ 'x' ] ]", "/etc/xen/bad.cfg:1:10: disk: expected a string in this list, found list"),
        ("vif = [ 'devid=1', 'devid=1' ]", "/etc/xen/bad.cfg:1:20: vif: devid 1 is already used by vif 0"),
        ("pci = [ '03:00.9' ]", "/etc/xen/bad.cfg:1:9: pci: invalid PCI address `03:00.9`"),
        ("kernel = [ 'a' ]", "/etc/xen/bad.cfg:1:10: kernel: expected a string, found list"),
        ("name = ''", "/etc/xen/bad.cfg:1:1: name: expected a non-empty domain name"),
    ];
    for (text, want) in cases {
        let got = error(text);
        assert!(
            got.starts_with(want),
            "input {text:?}\n got: {got}\nwant: {want}"
        );
    }
}

#[test]
fn errors_carry_structured_fields() {
    let err = DomainConfig::from_xl("x.cfg", "\n  vcpus = -1", &[]).unwrap_err();
    assert_eq!(
        (
            &*err.location.source,
            err.location.line,
            err.location.column
        ),
        ("x.cfg", 2, 11)
    );
    assert_eq!(
        err.kind,
        ConfigErrorKind::NegativeNumber { found: "-1".into() }
    );
    let err = DomainConfig::from_xl("x.cfg", "on_reboot = 'x'", &[]).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("on_reboot"));
}

#[test]
fn overrides_are_appended_lines() {
    let text = "name = 'a'\nmemory = 128\nextra = 'quiet'\ndisk = [ '/a,raw,xvda' ]\n";
    let overrides: Vec<String> = [
        "memory=256",
        "extra += ' single'",
        "disk += [ '/b,raw,xvdb' ]",
        "vcpus = 2; name = 'b'",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cfg = DomainConfig::from_xl("a.cfg", text, &overrides).unwrap();
    assert_eq!(cfg.memory_mib, 256);
    assert_eq!(cfg.cmdline.as_deref(), Some("quiet single"));
    assert_eq!(cfg.disks.len(), 2);
    assert_eq!(cfg.vcpus, 2);
    assert_eq!(cfg.name, "b");
    let err =
        DomainConfig::from_xl("a.cfg", text, &["memory=256".into(), "name=b".into()]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "command line:2:6: name: bare word `b` is not a value (xm accepted Python names, xl does not): write \"b\" to make it a string"
    );
}

#[test]
fn names_defaults_and_cmdline_composition() {
    // Name from the file's name, directories stripped, extension kept (as xm did).
    assert_eq!(
        DomainConfig::from_xl("/etc/xen/foo", "", &[]).unwrap().name,
        "foo"
    );
    assert_eq!(
        DomainConfig::from_xl("dir/web.cfg", "", &[]).unwrap().name,
        "web.cfg"
    );
    let cfg = DomainConfig::from_xl("d", "", &[]).unwrap();
    assert_eq!(
        (cfg.memory_mib, cfg.maxmem_mib, cfg.vcpus, cfg.maxvcpus),
        (32, 32, 1, 1)
    );
    assert_eq!(cfg.cmdline, None);
    // cmdline wins over root/extra, with xl's warning.
    let cfg = DomainConfig::from_xl(
        "d",
        "root = '/dev/xvda1'\ncmdline = 'console=hvc0'\nextra = 'x'",
        &[],
    )
    .unwrap();
    assert_eq!(cfg.cmdline.as_deref(), Some("console=hvc0"));
    assert_eq!(
        cfg.warnings,
        ["d:1: ignoring root= and extra= in favour of cmdline="]
    );
    let cfg = DomainConfig::from_xl("d", "extra = 'single'", &[]).unwrap();
    assert_eq!(cfg.cmdline.as_deref(), Some("single"));
    // Last assignment wins; numbers in quotes and strings that are numbers are accepted as libxl does.
    let cfg = DomainConfig::from_xl(
        "d",
        "vcpus = 1\nvcpus = '3'\nmemory = 0x200\nkernel = 42",
        &[],
    )
    .unwrap();
    assert_eq!((cfg.vcpus, cfg.memory_mib), (3, 512));
    assert_eq!(cfg.kernel.as_deref(), Some("42"));
    // Memory units.
    let cfg = DomainConfig::from_xl("d", "memory = '2G'\nmaxmem = '4096M'", &[]).unwrap();
    assert_eq!((cfg.memory_mib, cfg.maxmem_mib), (2048, 4096));
    // builder is xm's spelling of type; type wins if both are given.
    let cfg = DomainConfig::from_xl("d", "builder = 'hvm'\ntype = 'pvh'", &[]).unwrap();
    assert_eq!(cfg.domain_type, domus_config::DomainType::Pvh);
    assert_eq!(cfg.warnings.len(), 2, "{:?}", cfg.warnings);
}

#[test]
fn json_field_names_match_issue_2() {
    let cfg = DomainConfig::from_xl(
        "j",
        "kernel = 'k'\ndisk = [ 'file:/x,xvda,w' ]\nvif = [ '' ]\npci = [ '01:00.0' ]",
        &[],
    )
    .unwrap();
    let json = serde_json::to_value(&cfg).unwrap();
    for field in [
        "name",
        "uuid",
        "type",
        "memory_mib",
        "maxmem_mib",
        "vcpus",
        "maxvcpus",
        "cpus",
        "kernel",
        "ramdisk",
        "cmdline",
        "bootloader",
        "on_poweroff",
        "on_reboot",
        "on_crash",
        "on_watchdog",
        "disks",
        "vifs",
        "pci",
        "warnings",
    ] {
        assert!(json.get(field).is_some(), "missing field {field}");
    }
    for field in [
        "target",
        "format",
        "vdev",
        "devnum",
        "access",
        "devtype",
        "backendtype",
        "script",
    ] {
        assert!(
            json["disks"][0].get(field).is_some(),
            "missing disk field {field}"
        );
    }
    for field in [
        "devid", "mac", "bridge", "ip", "script", "vifname", "model", "type", "rate", "mtu",
    ] {
        assert!(
            json["vifs"][0].get(field).is_some(),
            "missing vif field {field}"
        );
    }
    for field in ["domain", "bus", "dev", "func", "options"] {
        assert!(
            json["pci"][0].get(field).is_some(),
            "missing pci field {field}"
        );
    }
    assert_eq!(json["type"], "pv");
    assert_eq!(json["on_reboot"], "restart");
    assert!(json["cpus"].is_null() && json["ramdisk"].is_null());
    assert_eq!(json["disks"][0]["devnum"], 51712);
}

#[test]
fn large_configs_stay_linear() {
    // Thousands of keys and devices: assignment lookups and duplicate checks are indexed, not quadratic.
    let mut text = String::new();
    for i in 0..20_000 {
        text.push_str(&format!("key{i} = {i}\n"));
    }
    text.push_str("disk = [\n");
    for i in 0..20_000 {
        text.push_str(&format!("  '/img{i},raw,d{i}',\n"));
    }
    text.push_str("]\nvif = [\n");
    for _ in 0..20_000 {
        text.push_str("  'bridge=xenbr0',\n");
    }
    text.push_str("]\n");
    let cfg = DomainConfig::from_xl("big.cfg", &text, &[]).unwrap();
    assert_eq!(cfg.other_keys.len(), 20_000);
    assert_eq!(cfg.disks.len(), 20_000);
    assert_eq!(cfg.disks[19_999].devnum, 1 << 28 | 19_999 << 8);
    assert_eq!(cfg.vifs.len(), 20_000);
    assert_eq!(cfg.vifs[19_999].devid, 19_999);
}
