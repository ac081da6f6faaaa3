//! From parsed xl.cfg settings to a [`DomainConfig`]: one handler per key, type checks, defaults,
//! cross-key rules (maxmem >= memory, maxvcpus >= vcpus, unique vdevs and devids, cmdline composition)
//! and warnings for keys Domus keeps but does not use.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::cpus::CpusSpec;
use crate::disk::{DiskConfig, DiskSpec};
use crate::domain::{Action, DomainConfig, DomainType, MAX_VCPUS};
use crate::error::{ConfigError, ConfigErrorKind, Location};
use crate::keys::{self, KeyClass};
use crate::parser::{parse_into, AUTORESTART_ADVICE};
use crate::pci::PciSpec;
use crate::units::{self, MAX_MIB};
use crate::value::{Setting, Spanned, Value, XlConfig};
use crate::vif::{VifConfig, VifSpec};

/// The source name used in locations of `KEY=VALUE` overrides (their line is their position, from 1).
pub const OVERRIDE_SOURCE: &str = "command line";

impl DomainConfig {
    /// Parses xl.cfg `text` read from `source_name`, then each of `overrides` (`KEY=VALUE` lines, as
    /// xl appends them), and builds the typed configuration.
    ///
    /// `source_name` is used in error locations and, without its directories, as the default domain
    /// name. Relative paths in the config stay as written.
    ///
    /// # Errors
    /// The first problem found, as a located [`ConfigError`].
    ///
    /// # Examples
    /// ```
    /// let cfg = domus_config::DomainConfig::from_xl(
    ///     "/etc/xen/foo",
    ///     "memory = 1024\ndisk = [ 'file:/n0/xen/foo-wd0,0x0,w' ]\n",
    ///     &["vcpus=2".to_string()],
    /// )
    /// .unwrap();
    /// assert_eq!(cfg.name, "foo");
    /// assert_eq!((cfg.memory_mib, cfg.vcpus), (1024, 2));
    /// assert_eq!(cfg.disks[0].devnum, 0);
    /// ```
    pub fn from_xl(
        source_name: &str,
        text: &str,
        overrides: &[String],
    ) -> Result<DomainConfig, ConfigError> {
        let source: Arc<str> = Arc::from(source_name);
        let mut xl = XlConfig::default();
        parse_into(&mut xl, &source, text, 1)?;
        let override_source: Arc<str> = Arc::from(OVERRIDE_SOURCE);
        for (i, line) in overrides.iter().enumerate() {
            let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
            parse_into(&mut xl, &override_source, line, n)?;
        }
        Self::from_parsed(source_name, &xl)
    }

    /// Builds the typed configuration from parsed settings (see [`DomainConfig::from_xl`]).
    ///
    /// # Errors
    /// The first problem found, as a located [`ConfigError`].
    pub fn from_parsed(source_name: &str, xl: &XlConfig) -> Result<DomainConfig, ConfigError> {
        let mut b = Builder {
            cfg: DomainConfig::with_defaults(&default_name(source_name)),
            source: Arc::from(source_name),
            memory: None,
            maxmem: None,
            maxvcpus: None,
            type_set: false,
            builder: None,
            root: None,
            extra: None,
            cmdline: None,
            devnums: HashMap::new(),
            devids: HashMap::new(),
        };
        for setting in &xl.settings {
            b.setting(setting)?;
        }
        b.finish()
    }
}

/// The default domain name: the file's name without its directories.
fn default_name(source_name: &str) -> String {
    Path::new(source_name).file_name().map_or_else(
        || source_name.to_owned(),
        |n| n.to_string_lossy().into_owned(),
    )
}

struct Builder {
    cfg: DomainConfig,
    source: Arc<str>,
    memory: Option<(u64, Location)>,
    maxmem: Option<(u64, Location)>,
    maxvcpus: Option<(u32, Location)>,
    type_set: bool,
    builder: Option<(DomainType, Location)>,
    root: Option<(String, Location)>,
    extra: Option<(String, Location)>,
    cmdline: Option<(String, Location)>,
    /// Device number -> index of the disk using it.
    devnums: HashMap<u32, usize>,
    /// devid -> index of the vif using it.
    devids: HashMap<u32, usize>,
}

fn err(s: &Setting, at: &Location, kind: ConfigErrorKind) -> ConfigError {
    ConfigError::for_key(at.clone(), &s.key, kind)
}

fn wrong_type(s: &Setting, expected: &'static str) -> ConfigError {
    err(
        s,
        &s.value.location,
        ConfigErrorKind::WrongType {
            expected,
            found: s.value.value.type_name(),
        },
    )
}

/// A string value; numbers count as strings (libxlu stores both as text).
fn string(s: &Setting) -> Result<String, ConfigError> {
    match &s.value.value {
        Value::Str(v) => Ok(v.clone()),
        Value::Num(_, text) => Ok(text.clone()),
        Value::List(_) => Err(wrong_type(s, "a string")),
    }
}

/// A number; a quoted number is accepted too (libxl reads both with strtol).
fn number(s: &Setting) -> Result<u64, ConfigError> {
    match &s.value.value {
        Value::Num(n, _) => Ok(*n),
        Value::Str(text) => crate::lexer::parse_number(text.trim()).ok_or_else(|| {
            err(
                s,
                &s.value.location,
                ConfigErrorKind::InvalidValue {
                    expected: "a number".into(),
                    found: text.clone(),
                },
            )
        }),
        Value::List(_) => Err(wrong_type(s, "a number")),
    }
}

/// A list whose elements are strings (numbers allowed, as text).
fn strings(s: &Setting) -> Result<Vec<Spanned<String>>, ConfigError> {
    let Value::List(items) = &s.value.value else {
        return Err(wrong_type(s, "a list of strings"));
    };
    items
        .iter()
        .map(|item| match &item.value {
            Value::Str(v) | Value::Num(_, v) => Ok(Spanned {
                value: v.clone(),
                location: item.location.clone(),
            }),
            Value::List(_) => Err(err(
                s,
                &item.location,
                ConfigErrorKind::WrongType {
                    expected: "a string in this list",
                    found: "list",
                },
            )),
        })
        .collect()
}

/// A string or a list of strings.
fn string_or_list(s: &Setting) -> Result<Vec<String>, ConfigError> {
    match &s.value.value {
        Value::List(_) => Ok(strings(s)?.into_iter().map(|i| i.value).collect()),
        _ => Ok(vec![string(s)?]),
    }
}

fn invalid(s: &Setting, expected: &str, found: &str) -> ConfigError {
    err(
        s,
        &s.value.location,
        ConfigErrorKind::InvalidValue {
            expected: expected.into(),
            found: found.into(),
        },
    )
}

impl Builder {
    fn warn(&mut self, at: &Location, message: String) {
        self.cfg
            .warnings
            .push(format!("{}:{}: {message}", at.source, at.line));
    }

    fn setting(&mut self, s: &Setting) -> Result<(), ConfigError> {
        let at = s.value.location.clone();
        let origin = Some(at.to_string());
        let o = &mut self.cfg.origins;
        match s.key.as_str() {
            "type" => o.domain_type = origin,
            "builder" if o.domain_type.is_none() => o.domain_type = origin,
            "kernel" => o.kernel = origin,
            "ramdisk" => o.ramdisk = origin,
            "memory" => o.memory = origin,
            "maxmem" => o.maxmem = origin,
            "vcpus" => o.vcpus = origin,
            "maxvcpus" => o.maxvcpus = origin,
            "bootloader" => o.bootloader = origin,
            "pci" => o.pci = origin,
            "disk" => {
                o.disk = origin;
                o.disks.clear();
            }
            _ => {}
        }
        match s.key.as_str() {
            "name" => self.cfg.name = string(s)?,
            "uuid" => {
                let uuid = string(s)?;
                if !crate::random::is_uuid(&uuid) {
                    return Err(invalid(
                        s,
                        "a UUID such as 6f1c2e0a-93c5-4b6e-9f33-2d6f0b1e4a57",
                        &uuid,
                    ));
                }
                self.cfg.uuid = uuid.to_ascii_lowercase();
            }
            "type" => {
                let text = string(s)?;
                self.cfg.domain_type = match text.as_str() {
                    "pv" => DomainType::Pv,
                    "pvh" => DomainType::Pvh,
                    "hvm" => DomainType::Hvm,
                    _ => return Err(invalid(s, "pv, pvh or hvm", &text)),
                };
                self.type_set = true;
            }
            "builder" => {
                let text = string(s)?;
                let t = match text.as_str() {
                    "generic" => DomainType::Pv,
                    "hvm" => DomainType::Hvm,
                    _ => {
                        return Err(invalid(
                            s,
                            "generic or hvm (better: type = \"pv\"/\"hvm\")",
                            &text,
                        ))
                    }
                };
                self.warn(
                    &at,
                    format!(
                        "`builder` is deprecated: write type = \"{}\" instead",
                        t.as_str()
                    ),
                );
                self.builder = Some((t, at));
            }
            "memory" | "maxmem" => {
                let mib = self.mib(s)?;
                if s.key == "memory" {
                    self.memory = Some((mib, at));
                } else {
                    self.maxmem = Some((mib, at));
                }
            }
            "vcpus" => self.cfg.vcpus = vcpu_count(s)?,
            "maxvcpus" => self.maxvcpus = Some((vcpu_count(s)?, at)),
            "cpus" => self.cfg.cpus = Some(cpus(s)?),
            "cpus_soft" => self.cfg.cpus_soft = Some(cpus(s)?),
            "cpu_weight" => {
                let n = number(s)?;
                let w = u32::try_from(n)
                    .ok()
                    .filter(|w| (1..=65535).contains(w))
                    .ok_or_else(|| invalid(s, "a weight between 1 and 65535", &n.to_string()))?;
                self.cfg.cpu_weight = Some(w);
            }
            "cpu_cap" => {
                let n = number(s)?;
                let c = u32::try_from(n)
                    .ok()
                    .filter(|c| *c <= 65535)
                    .ok_or_else(|| {
                        invalid(
                            s,
                            "a cap between 0 and 65535 (percent of one CPU)",
                            &n.to_string(),
                        )
                    })?;
                self.cfg.cpu_cap = Some(c);
            }
            "kernel" => self.cfg.kernel = Some(string(s)?),
            "ramdisk" => self.cfg.ramdisk = Some(string(s)?),
            "cmdline" => self.cmdline = Some((string(s)?, at)),
            "root" => self.root = Some((string(s)?, at)),
            "extra" => self.extra = Some((string(s)?, at)),
            "bootloader" => self.cfg.bootloader = Some(string(s)?),
            "bootloader_args" => {
                self.cfg.bootloader_args = match &s.value.value {
                    Value::List(_) => strings(s)?.into_iter().map(|i| i.value).collect(),
                    _ => {
                        let text = string(s)?;
                        self.warn(
                            &at,
                            "bootloader_args as a string is deprecated: write a list of arguments"
                                .into(),
                        );
                        text.split_whitespace().map(str::to_owned).collect()
                    }
                };
            }
            "on_poweroff" => self.cfg.on_poweroff = action(s)?,
            "on_reboot" => self.cfg.on_reboot = action(s)?,
            "on_crash" => self.cfg.on_crash = action(s)?,
            "on_watchdog" => self.cfg.on_watchdog = action(s)?,
            "disk" => self.disks(s)?,
            "vif" => self.vifs(s)?,
            "pci" => {
                for item in strings(s)? {
                    let spec: PciSpec = item
                        .value
                        .parse()
                        .map_err(|e| err(s, &item.location, ConfigErrorKind::Pci(e)))?;
                    self.cfg.pci.push(spec);
                }
            }
            "serial" => self.cfg.serial = string_or_list(s)?,
            "nics" => {
                number(s)?;
                self.warn(
                    &at,
                    "`nics` is an xm setting that xl ignores: interfaces come from `vif`".into(),
                );
            }
            "autorestart" | "restart" => {
                return Err(err(
                    s,
                    &at,
                    ConfigErrorKind::XmKey {
                        found: format!("{} = {}", s.key, s.value.value),
                        write: AUTORESTART_ADVICE,
                    },
                ))
            }
            _ => self.other(s),
        }
        Ok(())
    }

    fn other(&mut self, s: &Setting) {
        let at = s.key_location.clone();
        let message = match keys::classify(&s.key) {
            KeyClass::Domus => None,
            KeyClass::NotImplemented => Some(format!(
                "key `{}` is an xl setting Domus does not implement: ignored",
                s.key
            )),
            KeyClass::Unknown => Some(match keys::suggest(&s.key) {
                Some(near) => format!(
                    "unknown key `{}`: kept but not used; did you mean `{near}`?",
                    s.key
                ),
                None => format!("unknown key `{}`: kept but not used", s.key),
            }),
        };
        if let Some(message) = message {
            self.warn(&at, message);
        }
        self.cfg
            .other_keys
            .insert(s.key.clone(), s.value.value.to_plain());
    }

    fn mib(&self, s: &Setting) -> Result<u64, ConfigError> {
        let at = &s.value.location;
        let mib = match &s.value.value {
            Value::Str(text) => {
                units::parse_mib(text).map_err(|e| err(s, at, ConfigErrorKind::Units(e)))?
            }
            _ => number(s)?,
        };
        if mib == 0 || mib > MAX_MIB {
            return Err(invalid(
                s,
                "a size in MiB between 1 and 2^44",
                &mib.to_string(),
            ));
        }
        Ok(mib)
    }

    fn disks(&mut self, s: &Setting) -> Result<(), ConfigError> {
        for item in strings(s)? {
            let wrap = |e| err(s, &item.location, ConfigErrorKind::Disk(e));
            let spec: DiskSpec = item.value.parse().map_err(wrap)?;
            let disk = DiskConfig::try_from(&spec).map_err(wrap)?;
            if let Some(&first) = self.devnums.get(&disk.devnum) {
                let first_vdev = self
                    .cfg
                    .disks
                    .get(first)
                    .map(|d| d.vdev.clone())
                    .unwrap_or_default();
                return Err(err(
                    s,
                    &item.location,
                    ConfigErrorKind::DuplicateVdev {
                        vdev: disk.vdev.clone(),
                        devnum: disk.devnum,
                        first,
                        first_vdev,
                    },
                ));
            }
            self.devnums.insert(disk.devnum, self.cfg.disks.len());
            if !spec.ignored.is_empty() {
                self.warn(
                    &item.location,
                    format!("disk `{}`: ignoring {}", disk.vdev, spec.ignored.join(", ")),
                );
            }
            self.cfg.disks.push(disk);
            self.cfg.origins.disks.push(item.location.to_string());
        }
        Ok(())
    }

    fn vifs(&mut self, s: &Setting) -> Result<(), ConfigError> {
        for (index, item) in strings(s)?.into_iter().enumerate() {
            let spec: VifSpec = item
                .value
                .parse()
                .map_err(|e| err(s, &item.location, ConfigErrorKind::Vif(e)))?;
            let vif = VifConfig::resolve(&spec, u32::try_from(index).unwrap_or(u32::MAX));
            if let Some(&first) = self.devids.get(&vif.devid) {
                return Err(err(
                    s,
                    &item.location,
                    ConfigErrorKind::DuplicateDevid {
                        devid: vif.devid,
                        first,
                    },
                ));
            }
            self.devids.insert(vif.devid, self.cfg.vifs.len());
            self.cfg.vifs.push(vif);
        }
        Ok(())
    }

    fn finish(mut self) -> Result<DomainConfig, ConfigError> {
        if let Some((t, at)) = self.builder.take() {
            if self.type_set {
                self.warn(&at, "`builder` ignored in favour of `type`".into());
            } else {
                self.cfg.domain_type = t;
            }
        }
        if let Some((mib, _)) = self.memory {
            self.cfg.memory_mib = mib;
        }
        self.cfg.maxmem_mib = self.cfg.memory_mib;
        if let Some((mib, at)) = self.maxmem.take() {
            if mib < self.cfg.memory_mib {
                return Err(ConfigError::for_key(
                    at,
                    "maxmem",
                    ConfigErrorKind::InvalidValue {
                        expected: format!("maxmem >= memory ({} MiB)", self.cfg.memory_mib),
                        found: format!("{mib} MiB"),
                    },
                ));
            }
            self.cfg.maxmem_mib = mib;
        }
        self.cfg.maxvcpus = self.cfg.vcpus;
        if let Some((n, at)) = self.maxvcpus.take() {
            if n < self.cfg.vcpus {
                return Err(ConfigError::for_key(
                    at,
                    "maxvcpus",
                    ConfigErrorKind::InvalidValue {
                        expected: format!("maxvcpus >= vcpus ({})", self.cfg.vcpus),
                        found: n.to_string(),
                    },
                ));
            }
            self.cfg.maxvcpus = n;
        }
        self.compose_cmdline();
        if self.cfg.name.is_empty() {
            return Err(ConfigError::for_key(
                Location::new(&self.source, 1, 1),
                "name",
                ConfigErrorKind::InvalidValue {
                    expected: "a non-empty domain name (name = \"...\")".into(),
                    found: String::new(),
                },
            ));
        }
        Ok(self.cfg)
    }

    /// xl: `cmdline` wins (root/extra are then ignored with a warning), else `root=ROOT EXTRA`.
    fn compose_cmdline(&mut self) {
        let root = self.root.take();
        let extra = self.extra.take();
        if let Some((cmdline, _)) = self.cmdline.take() {
            if let Some((_, at)) = root.as_ref().or(extra.as_ref()) {
                let at = at.clone();
                self.warn(
                    &at,
                    "ignoring root= and extra= in favour of cmdline=".into(),
                );
            }
            self.cfg.cmdline = Some(cmdline);
            return;
        }
        self.cfg.cmdline = match (root, extra) {
            (Some((r, _)), Some((e, _))) => Some(format!("root={r} {e}")),
            (Some((r, _)), None) => Some(format!("root={r}")),
            (None, Some((e, _))) => Some(e),
            (None, None) => None,
        };
    }
}

/// `cpus`/`cpus_soft`: one spec, or a list with one spec per vCPU; each item checked where it is.
fn cpus(s: &Setting) -> Result<crate::CpusConfig, ConfigError> {
    match &s.value.value {
        Value::List(_) => {
            let items = strings(s)?;
            for item in &items {
                item.value
                    .parse::<CpusSpec>()
                    .map_err(|e| err(s, &item.location, ConfigErrorKind::Cpus(e)))?;
            }
            Ok(crate::CpusConfig::PerVcpu(
                items.into_iter().map(|i| i.value).collect(),
            ))
        }
        _ => {
            let text = string(s)?;
            text.parse::<CpusSpec>()
                .map_err(|e| err(s, &s.value.location, ConfigErrorKind::Cpus(e)))?;
            Ok(crate::CpusConfig::All(text))
        }
    }
}

fn vcpu_count(s: &Setting) -> Result<u32, ConfigError> {
    let n = number(s)?;
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=MAX_VCPUS).contains(n))
        .ok_or_else(|| invalid(s, "a vCPU count between 1 and 1024", &n.to_string()))
}

fn action(s: &Setting) -> Result<Action, ConfigError> {
    let text = string(s)?;
    Action::parse(&text).ok_or_else(|| {
        invalid(
            s,
            "destroy, restart, rename-restart, preserve, coredump-destroy or coredump-restart",
            &text,
        )
    })
}
