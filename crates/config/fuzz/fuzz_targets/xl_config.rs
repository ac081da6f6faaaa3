//! Fuzzes the xl.cfg parser and the disk, vif, pci and cpus spec parsers with arbitrary text.
//!
//! Besides "never panic, never hang", it checks the round-trip properties the crate promises:
//! a parsed file prints back to text that parses to the same settings; a built DomainConfig prints back
//! (to_xl) to a config that builds the same DomainConfig; every spec prints back to an equal spec.
//! Seed the corpus with real configs (examples/, crates/config/tests/data/) so inputs are mostly valid.
#![no_main]

use domus_config::{CpusSpec, DiskConfig, DiskSpec, DomainConfig, PciSpec, VifSpec};
use libfuzzer_sys::fuzz_target;

fn check_config(text: &str) {
    if let Ok(parsed) = domus_config::parse("fuzz.cfg", text) {
        let printed = parsed.to_string();
        let again = domus_config::parse("fuzz.cfg", &printed)
            .unwrap_or_else(|e| panic!("printed config does not parse: {e}\n{printed}"));
        assert_eq!(again, parsed, "settings changed through print:\n{printed}");
    }
    if let Ok(cfg) = DomainConfig::from_xl("fuzz.cfg", text, &[]) {
        let printed = cfg.to_xl();
        let mut again = DomainConfig::from_xl("fuzz.cfg", &printed, &[])
            .unwrap_or_else(|e| panic!("to_xl output does not build: {e}\n{printed}"));
        let mut want = cfg.clone();
        want.warnings.clear();
        again.warnings.clear();
        assert_eq!(again, want, "config changed through to_xl:\n{printed}");
    }
}

fn check_specs(line: &str) {
    if let Ok(spec) = line.parse::<DiskSpec>() {
        let printed = spec.to_string();
        assert_eq!(printed.parse::<DiskSpec>().as_ref(), Ok(&spec), "disk {line:?} -> {printed:?}");
        let disk = DiskConfig::try_from(&spec).expect("a parsed disk spec resolves");
        let explicit = DiskSpec::from(&disk).to_string();
        let back = explicit.parse::<DiskSpec>().expect("explicit disk spec parses");
        assert_eq!(DiskConfig::try_from(&back).as_ref(), Ok(&disk), "{explicit}");
    }
    if let Ok(spec) = line.parse::<VifSpec>() {
        let printed = spec.to_string();
        assert_eq!(printed.parse::<VifSpec>().as_ref(), Ok(&spec), "vif {line:?} -> {printed:?}");
    }
    if let Ok(spec) = line.parse::<PciSpec>() {
        let printed = spec.to_string();
        assert_eq!(printed.parse::<PciSpec>().as_ref(), Ok(&spec), "pci {line:?} -> {printed:?}");
    }
    if let Ok(spec) = line.parse::<CpusSpec>() {
        let printed = spec.to_string();
        assert_eq!(printed.parse::<CpusSpec>().as_ref(), Ok(&spec), "cpus {line:?} -> {printed:?}");
        let _ = spec.resolve(64);
    }
    let _ = domus_config::vdev::devnum(line);
    let _ = domus_config::units::parse_mib(line);
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_config(text);
    for line in text.lines().take(64) {
        check_specs(line);
        // Also as the strings of a disk/vif list, so spec errors travel through the config path.
        let wrapped = format!("disk = [ {0:?} ]\nvif = [ {0:?} ]\npci = [ {0:?} ]\n", line);
        let _ = DomainConfig::from_xl("fuzz.cfg", &wrapped, &[]);
    }
});
