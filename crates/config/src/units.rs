//! Memory sizes with units.
//!
//! xl.cfg's `memory` and `maxmem` are numbers of MiB. Like xl's `mem-set`, a quoted size may carry a unit
//! suffix: `K`, `M`, `G` or `T` (case-insensitive, optionally followed by `B` or `iB`; binary multiples). A
//! quoted size without a unit is in MiB here, as the keys are. The result must be a whole number of MiB.

/// A malformed memory size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnitsError {
    /// Not a number with an optional unit.
    #[error("invalid memory size `{found}`: expected MiB as a number, or a quoted size such as \"512M\" or \"2G\" (units K, M, G, T)")]
    Malformed {
        /// The text found.
        found: String,
    },
    /// Not a whole number of MiB.
    #[error("memory size `{found}` is not a whole number of MiB: expected a multiple of 1024K")]
    NotWholeMib {
        /// The text found.
        found: String,
    },
    /// Too large.
    #[error("memory size `{found}` is too large: expected at most 2^44 MiB")]
    TooLarge {
        /// The text found.
        found: String,
    },
}

/// The largest size accepted, in MiB (16 EiB expressed in MiB would overflow byte counts downstream).
pub const MAX_MIB: u64 = 1 << 44;

/// Parses a memory size written as a string (see the module docs) into MiB.
///
/// # Errors
/// [`UnitsError`] when malformed, not whole MiB, or larger than [`MAX_MIB`].
pub fn parse_mib(text: &str) -> Result<u64, UnitsError> {
    let trimmed = text.trim();
    let split = match trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
    {
        Some(hex) => {
            2 + hex
                .find(|c: char| !c.is_ascii_hexdigit())
                .unwrap_or(hex.len())
        }
        None => trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len()),
    };
    let (number, unit) = trimmed.split_at(split);
    let malformed = || UnitsError::Malformed {
        found: text.to_owned(),
    };
    let value = crate::lexer::parse_number(number).ok_or_else(malformed)?;
    let unit_lower = unit.to_ascii_lowercase();
    let base = unit_lower
        .strip_suffix("ib")
        .or_else(|| unit_lower.strip_suffix('b'))
        .unwrap_or(&unit_lower);
    let kib_per_unit: u64 = match base {
        "" | "m" => 1024,
        "k" => 1,
        "g" => 1024 * 1024,
        "t" => 1024 * 1024 * 1024,
        _ => return Err(malformed()),
    };
    if unit_lower == "b" || unit_lower == "ib" {
        return Err(malformed());
    }
    let kib = value
        .checked_mul(kib_per_unit)
        .ok_or_else(|| UnitsError::TooLarge {
            found: text.to_owned(),
        })?;
    if kib % 1024 != 0 {
        return Err(UnitsError::NotWholeMib {
            found: text.to_owned(),
        });
    }
    let mib = kib / 1024;
    if mib > MAX_MIB {
        return Err(UnitsError::TooLarge {
            found: text.to_owned(),
        });
    }
    Ok(mib)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_table() {
        let ok: &[(&str, u64)] = &[
            ("512", 512),
            ("512M", 512),
            ("512m", 512),
            ("512MB", 512),
            ("512MiB", 512),
            ("2G", 2048),
            ("2g", 2048),
            ("1T", 1024 * 1024),
            ("4096K", 4),
            ("4096k", 4),
            ("0x100M", 256),
            (" 64M ", 64),
        ];
        for (text, want) in ok {
            assert_eq!(parse_mib(text), Ok(*want), "{text}");
        }
        let bad: &[(&str, &str)] = &[
            ("", "invalid memory size ``"),
            ("M", "invalid memory size `M`"),
            ("12X", "invalid memory size `12X`"),
            ("12 M", "invalid memory size `12 M`"),
            ("1.5G", "invalid memory size `1.5G`"),
            ("-1", "invalid memory size `-1`"),
            ("100K", "memory size `100K` is not a whole number of MiB"),
            ("99999999999T", "memory size `99999999999T` is too large"),
            (
                "18446744073709551615",
                "memory size `18446744073709551615` is too large",
            ),
            ("1B", "invalid memory size `1B`"),
        ];
        for (text, want) in bad {
            let err = parse_mib(text).unwrap_err().to_string();
            assert!(err.starts_with(want), "{text}: {err}");
        }
    }
}
