//! The probe's command line: `probe=<scenario>` plus `key=value` arguments.
//!
//! Tokens are separated by spaces; tokens without `=` (and keys the scenario does not ask for)
//! are ignored, so a VMM or boot loader may add its own words (e.g. `console=ttyS0`).

/// Most `key=value` pairs kept.
const MAX_ARGS: usize = 16;

/// The parsed command line, borrowing from the text.
pub struct Args<'a> {
    scenario: Option<&'a str>,
    pairs: [(&'a str, &'a str); MAX_ARGS],
    len: usize,
}

impl<'a> Args<'a> {
    /// Splits `text` into the scenario and its arguments.
    pub fn parse(text: &'a str) -> Self {
        let mut args = Self {
            scenario: None,
            pairs: [("", ""); MAX_ARGS],
            len: 0,
        };
        for token in text.split([' ', '\t', '\n']) {
            let Some((key, value)) = token.split_once('=') else {
                continue;
            };
            if key == "probe" {
                args.scenario = Some(value);
            } else if let Some(slot) = args.pairs.get_mut(args.len) {
                *slot = (key, value);
                args.len += 1;
            }
        }
        args
    }

    /// The `probe=` value (`hello` when absent).
    pub fn scenario(&self) -> &'a str {
        self.scenario.unwrap_or("hello")
    }

    /// The last value given for `key`.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.pairs[..self.len]
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }

    /// `key` as an unsigned number (decimal, or hex with `0x`); `default` when absent.
    pub fn get_u64(&self, key: &str, default: u64) -> Result<u64, &'a str> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => parse_u64(v).ok_or(v),
        }
    }
}

/// Parses decimal or `0x` hexadecimal, with optional `_` separators.
pub fn parse_u64(text: &str) -> Option<u64> {
    let (digits, radix) = match text.strip_prefix("0x") {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    let mut value: u64 = 0;
    let mut any = false;
    for c in digits.chars().filter(|&c| c != '_') {
        let d = c.to_digit(radix)?;
        value = value
            .checked_mul(u64::from(radix))?
            .checked_add(u64::from(d))?;
        any = true;
    }
    any.then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_and_arguments() {
        let a = Args::parse("console=ttyS0 probe=loop  iters=1_000 junk\tseed=0x10 iters=5");
        assert_eq!(a.scenario(), "loop");
        assert_eq!(a.get("console"), Some("ttyS0"));
        assert_eq!(a.get_u64("iters", 0), Ok(5), "the last value wins");
        assert_eq!(a.get_u64("seed", 0), Ok(16));
        assert_eq!(a.get_u64("absent", 7), Ok(7));
        assert_eq!(a.get("junk"), None);
    }

    #[test]
    fn defaults_and_bad_values() {
        assert_eq!(Args::parse("").scenario(), "hello");
        assert_eq!(Args::parse("probe=").scenario(), "");
        let a = Args::parse("n=12x m= h=0x o=99999999999999999999999");
        assert_eq!(a.get_u64("n", 0), Err("12x"));
        assert_eq!(a.get_u64("m", 0), Err(""));
        assert_eq!(a.get_u64("h", 0), Err("0x"));
        assert_eq!(
            a.get_u64("o", 0),
            Err("99999999999999999999999"),
            "overflow is an error"
        );
        assert_eq!(a.get("n=12x"), None);
    }

    #[test]
    fn extra_pairs_are_dropped_not_overflowed() {
        let text: String = (0..40).map(|i| format!("k{i}={i} ")).collect();
        let a = Args::parse(&text);
        assert_eq!(a.get_u64("k0", 99), Ok(0));
        assert_eq!(a.get_u64("k15", 99), Ok(15));
        assert_eq!(a.get("k16"), None);
    }
}
