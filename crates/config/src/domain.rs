//! The typed domain configuration ([`DomainConfig`]) and its JSON form (issue 2's `-N` dry-run JSON).
//!
//! Defaults are xl's and live here, in one place: type `pv`, memory 32 MiB (libxl's default), maxmem =
//! memory, vcpus 1, maxvcpus = vcpus, on_poweroff `destroy`, on_reboot `restart`, on_crash `destroy`,
//! on_watchdog `destroy`. Building one from xl.cfg text is [`DomainConfig::from_xl`] (see `build.rs`);
//! printing one back as xl.cfg text is [`DomainConfig::to_xl`].

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::disk::DiskConfig;
use crate::pci::PciConfig;
use crate::value::PlainValue;
use crate::vif::VifConfig;

/// Default memory in MiB when `memory` is absent (libxl: 32 MiB).
pub const DEFAULT_MEMORY_MIB: u64 = 32;
/// Largest vCPU count accepted.
pub const MAX_VCPUS: u32 = 1024;

/// Guest type (`type=`, or xm's `builder=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DomainType {
    /// Paravirtualised (xl's default).
    #[default]
    Pv,
    /// PVH.
    Pvh,
    /// Fully virtualised.
    Hvm,
}

impl DomainType {
    /// The name as written in xl.cfg.
    pub fn as_str(self) -> &'static str {
        match self {
            DomainType::Pv => "pv",
            DomainType::Pvh => "pvh",
            DomainType::Hvm => "hvm",
        }
    }
}

/// What to do when the guest powers off, reboots, crashes or its watchdog fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Destroy the domain.
    Destroy,
    /// Destroy it and create it again with the same config.
    Restart,
    /// Rename the old domain, then create a new one.
    RenameRestart,
    /// Keep the domain (paused) for inspection.
    Preserve,
    /// Write a core dump, then destroy.
    CoredumpDestroy,
    /// Write a core dump, then restart.
    CoredumpRestart,
}

impl Action {
    /// All actions with their xl.cfg spelling.
    pub const ALL: [(Action, &'static str); 6] = [
        (Action::Destroy, "destroy"),
        (Action::Restart, "restart"),
        (Action::RenameRestart, "rename-restart"),
        (Action::Preserve, "preserve"),
        (Action::CoredumpDestroy, "coredump-destroy"),
        (Action::CoredumpRestart, "coredump-restart"),
    ];

    /// The xl.cfg spelling.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(a, _)| *a == self)
            .map_or("destroy", |(_, s)| s)
    }

    /// Parses the xl.cfg spelling.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, s)| *s == text).map(|(a, _)| *a)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A domain's configuration, typed and resolved: defaults applied, uuid and MACs generated.
///
/// Its JSON is the dry-run output of `domus create -N` and the input of `domus-vmm --config-json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainConfig {
    /// Domain name (`name`, else the config file's name without directories).
    pub name: String,
    /// Domain UUID (`uuid`, else a random version-4 UUID), lowercase.
    pub uuid: String,
    /// Guest type.
    #[serde(rename = "type")]
    pub domain_type: DomainType,
    /// Initial memory in MiB (`memory`; default 32).
    pub memory_mib: u64,
    /// Maximum memory in MiB (`maxmem`; default = memory).
    pub maxmem_mib: u64,
    /// Initial vCPUs (`vcpus`; default 1).
    pub vcpus: u32,
    /// Maximum vCPUs (`maxvcpus`; default = vcpus).
    pub maxvcpus: u32,
    /// Host CPUs the vCPUs may run on (`cpus`, validated, as written: one spec or one per vCPU).
    pub cpus: Option<crate::CpusConfig>,
    /// Host CPUs the vCPUs prefer (`cpus_soft`, same forms): stored and reported (Linux has no soft
    /// affinity to enforce it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_soft: Option<crate::CpusConfig>,
    /// Scheduler weight (`cpu_weight`, xl's credit weight 1-65535; default 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_weight: Option<u32>,
    /// Scheduler cap (`cpu_cap`, percent of one CPU; default 0 = none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cap: Option<u32>,
    /// Kernel image path (as written).
    pub kernel: Option<String>,
    /// Initial ramdisk path (as written).
    pub ramdisk: Option<String>,
    /// Kernel command line: `cmdline`, else `root=<root> <extra>` as xl composes it.
    pub cmdline: Option<String>,
    /// Bootloader (e.g. pygrub), as written.
    pub bootloader: Option<String>,
    /// Bootloader arguments.
    #[serde(default)]
    pub bootloader_args: Vec<String>,
    /// Action on guest poweroff (default destroy).
    pub on_poweroff: Action,
    /// Action on guest reboot (default restart).
    pub on_reboot: Action,
    /// Action on guest crash (default destroy).
    pub on_crash: Action,
    /// Action when the watchdog fires (default destroy).
    pub on_watchdog: Action,
    /// Disks, in config order.
    pub disks: Vec<DiskConfig>,
    /// Network interfaces, in config order.
    pub vifs: Vec<VifConfig>,
    /// PCI devices to pass through.
    pub pci: Vec<PciConfig>,
    /// Serial ports (`serial`: e.g. `pty`), as written.
    #[serde(default)]
    pub serial: Vec<String>,
    /// Keys Domus does not use (unknown, or xl keys not implemented), kept with their values.
    #[serde(default)]
    pub other_keys: BTreeMap<String, PlainValue>,
    /// Warnings produced while reading the config (`FILE:LINE: message`).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Where the values the host checks were written, so a later check (a missing kernel file, say) can
    /// name `FILE:LINE:COLUMN` even after the config travelled as JSON.
    #[serde(default, skip_serializing_if = "Origins::is_empty")]
    pub origins: Origins,
}

/// Where some of a config's values were written: each is a location as `FILE:LINE:COLUMN` (the file as
/// given, or `command line` for `KEY=VALUE` overrides), `None` when the value is a default.
///
/// Provenance, not content: two `Origins` always compare equal, so configs that say the same thing are
/// equal wherever they were written (as [`crate::value::Spanned`] compares only values).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Origins {
    /// `type` (or `builder`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_type: Option<String>,
    /// `kernel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// `ramdisk`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramdisk: Option<String>,
    /// `memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// `maxmem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxmem: Option<String>,
    /// `vcpus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<String>,
    /// `maxvcpus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxvcpus: Option<String>,
    /// `bootloader`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootloader: Option<String>,
    /// `pci`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci: Option<String>,
    /// `disk`: the `disk` setting itself (used when a count of disks is wrong).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
    /// Each disk's string, in `disks` order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<String>,
}

impl Origins {
    /// No location recorded (a config built in code, or JSON without origins).
    pub fn is_empty(&self) -> bool {
        self.domain_type.is_none()
            && self.kernel.is_none()
            && self.ramdisk.is_none()
            && self.memory.is_none()
            && self.maxmem.is_none()
            && self.vcpus.is_none()
            && self.maxvcpus.is_none()
            && self.bootloader.is_none()
            && self.pci.is_none()
            && self.disk.is_none()
            && self.disks.is_empty()
    }
}

impl PartialEq for Origins {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Origins {}

impl DomainConfig {
    /// A configuration with xl's defaults for `name` (uuid generated, no devices).
    pub fn with_defaults(name: &str) -> Self {
        DomainConfig {
            name: name.to_owned(),
            uuid: crate::random::random_uuid(),
            domain_type: DomainType::Pv,
            memory_mib: DEFAULT_MEMORY_MIB,
            maxmem_mib: DEFAULT_MEMORY_MIB,
            vcpus: 1,
            maxvcpus: 1,
            cpus: None,
            cpus_soft: None,
            cpu_weight: None,
            cpu_cap: None,
            kernel: None,
            ramdisk: None,
            cmdline: None,
            bootloader: None,
            bootloader_args: Vec::new(),
            on_poweroff: Action::Destroy,
            on_reboot: Action::Restart,
            on_crash: Action::Destroy,
            on_watchdog: Action::Destroy,
            disks: Vec::new(),
            vifs: Vec::new(),
            pci: Vec::new(),
            serial: Vec::new(),
            other_keys: BTreeMap::new(),
            warnings: Vec::new(),
            origins: Origins::default(),
        }
    }
}
