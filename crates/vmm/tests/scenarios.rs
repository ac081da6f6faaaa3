//! The probe guest's scenarios under the real domus-vmm binary on /dev/kvm: what the guest reports over
//! serial and the exit status the VMM maps its outcome to (0 poweroff, 2 reboot, 3 crash).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::run_probe;

#[test]
fn hello_reports_vcpus_and_memory() {
    for (mem, vcpus) in [(64, 1), (128, 2), (200, 2)] {
        let r = run_probe("probe=hello", mem, vcpus);
        assert_eq!(r.code, 0, "{r:?}");
        let want = format!("PROBE hello vcpus={vcpus} mem_mib={mem}");
        assert!(
            r.stdout.lines().any(|l| l.trim_end() == want),
            "want {want:?} in {r:?}"
        );
        assert!(r.reason().contains("powered off"), "{}", r.reason());
    }
}

#[test]
fn poweroff_exits_0() {
    let r = run_probe("probe=poweroff", 64, 1);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("PROBE poweroff"), "{r:?}");
    assert!(r.reason().contains("ACPI S5"), "{}", r.reason());
}

#[test]
fn reboot_exits_2() {
    let r = run_probe("probe=reboot", 64, 1);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.reason().contains("i8042"), "{}", r.reason());
}

#[test]
fn panic_exits_3() {
    let r = run_probe("probe=panic", 64, 1);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stdout.contains("PROBE panic"), "{r:?}");
    assert!(r.reason().contains("pvpanic"), "{}", r.reason());
}

#[test]
fn triple_fault_exits_2() {
    let r = run_probe("probe=triple-fault", 64, 1);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.reason().contains("triple fault"), "{}", r.reason());
}

#[test]
fn smp_brings_up_every_vcpu() {
    for vcpus in [2u32, 3] {
        let r = run_probe("probe=smp", 64, vcpus);
        assert_eq!(r.code, 0, "{r:?}");
        for id in 0..vcpus {
            let want = format!("PROBE cpu {id} up");
            assert!(
                r.stdout.lines().any(|l| l.trim_end() == want),
                "want {want:?} in {r:?}"
            );
        }
        let want = format!("PROBE smp vcpus={vcpus} up={vcpus}");
        assert!(r.stdout.contains(&want), "want {want:?} in {r:?}");
    }
}

#[test]
fn loop_runs_at_cpl3() {
    let r = run_probe("probe=loop iters=50000000", 64, 1);
    assert_eq!(r.code, 0, "{r:?}");
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with("PROBE loop"))
        .unwrap_or_else(|| panic!("no loop line in {r:?}"));
    assert!(line.contains("iters=50000000"), "{line}");
    let cycles: u64 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("cycles="))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no cycles in {line}"));
    assert!(cycles > 0, "{line}");
}

#[test]
fn hello_from_xl_config_and_json() {
    let probe = common::probe();
    let dir = common::temp_dir("cfg");
    // examples/hello.cfg itself, with the kernel overridden to this target dir's probe, as xl does.
    let hello = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello.cfg");
    let kernel = format!("kernel=\"{}\"", probe.display());
    let r = common::run_vmm(
        &["--config", hello.to_str().unwrap(), &kernel, "memory=96"],
        std::time::Duration::from_secs(60),
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("PROBE hello vcpus=2 mem_mib=96"), "{r:?}");
    assert!(r.reason().contains("domain hello"), "{}", r.reason());

    // Relative kernel path resolved against the VMM's cwd; JSON config as `domus create -N` prints it.
    let d = domus_config::DomainConfig::from_xl(
        "json-test.cfg",
        "kernel = \"domus-probe\"\nextra = \"probe=hello\"\nmemory = 64\nvcpus = 1\n",
        &[],
    )
    .unwrap();
    let json = dir.join("domain.json");
    std::fs::write(&json, serde_json::to_string(&d).unwrap()).unwrap();
    let child = common::vmm_command()
        .args(["--config-json", json.to_str().unwrap()])
        .current_dir(probe.parent().unwrap())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let r = common::wait_bounded(child, std::time::Duration::from_secs(60), "json");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("PROBE hello vcpus=1 mem_mib=64"), "{r:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gzip_compressed_kernel_boots() {
    use std::io::Write;
    let probe = common::probe();
    let dir = common::temp_dir("gz");
    let gz = dir.join("domus-probe.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&std::fs::read(&probe).unwrap()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let r = common::run_vmm(
        &[
            "--kernel",
            gz.to_str().unwrap(),
            "--cmdline",
            "probe=hello",
            "--memory",
            "64",
        ],
        std::time::Duration::from_secs(60),
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("PROBE hello vcpus=1 mem_mib=64"), "{r:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
