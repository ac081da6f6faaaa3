//! Printing a [`DomainConfig`] back as xl.cfg text.
//!
//! The output states every value explicitly (generated uuid and MACs included), so parsing it again
//! gives an equal configuration (warnings aside): the round-trip the sample tests check.

use std::fmt::Write as _;

use crate::disk::DiskSpec;
use crate::domain::DomainConfig;
use crate::value::quoted;
use crate::vif::VifSpec;

fn list(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.map(|i| format!("    {},\n", quoted(&i))).collect();
    format!("[\n{}]", items.concat())
}

impl DomainConfig {
    /// This configuration as xl.cfg text (see the module docs).
    pub fn to_xl(&self) -> String {
        let mut out = String::new();
        let mut line = |key: &str, value: String| {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "{key} = {value}");
        };
        line("name", quoted(&self.name));
        line("uuid", quoted(&self.uuid));
        line("type", quoted(self.domain_type.as_str()));
        line("memory", self.memory_mib.to_string());
        line("maxmem", self.maxmem_mib.to_string());
        line("vcpus", self.vcpus.to_string());
        line("maxvcpus", self.maxvcpus.to_string());
        for (key, value) in [("cpus", &self.cpus), ("cpus_soft", &self.cpus_soft)] {
            match value {
                Some(crate::CpusConfig::All(v)) => line(key, quoted(v)),
                Some(crate::CpusConfig::PerVcpu(v)) => line(key, list(v.iter().cloned())),
                None => {}
            }
        }
        for (key, value) in [("cpu_weight", self.cpu_weight), ("cpu_cap", self.cpu_cap)] {
            if let Some(v) = value {
                line(key, v.to_string());
            }
        }
        let optional = [
            ("kernel", &self.kernel),
            ("ramdisk", &self.ramdisk),
            ("cmdline", &self.cmdline),
            ("bootloader", &self.bootloader),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                line(key, quoted(v));
            }
        }
        if !self.bootloader_args.is_empty() {
            line(
                "bootloader_args",
                list(self.bootloader_args.iter().cloned()),
            );
        }
        line("on_poweroff", quoted(self.on_poweroff.as_str()));
        line("on_reboot", quoted(self.on_reboot.as_str()));
        line("on_crash", quoted(self.on_crash.as_str()));
        line("on_watchdog", quoted(self.on_watchdog.as_str()));
        if !self.disks.is_empty() {
            line(
                "disk",
                list(self.disks.iter().map(|d| DiskSpec::from(d).to_string())),
            );
        }
        if !self.vifs.is_empty() {
            line(
                "vif",
                list(self.vifs.iter().map(|v| VifSpec::from(v).to_string())),
            );
        }
        if !self.pci.is_empty() {
            line("pci", list(self.pci.iter().map(ToString::to_string)));
        }
        if !self.serial.is_empty() {
            line("serial", list(self.serial.iter().cloned()));
        }
        for (key, value) in &self.other_keys {
            line(key, value.to_string());
        }
        out
    }
}
