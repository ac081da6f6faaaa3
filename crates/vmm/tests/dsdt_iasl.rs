//! The generated DSDT, checked by a tool no one here wrote: acpica's `iasl` disassembles it (`-d`)
//! and the result must recompile (`iasl` on the `.dsl`) without errors, with the CPU hotplug methods
//! well formed and reading the register block. Nothing in the test guest runs AML, so this is the
//! check that a Linux guest's interpreter would accept the methods. Needs Debian's `acpica-tools`
//! (`.ci/run` installs it); without `iasl` the test fails and says so.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;

fn iasl() -> &'static str {
    let found = Command::new("iasl").arg("-v").output().is_ok();
    assert!(
        found,
        "iasl not found: install Debian's acpica-tools (apt-get install acpica-tools)"
    );
    "iasl"
}

fn run(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(iasl())
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "iasl {args:?} failed:\n{text}");
    text
}

/// The body of `Method (name, ...)` in the disassembly, up to the next method or device.
fn method<'a>(dsl: &'a str, name: &str) -> &'a str {
    let start = dsl
        .find(&format!("Method ({name},"))
        .unwrap_or_else(|| panic!("no method {name} in:\n{dsl}"));
    let rest = &dsl[start..];
    let end = rest[1..]
        .find("Method (")
        .map_or(rest.len(), |e| e + 1)
        .min(rest[1..].find("Device (").map_or(rest.len(), |e| e + 1));
    &rest[..end]
}

#[test]
fn dsdt_disassembles_recompiles_and_its_hotplug_methods_use_the_registers() {
    let dir = std::env::temp_dir().join(format!("domus-dsdt-iasl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("dsdt.aml"),
        domus_vmm::boot::acpi::dsdt_table(2, 4),
    )
    .unwrap();
    run(&dir, &["-d", "dsdt.aml"]);
    let dsl = std::fs::read_to_string(dir.join("dsdt.dsl")).unwrap();
    // Recompiling the disassembly is iasl's full syntax and semantic check (undefined names,
    // wrong argument counts, malformed packages all fail here).
    let compiled = run(&dir, &["-p", "recompiled", "dsdt.dsl"]);
    assert!(compiled.contains(" 0 Errors"), "{compiled}");
    std::fs::remove_dir_all(&dir).unwrap();

    for d in ["C000", "C001", "C002", "C003"] {
        assert!(
            dsl.contains(&format!("Device ({d})")),
            "{d} missing:\n{dsl}"
        );
    }
    assert!(!dsl.contains("Device (C004)"));
    assert_eq!(dsl.matches("\"ACPI0007\"").count(), 4, "{dsl}");
    assert!(
        dsl.contains("OperationRegion (PRST, SystemMemory, 0xFEB01000, 0x10)"),
        "{dsl}"
    );
    assert!(
        dsl.contains("OperationRegion (GDST, SystemMemory, 0xFEB00000, 0x04)"),
        "{dsl}"
    );
    assert!(dsl.contains("\"ACPI0013\""), "{dsl}");

    let csta = method(&dsl, "CSTA");
    assert!(csta.contains("Acquire (\\_SB.PRES.CPLK, 0xFFFF)"), "{csta}");
    assert!(csta.contains("\\_SB.PRES.CSEL = Arg0"), "{csta}");
    assert!(csta.contains("\\_SB.PRES.CPEN == One"), "{csta}");
    assert!(csta.contains("Release (\\_SB.PRES.CPLK)"), "{csta}");
    let cscn = method(&dsl, "CSCN");
    for needle in [
        "While ((Local0 < 0x04))",
        "\\_SB.PRES.CSEL = Local0",
        "\\_SB.PRES.CINS == One",
        "CTFY (Local0, One)",
        "\\_SB.PRES.CRMV == One",
        "CTFY (Local0, 0x03)",
    ] {
        assert!(cscn.contains(needle), "CSCN lacks {needle}:\n{cscn}");
    }
    let cej0 = method(&dsl, "CEJ0");
    assert!(cej0.contains("\\_SB.PRES.CEJ0 = One"), "{cej0}");
    let ctfy = method(&dsl, "CTFY");
    assert!(ctfy.contains("Notify (C003, Arg1)"), "{ctfy}");
    let evt = method(&dsl, "_EVT");
    assert!(evt.contains("Local0 = GDAT"), "{evt}");
    assert!(evt.contains("\\_SB.CPUS.CSCN ()"), "{evt}");
    // Each processor's methods call the shared ones with its own UID.
    let c2 = &dsl[dsl.find("Device (C002)").unwrap()..];
    let c2 = &c2[..c2[1..].find("Device (").map_or(c2.len(), |e| e + 1)];
    assert!(c2.contains("CSTA (0x02)"), "{c2}");
    assert!(c2.contains("CEJ0 (0x02)"), "{c2}");
    assert!(c2.contains("_MAT"), "{c2}");
}
