//! PCI passthrough specs (xl-pci-configuration(5)): `[DDDD:]BB:DD.F[@VSLOT][,KEY=VALUE...]`, or the keyed
//! form `bdf=[DDDD:]BB:DD.F[,vslot=VSLOT][,KEY=VALUE...]`. Numbers are hex. Options: `permissive`,
//! `msitranslate`, `seize`, `power_mgmt` (0 or 1) and `rdm_policy` (`strict` or `relaxed`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A malformed pci spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PciSpecError {
    /// The address is not `[DDDD:]BB:DD.F`.
    #[error("invalid PCI address `{found}`: expected [DDDD:]BB:DD.F in hex (device <= 1f, function <= 7), e.g. 0000:03:00.0")]
    BadAddress {
        /// The address found.
        found: String,
    },
    /// A bad virtual slot.
    #[error("invalid PCI vslot `{found}`: expected a hex slot <= 1f")]
    BadVslot {
        /// The slot found.
        found: String,
    },
    /// An unknown option.
    #[error("unknown PCI option `{found}`: expected permissive=, msitranslate=, seize=, power_mgmt=, rdm_policy= or vslot=")]
    UnknownOption {
        /// The option found.
        found: String,
    },
    /// An option with a bad value.
    #[error("invalid value in PCI option `{found}`: expected {expected}")]
    BadOption {
        /// The option found.
        found: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// An option given twice.
    #[error("PCI option `{param}` is specified twice: expected each at most once")]
    Duplicate {
        /// The option's name.
        param: String,
    },
}

/// A PCI device to pass through. Also the resolved form ([`PciConfig`]): the `-N` JSON's `pci[]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciSpec {
    /// PCI segment (domain), default 0.
    pub domain: u16,
    /// Bus.
    pub bus: u8,
    /// Device (slot), <= 0x1f.
    pub dev: u8,
    /// Function, <= 7.
    pub func: u8,
    /// Virtual slot in the guest, if requested.
    #[serde(default)]
    pub vslot: Option<u8>,
    /// Validated options (`permissive`, `msitranslate`, `seize`, `power_mgmt`, `rdm_policy`).
    pub options: BTreeMap<String, String>,
}

/// The resolved PCI device is the spec itself: there is nothing to default.
pub type PciConfig = PciSpec;

fn hex_field(text: &str, max_digits: usize, max: u32) -> Option<u32> {
    if text.is_empty() || text.len() > max_digits || !text.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(text, 16).ok().filter(|&v| v <= max)
}

fn parse_address(text: &str) -> Option<(u16, u8, u8, u8)> {
    let (slot, func) = text.rsplit_once('.')?;
    let parts: Vec<&str> = slot.split(':').collect();
    let (domain, bus, dev) = match parts.as_slice() {
        [bus, dev] => ("0", *bus, *dev),
        [domain, bus, dev] => (*domain, *bus, *dev),
        _ => return None,
    };
    let domain = u16::try_from(hex_field(domain, 4, 0xffff)?).ok()?;
    let bus = u8::try_from(hex_field(bus, 2, 0xff)?).ok()?;
    let dev = u8::try_from(hex_field(dev, 2, 0x1f)?).ok()?;
    let func = u8::try_from(hex_field(func, 1, 7)?).ok()?;
    Some((domain, bus, dev, func))
}

fn parse_vslot(text: &str) -> Result<u8, PciSpecError> {
    hex_field(text, 2, 0x1f)
        .and_then(|v| u8::try_from(v).ok())
        .ok_or_else(|| PciSpecError::BadVslot { found: text.into() })
}

impl FromStr for PciSpec {
    type Err = PciSpecError;

    fn from_str(s: &str) -> Result<Self, PciSpecError> {
        let mut items = s.split(',').map(str::trim);
        let first = items.next().unwrap_or_default();
        let bdf = first.strip_prefix("bdf=").unwrap_or(first);
        let (address, vslot) = match bdf.split_once('@') {
            Some((a, v)) => (a, Some(parse_vslot(v)?)),
            None => (bdf, None),
        };
        let (domain, bus, dev, func) =
            parse_address(address).ok_or_else(|| PciSpecError::BadAddress {
                found: address.into(),
            })?;
        let mut spec = PciSpec {
            domain,
            bus,
            dev,
            func,
            vslot,
            options: BTreeMap::new(),
        };
        for item in items {
            if item.is_empty() {
                continue;
            }
            let Some((key, value)) = item.split_once('=') else {
                return Err(PciSpecError::UnknownOption { found: item.into() });
            };
            let (key, value) = (key.trim(), value.trim());
            if key == "vslot" {
                if spec.vslot.is_some() {
                    return Err(PciSpecError::Duplicate { param: key.into() });
                }
                spec.vslot = Some(parse_vslot(value)?);
                continue;
            }
            let expected = match key {
                "permissive" | "msitranslate" | "seize" | "power_mgmt" => {
                    (value == "0" || value == "1").then_some(()).ok_or("0 or 1")
                }
                "rdm_policy" => (value == "strict" || value == "relaxed")
                    .then_some(())
                    .ok_or("strict or relaxed"),
                _ => return Err(PciSpecError::UnknownOption { found: item.into() }),
            };
            if let Err(expected) = expected {
                return Err(PciSpecError::BadOption {
                    found: item.into(),
                    expected,
                });
            }
            if spec.options.insert(key.into(), value.into()).is_some() {
                return Err(PciSpecError::Duplicate { param: key.into() });
            }
        }
        Ok(spec)
    }
}

impl fmt::Display for PciSpec {
    /// Canonical form: `DDDD:BB:DD.F[@VSLOT][,key=value...]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.dev, self.func
        )?;
        if let Some(vslot) = self.vslot {
            write!(f, "@{vslot:02x}")?;
        }
        for (k, v) in &self.options {
            write!(f, ",{k}={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_specs() {
        type Row = (
            &'static str,
            (u16, u8, u8, u8),
            Option<u8>,
            &'static [(&'static str, &'static str)],
        );
        let cases: &[Row] = &[
            ("03:00.0", (0, 3, 0, 0), None, &[]),
            ("0000:03:00.0", (0, 3, 0, 0), None, &[]),
            ("0001:ff:1f.7", (1, 0xff, 0x1f, 7), None, &[]),
            ("02:01.1@5", (0, 2, 1, 1), Some(5), &[]),
            (
                "02:01.1@1f,permissive=1",
                (0, 2, 1, 1),
                Some(0x1f),
                &[("permissive", "1")],
            ),
            (
                "0000:0a:00.0,msitranslate=0, seize=1,power_mgmt=1,rdm_policy=relaxed",
                (0, 0xa, 0, 0),
                None,
                &[
                    ("msitranslate", "0"),
                    ("power_mgmt", "1"),
                    ("rdm_policy", "relaxed"),
                    ("seize", "1"),
                ],
            ),
            ("bdf=0000:03:00.0,vslot=3", (0, 3, 0, 0), Some(3), &[]),
            (
                "bdf=03:00.0,permissive=0",
                (0, 3, 0, 0),
                None,
                &[("permissive", "0")],
            ),
        ];
        for (text, (d, b, dev, func), vslot, opts) in cases {
            let spec: PciSpec = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                (spec.domain, spec.bus, spec.dev, spec.func),
                (*d, *b, *dev, *func),
                "{text}"
            );
            assert_eq!(spec.vslot, *vslot, "{text}");
            let got: Vec<(&str, &str)> = spec
                .options
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert_eq!(got, *opts, "{text}");
            assert_eq!(spec.to_string().parse::<PciSpec>().unwrap(), spec, "{text}");
        }
        let json =
            serde_json::to_value("0000:03:00.0,permissive=1".parse::<PciSpec>().unwrap()).unwrap();
        assert_eq!(json["domain"], 0);
        assert_eq!(json["bus"], 3);
        assert_eq!(json["dev"], 0);
        assert_eq!(json["func"], 0);
        assert_eq!(json["options"]["permissive"], "1");
    }

    #[test]
    fn bad_specs() {
        let cases: &[(&str, &str)] = &[
            ("", "invalid PCI address ``"),
            ("03:00", "invalid PCI address `03:00`"),
            ("03:20.0", "invalid PCI address `03:20.0`"),
            ("03:00.8", "invalid PCI address `03:00.8`"),
            ("100:00.0", "invalid PCI address `100:00.0`"),
            ("10000:00:00.0", "invalid PCI address `10000:00:00.0`"),
            ("0:0:0:00.0", "invalid PCI address `0:0:0:00.0`"),
            ("g3:00.0", "invalid PCI address `g3:00.0`"),
            ("03:00.*", "invalid PCI address `03:00.*`"),
            ("03:00.0@20", "invalid PCI vslot `20`"),
            ("03:00.0,foo=1", "unknown PCI option `foo=1`"),
            ("03:00.0,permissive", "unknown PCI option `permissive`"),
            (
                "03:00.0,permissive=yes",
                "invalid value in PCI option `permissive=yes`: expected 0 or 1",
            ),
            (
                "03:00.0,rdm_policy=loose",
                "invalid value in PCI option `rdm_policy=loose`: expected strict or relaxed",
            ),
            (
                "03:00.0,seize=1,seize=0",
                "PCI option `seize` is specified twice",
            ),
            ("03:00.0@1,vslot=2", "PCI option `vslot` is specified twice"),
        ];
        for (text, want) in cases {
            let err = text.parse::<PciSpec>().unwrap_err().to_string();
            assert!(err.starts_with(want), "{text}:\n got {err}\nwant {want}");
        }
    }
}
