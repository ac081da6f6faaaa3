//! Disk specs, as xl-disk-configuration(5) defines them: [`DiskSpec`] (what the user wrote) and
//! [`DiskConfig`] (resolved, defaults applied, device number computed).
//!
//! A spec is a comma-separated series of `key=value` parameters, flags and positional parameters. The
//! positional ones fill, in order, whichever of `target, format, vdev, access` are not yet specified; an
//! empty one specifies its parameter's default. `target=` must come last and takes the rest of the string,
//! commas included. The deprecated form `[PREFIX:]TARGET,VDEV[:cdrom],ACCESS` (the NetBSD HOWTO's
//! `phy:/dev/wd0e,0x1,w`) works too: a prefix skips the format slot; `raw:`, `qcow:`, `qcow2:`, `vhd:` set
//! the format, `iscsi:`, `nbd:`, `enbd:`, `drbd:` set `script=block-NAME`, and `phy:`, `file:`, `tap:`,
//! `tap2:`, `tapdisk:`, `aio:`, `ioemu:` are stripped and ignored. The vdev may carry `:cdrom` / `:disk`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::vdev;

/// Image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// Raw image or block device (the default).
    Raw,
    /// qcow (version 1).
    Qcow,
    /// qcow2.
    Qcow2,
    /// VHD.
    Vhd,
    /// QED.
    Qed,
    /// No medium (an empty cdrom drive).
    Empty,
}

impl DiskFormat {
    /// The name as written in specs.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow => "qcow",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vhd => "vhd",
            DiskFormat::Qed => "qed",
            DiskFormat::Empty => "empty",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "raw" => DiskFormat::Raw,
            "qcow" => DiskFormat::Qcow,
            "qcow2" => DiskFormat::Qcow2,
            "vhd" => DiskFormat::Vhd,
            "qed" => DiskFormat::Qed,
            _ => return None,
        })
    }
}

/// Guest access mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Read-only (`ro` or `r`).
    Ro,
    /// Read-write (`rw` or `w`).
    Rw,
}

/// Device type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DevType {
    /// A disk (the default).
    Disk,
    /// A cdrom drive (read-only by default, may be empty).
    Cdrom,
}

/// Backend implementation requested (`backendtype=`); advisory for Domus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendType {
    /// Kernel block backend.
    Phy,
    /// blktap.
    Tap,
    /// QEMU's qdisk.
    Qdisk,
    /// A standalone backend (Xen 4.16+).
    Standalone,
}

impl BackendType {
    /// The xl.cfg spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendType::Phy => "phy",
            BackendType::Tap => "tap",
            BackendType::Qdisk => "qdisk",
            BackendType::Standalone => "standalone",
        }
    }
}

/// A malformed disk spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiskSpecError {
    /// A `key=value` or flag xl does not define.
    #[error("unknown disk parameter `{found}`: expected format=, vdev=, access=, devtype=, backendtype=, backend=, script=, target= or a flag (cdrom, discard, no-discard, direct-io-safe)")]
    UnknownParameter {
        /// The parameter found.
        found: String,
    },
    /// A parameter given twice (by name or position).
    #[error("disk parameter `{param}` is specified twice (at `{found}`): expected each parameter at most once")]
    Duplicate {
        /// The parameter's name.
        param: &'static str,
        /// The second occurrence.
        found: String,
    },
    /// More than four positional parameters.
    #[error("too many positional disk parameters at `{found}`: expected at most target, format, vdev, access")]
    TooManyPositional {
        /// The extra parameter.
        found: String,
    },
    /// Unknown format.
    #[error("unknown disk format `{found}`: expected raw, qcow, qcow2, vhd or qed")]
    BadFormat {
        /// The format found.
        found: String,
    },
    /// Unknown access mode.
    #[error("invalid disk access `{found}`: expected ro, r, rw or w")]
    BadAccess {
        /// The mode found.
        found: String,
    },
    /// Unknown devtype.
    #[error("invalid devtype `{found}`: expected cdrom or disk")]
    BadDevtype {
        /// The devtype found.
        found: String,
    },
    /// Unknown backendtype.
    #[error("invalid backendtype `{found}`: expected phy, tap, qdisk or standalone")]
    BadBackendtype {
        /// The backendtype found.
        found: String,
    },
    /// No vdev.
    #[error("disk spec `{spec}` has no vdev: expected e.g. `/img,raw,xvda,rw` or vdev=xvda")]
    MissingVdev {
        /// The whole spec.
        spec: String,
    },
    /// vdev not recognised.
    #[error("unknown vdev `{vdev}`: {reason}")]
    BadVdev {
        /// The vdev found.
        vdev: String,
        /// Why it is not valid.
        reason: &'static str,
    },
    /// No target for a non-cdrom disk.
    #[error("disk spec `{spec}` has no target: expected a path (only a cdrom may be empty)")]
    MissingTarget {
        /// The whole spec.
        spec: String,
    },
}

/// A disk spec as the user wrote it (`None` = not given; defaults apply in [`DiskConfig`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskSpec {
    /// Path of the image or device (None for an empty cdrom).
    pub target: Option<String>,
    /// Image format (default raw).
    pub format: Option<DiskFormat>,
    /// Virtual device name (mandatory once parsed).
    pub vdev: Option<String>,
    /// Access (default rw, ro for a cdrom).
    pub access: Option<Access>,
    /// Device type (default disk).
    pub devtype: Option<DevType>,
    /// Requested backend implementation.
    pub backendtype: Option<BackendType>,
    /// Backend domain name (default dom0).
    pub backend: Option<String>,
    /// Hotplug script (`block-NAME` for the deprecated script prefixes).
    pub script: Option<String>,
    /// `discard` / `no-discard` (default discard).
    pub discard: Option<bool>,
    /// `direct-io-safe` flag.
    pub direct_io_safe: bool,
    /// Parameters xl accepts that Domus ignores (COLO, `specification=`, `trusted`), verbatim.
    pub ignored: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Target = 0,
    Format = 1,
    Vdev = 2,
    Access = 3,
}

const SLOT_NAMES: [&str; 4] = ["target", "format", "vdev", "access"];
const SLOTS: [Slot; 4] = [Slot::Target, Slot::Format, Slot::Vdev, Slot::Access];

const FORMAT_PREFIXES: [(&str, DiskFormat); 4] = [
    ("raw", DiskFormat::Raw),
    ("qcow", DiskFormat::Qcow),
    ("qcow2", DiskFormat::Qcow2),
    ("vhd", DiskFormat::Vhd),
];
const SCRIPT_PREFIXES: [&str; 4] = ["iscsi", "nbd", "enbd", "drbd"];
const IGNORED_PREFIXES: [&str; 7] = ["phy", "file", "tap", "tap2", "tapdisk", "aio", "ioemu"];
const IGNORED_KEYS: [&str; 6] = [
    "colo-host",
    "colo-port",
    "colo-export",
    "active-disk",
    "hidden-disk",
    "specification",
];
const IGNORED_FLAGS: [&str; 3] = ["colo", "trusted", "untrusted"];

struct SpecParser {
    spec: DiskSpec,
    specified: [bool; 4],
    had_prefix: bool,
}

impl SpecParser {
    fn mark(&mut self, slot: Slot, found: &str) -> Result<(), DiskSpecError> {
        let i = slot as usize;
        if self.specified[i] {
            return Err(DiskSpecError::Duplicate {
                param: SLOT_NAMES[i],
                found: found.into(),
            });
        }
        self.specified[i] = true;
        Ok(())
    }

    fn set_vdev(&mut self, value: &str, found: &str) -> Result<(), DiskSpecError> {
        self.mark(Slot::Vdev, found)?;
        let (name, devtype) = match value.split_once(':') {
            Some((name, dt)) => (name, Some(dt)),
            None => (value, None),
        };
        if let Some(dt) = devtype {
            let dt = parse_devtype(dt)?;
            self.set_devtype(dt, found)?;
        }
        self.spec.vdev = non_empty(name);
        Ok(())
    }

    fn set_devtype(&mut self, devtype: DevType, found: &str) -> Result<(), DiskSpecError> {
        if self.spec.devtype.is_some() {
            return Err(DiskSpecError::Duplicate {
                param: "devtype",
                found: found.into(),
            });
        }
        self.spec.devtype = Some(devtype);
        Ok(())
    }

    fn keyed(&mut self, key: &str, value: &str, item: &str) -> Result<(), DiskSpecError> {
        let once = |present: bool, param| {
            if present {
                Err(DiskSpecError::Duplicate {
                    param,
                    found: item.into(),
                })
            } else {
                Ok(())
            }
        };
        match key {
            "format" => {
                self.mark(Slot::Format, item)?;
                self.spec.format = parse_format(value)?;
            }
            "vdev" => self.set_vdev(value, item)?,
            "access" => {
                self.mark(Slot::Access, item)?;
                self.spec.access = parse_access(value)?;
            }
            "devtype" => {
                if !value.is_empty() {
                    self.set_devtype(parse_devtype(value)?, item)?;
                }
            }
            "backendtype" => {
                once(self.spec.backendtype.is_some(), "backendtype")?;
                self.spec.backendtype = match value {
                    "" => None,
                    "phy" => Some(BackendType::Phy),
                    "tap" => Some(BackendType::Tap),
                    "qdisk" => Some(BackendType::Qdisk),
                    "standalone" => Some(BackendType::Standalone),
                    _ => {
                        return Err(DiskSpecError::BadBackendtype {
                            found: value.into(),
                        })
                    }
                };
            }
            "backend" => {
                once(self.spec.backend.is_some(), "backend")?;
                self.spec.backend = non_empty(value);
            }
            "script" => {
                once(self.spec.script.is_some(), "script")?;
                self.spec.script = non_empty(value);
            }
            k if IGNORED_KEYS.contains(&k) => self.spec.ignored.push(item.into()),
            _ => return Err(DiskSpecError::UnknownParameter { found: item.into() }),
        }
        Ok(())
    }

    fn flag(&mut self, item: &str) -> Result<bool, DiskSpecError> {
        match item {
            "cdrom" => self.set_devtype(DevType::Cdrom, item)?,
            "discard" | "no-discard" => {
                if self.spec.discard.is_some() {
                    return Err(DiskSpecError::Duplicate {
                        param: "discard",
                        found: item.into(),
                    });
                }
                self.spec.discard = Some(item == "discard");
            }
            "direct-io-safe" => self.spec.direct_io_safe = true,
            f if IGNORED_FLAGS.contains(&f) => self.spec.ignored.push(item.into()),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn target(&mut self, item: &str) -> Result<(), DiskSpecError> {
        self.mark(Slot::Target, item)?;
        let mut rest = item;
        while let Some((prefix, after)) = rest.split_once(':') {
            if let Some(&(_, format)) = FORMAT_PREFIXES.iter().find(|(p, _)| *p == prefix) {
                self.mark(Slot::Format, item)?;
                self.spec.format = Some(format);
            } else if SCRIPT_PREFIXES.contains(&prefix) {
                if self.spec.script.is_some() {
                    return Err(DiskSpecError::Duplicate {
                        param: "script",
                        found: item.into(),
                    });
                }
                self.spec.script = Some(format!("block-{prefix}"));
            } else if !IGNORED_PREFIXES.contains(&prefix) {
                break;
            }
            self.had_prefix = true;
            rest = after.trim_start();
        }
        if self.had_prefix && !self.specified[Slot::Format as usize] {
            // The deprecated syntax has no format slot.
            self.specified[Slot::Format as usize] = true;
        }
        // Trimmed like every item, so that `target=` (which drops leading whitespace) reads it back.
        self.spec.target = non_empty(rest.trim_end());
        Ok(())
    }

    fn positional(&mut self, item: &str) -> Result<(), DiskSpecError> {
        let Some(slot) = SLOTS.into_iter().find(|s| !self.specified[*s as usize]) else {
            return Err(DiskSpecError::TooManyPositional { found: item.into() });
        };
        match slot {
            Slot::Target => self.target(item),
            Slot::Format => {
                // xend's empty cdrom: `,hdc:cdrom,r` puts the vdev where the format would be.
                if self.spec.target.is_none() && item.contains(':') {
                    self.specified[Slot::Format as usize] = true;
                    return self.set_vdev(item, item);
                }
                self.mark(Slot::Format, item)?;
                self.spec.format = parse_format(item)?;
                Ok(())
            }
            Slot::Vdev => self.set_vdev(item, item),
            Slot::Access => {
                self.mark(Slot::Access, item)?;
                self.spec.access = parse_access(item)?;
                Ok(())
            }
        }
    }
}

/// If `item` is `target=VALUE` (spaces allowed around `=`), the rest of the spec after `=`, leading
/// whitespace removed: target= swallows everything, commas included.
fn target_value(item: &str) -> Option<&str> {
    let after = item.strip_prefix("target")?.trim_start();
    after.strip_prefix('=').map(str::trim_start)
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn parse_format(text: &str) -> Result<Option<DiskFormat>, DiskSpecError> {
    if text.is_empty() {
        return Ok(None);
    }
    DiskFormat::parse(text)
        .map(Some)
        .ok_or_else(|| DiskSpecError::BadFormat { found: text.into() })
}

fn parse_access(text: &str) -> Result<Option<Access>, DiskSpecError> {
    match text {
        "" => Ok(None),
        "ro" | "r" => Ok(Some(Access::Ro)),
        "rw" | "w" => Ok(Some(Access::Rw)),
        _ => Err(DiskSpecError::BadAccess { found: text.into() }),
    }
}

fn parse_devtype(text: &str) -> Result<DevType, DiskSpecError> {
    match text {
        "cdrom" => Ok(DevType::Cdrom),
        "disk" => Ok(DevType::Disk),
        _ => Err(DiskSpecError::BadDevtype { found: text.into() }),
    }
}

impl FromStr for DiskSpec {
    type Err = DiskSpecError;

    fn from_str(s: &str) -> Result<Self, DiskSpecError> {
        let mut p = SpecParser {
            spec: DiskSpec::default(),
            specified: [false; 4],
            had_prefix: false,
        };
        let mut rest = s;
        loop {
            let trimmed = rest.trim_start();
            if let Some(target) = target_value(trimmed) {
                p.mark(Slot::Target, trimmed)?;
                p.spec.target = non_empty(target);
                break;
            }
            let (raw, next) = match rest.split_once(',') {
                Some((item, next)) => (item, Some(next)),
                None => (rest, None),
            };
            let item = raw.trim();
            if let Some((key, value)) = item.split_once('=') {
                p.keyed(key.trim(), value.trim(), item)?;
            } else if !p.flag(item)? {
                p.positional(item)?;
            }
            match next {
                Some(next) => rest = next,
                None => break,
            }
        }
        let spec = p.spec;
        let Some(vdev) = &spec.vdev else {
            return Err(DiskSpecError::MissingVdev { spec: s.into() });
        };
        vdev::devnum(vdev).map_err(|reason| DiskSpecError::BadVdev {
            vdev: vdev.clone(),
            reason,
        })?;
        if spec.target.is_none() && spec.devtype != Some(DevType::Cdrom) {
            return Err(DiskSpecError::MissingTarget { spec: s.into() });
        }
        Ok(spec)
    }
}

impl fmt::Display for DiskSpec {
    /// Canonical keyed form, `target=` last: `format=raw, vdev=xvda, access=rw, target=/img`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if let Some(format) = self.format {
            parts.push(format!("format={}", format.as_str()));
        }
        if let Some(vdev) = &self.vdev {
            parts.push(format!("vdev={vdev}"));
        }
        if let Some(access) = self.access {
            parts.push(format!("access={}", access_str(access)));
        }
        if let Some(devtype) = self.devtype {
            parts.push(format!("devtype={}", devtype_str(devtype)));
        }
        if let Some(bt) = self.backendtype {
            parts.push(format!("backendtype={}", bt.as_str()));
        }
        if let Some(backend) = &self.backend {
            parts.push(format!("backend={backend}"));
        }
        if let Some(script) = &self.script {
            parts.push(format!("script={script}"));
        }
        match self.discard {
            Some(true) => parts.push("discard".into()),
            Some(false) => parts.push("no-discard".into()),
            None => {}
        }
        if self.direct_io_safe {
            parts.push("direct-io-safe".into());
        }
        parts.extend(self.ignored.iter().cloned());
        if let Some(target) = &self.target {
            parts.push(format!("target={target}"));
        }
        f.write_str(&parts.join(", "))
    }
}

fn access_str(access: Access) -> &'static str {
    match access {
        Access::Ro => "ro",
        Access::Rw => "rw",
    }
}

fn devtype_str(devtype: DevType) -> &'static str {
    match devtype {
        DevType::Disk => "disk",
        DevType::Cdrom => "cdrom",
    }
}

/// A resolved disk: defaults applied, device number computed. This is the `-N` JSON's `disks[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskConfig {
    /// Path of the image or device as written (relative paths stay relative); null for an empty cdrom.
    pub target: Option<String>,
    /// Image format (`empty` for an empty cdrom).
    pub format: DiskFormat,
    /// The vdev as written (`xvda`, `0x1`, ...).
    pub vdev: String,
    /// The xen-vbd-interface device number of `vdev` (xvda = 51712).
    pub devnum: u32,
    /// `rw` or `ro`.
    pub access: Access,
    /// `disk` or `cdrom`.
    pub devtype: DevType,
    /// Requested backend implementation, if any.
    pub backendtype: Option<BackendType>,
    /// Hotplug script, if any.
    pub script: Option<String>,
    /// Backend domain, if not dom0.
    #[serde(default)]
    pub backend: Option<String>,
    /// Whether discard is advertised (default true).
    #[serde(default = "default_true")]
    pub discard: bool,
    /// `direct-io-safe` given.
    #[serde(default)]
    pub direct_io_safe: bool,
}

fn default_true() -> bool {
    true
}

impl TryFrom<&DiskSpec> for DiskConfig {
    type Error = DiskSpecError;

    fn try_from(spec: &DiskSpec) -> Result<Self, DiskSpecError> {
        let Some(vdev) = spec.vdev.clone() else {
            return Err(DiskSpecError::MissingVdev {
                spec: spec.to_string(),
            });
        };
        let devnum = vdev::devnum(&vdev).map_err(|reason| DiskSpecError::BadVdev {
            vdev: vdev.clone(),
            reason,
        })?;
        let devtype = spec.devtype.unwrap_or(DevType::Disk);
        if spec.target.is_none() && devtype != DevType::Cdrom {
            return Err(DiskSpecError::MissingTarget {
                spec: spec.to_string(),
            });
        }
        let format = match &spec.target {
            None => DiskFormat::Empty,
            Some(_) => spec.format.unwrap_or(DiskFormat::Raw),
        };
        let default_access = match devtype {
            DevType::Cdrom => Access::Ro,
            DevType::Disk => Access::Rw,
        };
        Ok(DiskConfig {
            target: spec.target.clone(),
            format,
            vdev,
            devnum,
            access: spec.access.unwrap_or(default_access),
            devtype,
            backendtype: spec.backendtype,
            script: spec.script.clone(),
            backend: spec.backend.clone(),
            discard: spec.discard.unwrap_or(true),
            direct_io_safe: spec.direct_io_safe,
        })
    }
}

impl From<&DiskConfig> for DiskSpec {
    /// The fully explicit spec of a resolved disk (resolving it again gives the same [`DiskConfig`]).
    fn from(disk: &DiskConfig) -> Self {
        DiskSpec {
            target: disk.target.clone(),
            format: (disk.format != DiskFormat::Empty).then_some(disk.format),
            vdev: Some(disk.vdev.clone()),
            access: Some(disk.access),
            devtype: Some(disk.devtype),
            backendtype: disk.backendtype,
            backend: disk.backend.clone(),
            script: disk.script.clone(),
            discard: Some(disk.discard),
            direct_io_safe: disk.direct_io_safe,
            ignored: Vec::new(),
        }
    }
}

#[cfg(test)]
#[path = "disk_tests.rs"]
mod tests;
