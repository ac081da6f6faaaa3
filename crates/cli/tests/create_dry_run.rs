//! `domus create -N --json` (and xl's global `-N create --json`) run as the real binary, also invoked as
//! `xl`: the resulting configuration is printed as Domus's JSON on stdout (plain `-N` prints libxl's JSON:
//! `xl_parity.rs`) with generated values filled in, "Parsing config
//! from FILE" and warnings go to stderr, bad configs exit 1 with a located error. No domusd is needed.
//!
//! The dry run also runs the host checks `domus create` gets from domusd (issue 9): the HOWTO's and Xen's
//! example configs name kernels and disks this machine does not have (and `xlexample.hvm` is HVM), so
//! their dry runs still print the configuration but exit 1 naming each problem with its `FILE:LINE`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const DOMUS: &str = env!("CARGO_BIN_EXE_domus");

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fresh directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("create-dry-run")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn run(bin: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env_remove("DOMUS_CONFIG_DIR")
        .output()
        .expect("run the domus binary")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}, stderr:\n{}",
        out.status,
        stderr(out)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A dry run of a config that parses but that this host cannot run: the configuration is still printed,
/// the exit status is 1 and stderr names every problem in `wants`.
fn json_refused(out: &Output, wants: &[&str]) -> Value {
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr(out));
    for want in wants {
        assert!(
            stderr(out).contains(want),
            "stderr lacks {want:?}:\n{}",
            stderr(out)
        );
    }
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// What the HOWTO's `foo` is refused for on a host without its kernel and disk images.
const FOO_REFUSED: [&str; 3] = [
    "foo:2:10: kernel: cannot read kernel /netbsd-XEN3PAE_DOMU-i386-foo.gz",
    "foo:5:10: disk: disk `0x0`: cannot open disk image /n0/xen/foo-wd0",
    "foo:6:10: disk: disk `0x1`: cannot open disk image /n0/xen/foo-wd1",
];

fn assert_failed_with(out: &Output, want: &str) {
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr(out));
    assert!(out.stdout.is_empty(), "nothing on stdout on error");
    assert!(
        stderr(out).contains(want),
        "stderr lacks {want:?}:\n{}",
        stderr(out)
    );
}

/// The HOWTO's `foo` file server, under the HOWTO's file name.
fn howto_foo(dir: &Path) {
    std::fs::copy(
        workspace_root().join("examples/howto-foo.cfg"),
        dir.join("foo"),
    )
    .expect("copy example");
}

fn assert_foo(v: &Value) {
    assert_eq!(v["name"], "foo");
    assert_eq!(v["type"], "pv");
    assert_eq!(v["kernel"], "/netbsd-XEN3PAE_DOMU-i386-foo.gz");
    assert_eq!(v["memory_mib"], 1024);
    assert_eq!(v["maxmem_mib"], 1024);
    assert_eq!(v["on_poweroff"], "destroy");
    assert_eq!(v["on_reboot"], "restart");
    assert_eq!(v["on_crash"], "destroy");
    assert_eq!(v["on_watchdog"], "destroy");
    assert_eq!(v["uuid"].as_str().map(str::len), Some(36), "uuid generated");
    assert_eq!(v["vifs"][0]["mac"], "aa:00:00:d1:00:09");
    assert_eq!(v["vifs"][0]["bridge"], "bridge0");
    assert_eq!(v["vifs"][0]["devid"], 0);
    // The script a create would use (xl's default without a global xl.conf on this host).
    if !std::path::Path::new("/etc/domus/xl.conf").exists()
        && !std::path::Path::new("/etc/xen/xl.conf").exists()
    {
        assert_eq!(v["vifs"][0]["script"], "vif-bridge");
    }
    assert_eq!(v["disks"][0]["target"], "/n0/xen/foo-wd0");
    assert_eq!(v["disks"][0]["vdev"], "0x0");
    assert_eq!(v["disks"][0]["devnum"], 0);
    assert_eq!(v["disks"][1]["target"], "/n0/xen/foo-wd1");
    assert_eq!(v["disks"][1]["devnum"], 1);
    assert_eq!(v["disks"][1]["access"], "rw");
    assert_eq!(v["disks"][1]["devtype"], "disk");
    assert!(v["disks"][1]["script"].is_null());
    assert_eq!(v["warnings"], Value::Array(vec![]));
}

#[test]
fn howto_foo_dry_run_both_flag_forms() {
    let dir = scratch("foo");
    howto_foo(&dir);
    let out = run(Path::new(DOMUS), &dir, &["create", "-N", "--json", "foo"]);
    assert_foo(&json_refused(&out, &FOO_REFUSED));
    assert!(stderr(&out).starts_with("Parsing config from foo\n"));
    // xl's global-flag form, with overrides appended as config lines.
    let out = run(
        Path::new(DOMUS),
        &dir,
        &[
            "-N",
            "create",
            "--json",
            "foo",
            "vcpus=2",
            "memory=2048",
            "name=\"bar\"",
        ],
    );
    let v = json_refused(&out, &FOO_REFUSED);
    assert_eq!(v["name"], "bar");
    assert_eq!(
        (v["vcpus"].as_u64(), v["maxvcpus"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(v["memory_mib"], 2048);
    // -f FILE form.
    let v = json_refused(
        &run(
            Path::new(DOMUS),
            &dir,
            &["create", "-N", "--json", "-f", "foo"],
        ),
        &FOO_REFUSED,
    );
    assert_eq!(v["name"], "foo");
}

#[test]
fn invoked_as_xl_through_a_link() {
    let dir = scratch("xl");
    howto_foo(&dir);
    let xl = dir.join("xl");
    std::os::unix::fs::symlink(DOMUS, &xl).expect("symlink xl -> domus");
    assert_foo(&json_refused(
        &run(&xl, &dir, &["-N", "create", "--json", "foo"]),
        &FOO_REFUSED,
    ));
    assert_foo(&json_refused(
        &run(&xl, &dir, &["create", "-N", "--json", "foo"]),
        &FOO_REFUSED,
    ));
    let bad = run(&xl, &dir, &["-N", "create", "--json", "foo", "vcpus=-1"]);
    assert_failed_with(
        &bad,
        "xl create: command line:1:7: vcpus: negative number `-1`",
    );
}

#[test]
fn xen_example_generates_macs_and_warns() {
    let testdeps = std::env::var_os("DOMUS_TESTDEPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".cache/testdeps"));
    let example = testdeps.join("xen/etc/xen/xlexample.hvm");
    assert!(
        example.is_file(),
        "missing test dependency {}: run scripts/fetch-test-deps.sh",
        example.display()
    );
    let dir = scratch("xlexample");
    let path = example.to_str().expect("utf-8 path");
    let out = run(Path::new(DOMUS), &dir, &["create", "-N", "--json", path]);
    let hvm = format!("{path}:9:8: type: type = \"hvm\" needs firmware");
    let v = json_refused(&out, &[&hvm]);
    assert_eq!(v["name"], "example.hvm");
    assert_eq!(v["type"], "hvm");
    assert_eq!(
        (v["memory_mib"].as_u64(), v["vcpus"].as_u64()),
        (Some(128), Some(2))
    );
    let mac = v["vifs"][0]["mac"].as_str().expect("a MAC is generated");
    assert!(mac.starts_with("00:16:3e:") && mac.len() == 17, "{mac}");
    assert_eq!(v["disks"][0]["devnum"], 51712);
    assert!(
        v["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("key `sdl`")),
        "{}",
        v["warnings"]
    );
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("Parsing config from {path}\n")),
        "{err}"
    );
    assert!(
        err.contains("warning: ")
            && err.contains("key `sdl` is an xl setting Domus does not implement"),
        "{err}"
    );
    // Two dry runs generate different uuids and MACs.
    let again = json_refused(
        &run(Path::new(DOMUS), &dir, &["create", "-N", "--json", path]),
        &[&hvm],
    );
    assert_ne!(again["uuid"], v["uuid"]);
    assert_ne!(again["vifs"][0]["mac"], v["vifs"][0]["mac"]);
}

#[test]
fn bad_configs_exit_1_with_located_errors() {
    let dir = scratch("bad");
    let cases: &[(&str, &str)] = &[
        ("name = 'x'\nkernel = \"/boot/vmlinuz\n", "domus create: bad.cfg:2:10: kernel: unterminated string"),
        ("extra = 'a\\qb'\n", "domus create: bad.cfg:1:11: extra: invalid escape `\\q` in string"),
        ("extra = 'a'\nextra += 1\n", "domus create: bad.cfg:2:10: extra: `+=` cannot append to a number"),
        ("memory = -128\n", "domus create: bad.cfg:1:10: memory: negative number `-128`"),
        ("disk = [ 'phy:/dev/wd0e,wd0e,w' ]\n", "domus create: bad.cfg:1:10: disk: unknown vdev `wd0e`"),
        ("vif = [ 'mac=aa:00:00:d1:00' ]\n", "domus create: bad.cfg:1:9: vif: invalid MAC address `aa:00:00:d1:00`"),
        (
            "disk = [ '/a,raw,hda1', '/b,raw,0x301' ]\n",
            "domus create: bad.cfg:1:25: disk: vdev `0x301` (device number 769) is already used by disk 0 (`hda1`)",
        ),
        ("autorestart = True\n", "domus create: bad.cfg:1:15: autorestart: `autorestart = True` is an xm setting"),
    ];
    for (text, want) in cases {
        std::fs::write(dir.join("bad.cfg"), text).expect("write bad.cfg");
        let out = run(
            Path::new(DOMUS),
            &dir,
            &["create", "-N", "--json", "bad.cfg"],
        );
        assert_failed_with(&out, want);
        assert!(stderr(&out).starts_with("Parsing config from bad.cfg\n"));
    }
    let out = run(
        Path::new(DOMUS),
        &dir,
        &["create", "-N", "--json", "no-such.cfg"],
    );
    assert_failed_with(
        &out,
        "domus create: cannot read config file no-such.cfg: No such file or directory",
    );
    let out = run(Path::new(DOMUS), &dir, &["create", "-N", "--json"]);
    assert_failed_with(&out, "domus create: no config file given");
}

#[test]
fn bare_names_are_looked_up_in_the_config_dir() {
    let dir = scratch("lookup");
    let etc = dir.join("etc");
    std::fs::create_dir_all(&etc).expect("mkdir");
    std::fs::copy(
        workspace_root().join("examples/howto-nbsd.cfg"),
        etc.join("nbsd"),
    )
    .expect("copy");
    let out = Command::new(DOMUS)
        .args(["create", "-N", "--json", "nbsd"])
        .current_dir(&dir)
        .env("DOMUS_CONFIG_DIR", &etc)
        .output()
        .expect("run domus");
    let nbsd = etc.join("nbsd");
    let v = json_refused(
        &out,
        &[&format!(
            "{}:9:10: kernel: cannot read kernel /home/bouyer/netbsd-XEN3_DOMU",
            nbsd.display()
        )],
    );
    assert_eq!(v["name"], "nbsd");
    assert_eq!(v["cmdline"], "root=xbd0");
    assert_eq!(v["disks"][0]["target"], "/dev/wd0e");
    assert_eq!(v["disks"][0]["devnum"], 1);
    assert!(stderr(&out).contains("warning: "), "nics warning on stderr");
    assert!(stderr(&out).starts_with(&format!(
        "Parsing config from {}",
        etc.join("nbsd").display()
    )));
}

#[test]
fn a_runnable_config_dry_runs_clean_and_names_its_boot_protocol() {
    let dir = scratch("runnable");
    let probe = Path::new(DOMUS).with_file_name("domus-probe");
    assert!(
        probe.is_file(),
        "{} is missing: run `cargo build --workspace` before the tests",
        probe.display()
    );
    let kernel = format!("kernel=\"{}\"", probe.display());
    std::fs::copy(
        workspace_root().join("examples/hello.cfg"),
        dir.join("hello"),
    )
    .expect("copy example");
    let out = run(
        Path::new(DOMUS),
        &dir,
        &["create", "-N", "--json", "hello", &kernel, "type=\"pv\""],
    );
    let v = json(&out);
    assert_eq!(v["name"], "hello");
    assert_eq!(v["kernel"], probe.display().to_string());
    assert_eq!(
        stderr(&out),
        format!(
            "Parsing config from hello\nbooting {} through PVH (the kernel's XEN_ELFNOTE_PHYS32_ENTRY note) \
             (type = \"pv\": Domus runs no PV guests; it boots the kernel's own entry)\n",
            probe.display()
        )
    );
}
