//! vif specs, as xl-network-configuration(5) defines them: [`VifSpec`] (what the user wrote) and
//! [`VifConfig`] (resolved: devid assigned, MAC generated when absent).
//!
//! A spec is a comma-separated list of `key=value` pairs, all optional (`''` is a valid vif): `mac`,
//! `bridge`, `ip`, `script`, `vifname`, `model`, `type` (`ioemu` or `vif`), `rate` (`RATE/s[@INTERVAL]`,
//! RATE with `GB MB KB B` for bytes or `Gb Mb Kb b` for bits, decimal multiples; INTERVAL in `s`, `ms` or
//! `us` (the default unit), default 50 ms), `mtu`, `gatewaydev` (alias `netdev`), `backend`, `devid`.
//! `accel` is accepted and ignored, as in xl.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Default credit interval of a rate limit, in microseconds (xl: 50 ms).
pub const DEFAULT_RATE_INTERVAL_US: u64 = 50_000;

/// A malformed vif spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VifSpecError {
    /// A key xl does not define.
    #[error("unknown vif parameter `{found}`: expected mac=, bridge=, ip=, script=, vifname=, model=, type=, rate=, mtu=, gatewaydev=, backend= or devid=")]
    UnknownParameter {
        /// The parameter found.
        found: String,
    },
    /// A key given twice.
    #[error("vif parameter `{param}` is specified twice: expected each at most once")]
    Duplicate {
        /// The key.
        param: String,
    },
    /// A bad MAC address.
    #[error("invalid MAC address `{found}`: {reason}")]
    BadMac {
        /// The MAC found.
        found: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A bad rate.
    #[error("invalid rate `{found}`: {reason}")]
    BadRate {
        /// The rate found.
        found: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A bad number (mtu, devid).
    #[error("invalid {param} `{found}`: expected {expected}")]
    BadNumber {
        /// The key.
        param: &'static str,
        /// The value found.
        found: String,
        /// The accepted range.
        expected: &'static str,
    },
    /// A bad type.
    #[error("invalid vif type `{found}`: expected ioemu or vif")]
    BadType {
        /// The type found.
        found: String,
    },
}

/// A MAC address. Parses from six colon-separated pairs of hex digits; prints lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// A random address under Xen's OUI 00:16:3e (what xl generates).
    pub fn random_xen() -> Self {
        let r = crate::random::random_u64().to_le_bytes();
        MacAddr([0x00, 0x16, 0x3e, r[0] & 0x7f, r[1], r[2]])
    }
}

impl FromStr for MacAddr {
    type Err = VifSpecError;

    fn from_str(s: &str) -> Result<Self, VifSpecError> {
        let bad = |reason| VifSpecError::BadMac {
            found: s.into(),
            reason,
        };
        const FORM: &str =
            "expected six pairs of hex digits separated by colons, e.g. 00:16:3e:12:34:56";
        let mut out = [0u8; 6];
        let mut groups = s.split(':');
        for byte in &mut out {
            let group = groups.next().ok_or_else(|| bad(FORM))?;
            if group.len() != 2 || !group.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad(FORM));
            }
            *byte = u8::from_str_radix(group, 16).map_err(|_| bad(FORM))?;
        }
        if groups.next().is_some() {
            return Err(bad(FORM));
        }
        if out[0] & 1 == 1 {
            return Err(bad(
                "the multicast bit (bit 0 of the first octet) is set: expected a unicast address",
            ));
        }
        if out == [0; 6] {
            return Err(bad("expected a non-zero address"));
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Outgoing rate limit: `bytes_per_second`, replenished every `interval_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VifRate {
    /// Bytes per second.
    pub bytes_per_second: u64,
    /// Credit interval in microseconds.
    pub interval_us: u64,
}

impl FromStr for VifRate {
    type Err = VifSpecError;

    fn from_str(s: &str) -> Result<Self, VifSpecError> {
        let bad = |reason| VifSpecError::BadRate {
            found: s.into(),
            reason,
        };
        let (rate, interval) = match s.split_once('@') {
            Some((r, i)) => (r, Some(i)),
            None => (s, None),
        };
        let rate = rate
            .strip_suffix("/s")
            .ok_or_else(|| bad("expected RATE/s[@INTERVAL], e.g. 10Mb/s or 1MB/s@20ms"))?;
        let split = rate
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rate.len());
        let (digits, unit) = rate.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| bad("expected a decimal number before the unit"))?;
        let (mult, bits) = match unit {
            "GB" => (1_000_000_000, false),
            "MB" => (1_000_000, false),
            "KB" => (1_000, false),
            "B" | "" => (1, false),
            "Gb" => (1_000_000_000, true),
            "Mb" => (1_000_000, true),
            "Kb" => (1_000, true),
            "b" => (1, true),
            _ => {
                return Err(bad(
                    "expected a unit GB, MB, KB, B (bytes) or Gb, Mb, Kb, b (bits)",
                ))
            }
        };
        let per_second = n.checked_mul(mult).ok_or_else(|| bad("rate too large"))?;
        let bytes_per_second = if bits { per_second / 8 } else { per_second };
        if bytes_per_second == 0 {
            return Err(bad("expected at least 1 byte per second"));
        }
        let interval_us = match interval {
            None => DEFAULT_RATE_INTERVAL_US,
            Some(text) => {
                let split = text
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(text.len());
                let (digits, unit) = text.split_at(split);
                let n: u64 = digits
                    .parse()
                    .map_err(|_| bad("expected a decimal interval after @"))?;
                let mult = match unit {
                    "s" => 1_000_000,
                    "ms" => 1_000,
                    "us" | "" => 1,
                    _ => return Err(bad("expected an interval unit s, ms or us")),
                };
                n.checked_mul(mult)
                    .filter(|&us| us > 0 && us <= u64::from(u32::MAX))
                    .ok_or_else(|| bad("expected an interval between 1us and 4294967295us"))?
            }
        };
        Ok(VifRate {
            bytes_per_second,
            interval_us,
        })
    }
}

impl fmt::Display for VifRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}B/s@{}us", self.bytes_per_second, self.interval_us)
    }
}

/// `type=`: how an HVM guest sees the vif.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VifType {
    /// Emulated and paravirtual.
    Ioemu,
    /// Paravirtual only.
    Vif,
}

/// A vif spec as the user wrote it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VifSpec {
    /// `mac=` (generated under 00:16:3e when absent).
    pub mac: Option<MacAddr>,
    /// `bridge=` (xl's default is xenbr0).
    pub bridge: Option<String>,
    /// `ip=` (space-separated addresses, as written).
    pub ip: Option<String>,
    /// `script=` hotplug script.
    pub script: Option<String>,
    /// `vifname=` backend interface name.
    pub vifname: Option<String>,
    /// `model=` emulated NIC model.
    pub model: Option<String>,
    /// `type=`.
    pub vif_type: Option<VifType>,
    /// `rate=`.
    pub rate: Option<VifRate>,
    /// `mtu=`.
    pub mtu: Option<u32>,
    /// `gatewaydev=` (or `netdev=`).
    pub gatewaydev: Option<String>,
    /// `backend=` domain.
    pub backend: Option<String>,
    /// `devid=` (default: position in the list).
    pub devid: Option<u32>,
}

fn set<T>(slot: &mut Option<T>, value: T, key: &str) -> Result<(), VifSpecError> {
    if slot.is_some() {
        return Err(VifSpecError::Duplicate { param: key.into() });
    }
    *slot = Some(value);
    Ok(())
}

fn number(
    param: &'static str,
    value: &str,
    min: u32,
    max: u32,
    expected: &'static str,
) -> Result<u32, VifSpecError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| (min..=max).contains(n) && value.chars().all(|c| c.is_ascii_digit()))
        .ok_or_else(|| VifSpecError::BadNumber {
            param,
            found: value.into(),
            expected,
        })
}

impl FromStr for VifSpec {
    type Err = VifSpecError;

    fn from_str(s: &str) -> Result<Self, VifSpecError> {
        let mut v = VifSpec::default();
        for raw in s.split(',') {
            let item = raw.trim();
            if item.is_empty() {
                continue;
            }
            let Some((key, value)) = item.split_once('=') else {
                return Err(VifSpecError::UnknownParameter { found: item.into() });
            };
            let (key, value) = (key.trim(), value.trim());
            let text = value.to_owned();
            match key {
                "mac" => set(&mut v.mac, value.parse()?, key)?,
                "bridge" => set(&mut v.bridge, text, key)?,
                "ip" => set(&mut v.ip, text, key)?,
                "script" => set(&mut v.script, text, key)?,
                "vifname" => set(&mut v.vifname, text, key)?,
                "model" => set(&mut v.model, text, key)?,
                "type" => {
                    let t = match value {
                        "ioemu" => VifType::Ioemu,
                        "vif" => VifType::Vif,
                        _ => return Err(VifSpecError::BadType { found: text }),
                    };
                    set(&mut v.vif_type, t, key)?;
                }
                "rate" => set(&mut v.rate, value.parse()?, key)?,
                "mtu" => set(
                    &mut v.mtu,
                    number(
                        "mtu",
                        value,
                        68,
                        65535,
                        "a decimal MTU between 68 and 65535",
                    )?,
                    key,
                )?,
                "gatewaydev" | "netdev" => set(&mut v.gatewaydev, text, "gatewaydev")?,
                "backend" => set(&mut v.backend, text, key)?,
                "devid" => set(
                    &mut v.devid,
                    number("devid", value, 0, 65535, "a decimal device id below 65536")?,
                    key,
                )?,
                "accel" => {}
                _ => return Err(VifSpecError::UnknownParameter { found: item.into() }),
            }
        }
        Ok(v)
    }
}

impl fmt::Display for VifSpec {
    /// Canonical form: `mac=..., bridge=..., ...` with only the given keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if let Some(mac) = self.mac {
            parts.push(format!("mac={mac}"));
        }
        let strings = [
            ("bridge", &self.bridge),
            ("ip", &self.ip),
            ("script", &self.script),
            ("vifname", &self.vifname),
            ("model", &self.model),
        ];
        for (key, value) in strings {
            if let Some(value) = value {
                parts.push(format!("{key}={value}"));
            }
        }
        if let Some(t) = self.vif_type {
            parts.push(match t {
                VifType::Ioemu => "type=ioemu".into(),
                VifType::Vif => "type=vif".into(),
            });
        }
        if let Some(rate) = self.rate {
            parts.push(format!("rate={rate}"));
        }
        if let Some(mtu) = self.mtu {
            parts.push(format!("mtu={mtu}"));
        }
        if let Some(gw) = &self.gatewaydev {
            parts.push(format!("gatewaydev={gw}"));
        }
        if let Some(backend) = &self.backend {
            parts.push(format!("backend={backend}"));
        }
        if let Some(devid) = self.devid {
            parts.push(format!("devid={devid}"));
        }
        f.write_str(&parts.join(","))
    }
}

/// A resolved vif: the `-N` JSON's `vifs[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VifConfig {
    /// Device id: `devid=` if given, else the position in the `vif` list.
    pub devid: u32,
    /// The guest-side MAC (given, or generated under 00:16:3e).
    pub mac: MacAddr,
    /// Bridge to join (null: the default, xenbr0 in xl).
    pub bridge: Option<String>,
    /// Addresses for the hotplug script.
    pub ip: Option<String>,
    /// Hotplug script.
    pub script: Option<String>,
    /// Backend interface name.
    pub vifname: Option<String>,
    /// Emulated NIC model.
    pub model: Option<String>,
    /// `ioemu` or `vif`.
    #[serde(rename = "type")]
    pub vif_type: Option<VifType>,
    /// Rate limit.
    pub rate: Option<VifRate>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Gateway device for vif-route.
    #[serde(default)]
    pub gatewaydev: Option<String>,
    /// Backend domain.
    #[serde(default)]
    pub backend: Option<String>,
}

impl VifConfig {
    /// Resolves `spec`, the `index`-th vif: devid defaults to `index`, a missing MAC is generated.
    pub fn resolve(spec: &VifSpec, index: u32) -> Self {
        VifConfig {
            devid: spec.devid.unwrap_or(index),
            mac: spec.mac.unwrap_or_else(MacAddr::random_xen),
            bridge: spec.bridge.clone(),
            ip: spec.ip.clone(),
            script: spec.script.clone(),
            vifname: spec.vifname.clone(),
            model: spec.model.clone(),
            vif_type: spec.vif_type,
            rate: spec.rate,
            mtu: spec.mtu,
            gatewaydev: spec.gatewaydev.clone(),
            backend: spec.backend.clone(),
        }
    }
}

impl From<&VifConfig> for VifSpec {
    /// The explicit spec of a resolved vif (MAC and devid included).
    fn from(v: &VifConfig) -> Self {
        VifSpec {
            mac: Some(v.mac),
            bridge: v.bridge.clone(),
            ip: v.ip.clone(),
            script: v.script.clone(),
            vifname: v.vifname.clone(),
            model: v.model.clone(),
            vif_type: v.vif_type,
            rate: v.rate,
            mtu: v.mtu,
            gatewaydev: v.gatewaydev.clone(),
            backend: v.backend.clone(),
            devid: Some(v.devid),
        }
    }
}

#[cfg(test)]
#[path = "vif_tests.rs"]
mod tests;
