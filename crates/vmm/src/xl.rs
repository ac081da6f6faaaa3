//! Reading an xl.cfg file for the VMM's own `--config FILE [KEY=VALUE ...]`.
//!
//! The project's xl.cfg parser is domus-config (`DomainConfig::from_xl`, contract 1). Until that crate
//! exports it, this module reads the subset a VMM needs — `name`, `memory`, `vcpus`, `kernel`, `ramdisk`,
//! `cmdline`, `root`, `extra` — with xl's rules for composing the command line (`cmdline` wins, else
//! `root=<root> <extra>`) and for overrides (each `KEY=VALUE` is appended as a config line). Other keys
//! are accepted and ignored (they concern domusd).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};

use crate::config::{DomainJson, VmConfig};

/// A parsed value.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Num(u64),
    Other,
}

fn parse_value(raw: &str) -> Value {
    let raw = raw.trim();
    for q in ['"', '\''] {
        if let Some(inner) = raw.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return Value::Str(inner.to_owned());
        }
    }
    if let Some(hex) = raw.strip_prefix("0x") {
        if let Ok(n) = u64::from_str_radix(hex, 16) {
            return Value::Num(n);
        }
    }
    raw.parse().map_or(Value::Other, Value::Num)
}

/// Strips a `#` comment that is outside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Parses `text` plus `overrides` into a VM config; `source` names the file in errors and gives the
/// default domain name.
///
/// # Errors
/// A line that is not `KEY = VALUE`, a key with the wrong type, or no kernel.
pub fn parse(source: &str, text: &str, overrides: &[String]) -> anyhow::Result<VmConfig> {
    let mut keys: HashMap<String, Value> = HashMap::new();
    let lines = text
        .lines()
        .map(str::to_owned)
        .chain(overrides.iter().cloned());
    for (n, line) in lines.enumerate() {
        let line = strip_comment(&line).trim().trim_end_matches(';').trim();
        if line.is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            bail!("{source}:{}: expected KEY = VALUE, got {line:?}", n + 1);
        };
        keys.insert(k.trim().to_owned(), parse_value(v));
    }
    let str_key = |k: &str| -> anyhow::Result<Option<String>> {
        match keys.get(k) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s.clone())),
            Some(_) => bail!("{source}: {k} must be a quoted string"),
        }
    };
    let num_key = |k: &str, default: u64| -> anyhow::Result<u64> {
        match keys.get(k) {
            None => Ok(default),
            Some(Value::Num(n)) => Ok(*n),
            Some(Value::Str(s)) => s
                .parse()
                .with_context(|| format!("{source}: {k} must be a number")),
            Some(Value::Other) => bail!("{source}: {k} must be a number"),
        }
    };
    let default_name = Path::new(source)
        .file_name()
        .map_or_else(|| source.to_owned(), |n| n.to_string_lossy().into_owned());
    let cmdline = match str_key("cmdline")? {
        Some(c) => Some(c),
        None => {
            let parts: Vec<String> = [
                str_key("root")?.map(|r| format!("root={r}")),
                str_key("extra")?,
            ]
            .into_iter()
            .flatten()
            .collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        }
    };
    let vcpus = u32::try_from(num_key("vcpus", 1)?).context("vcpus out of range")?;
    let d = DomainJson {
        name: str_key("name")?.unwrap_or(default_name),
        memory_mib: num_key("memory", 128)?,
        vcpus,
        kernel: str_key("kernel")?,
        ramdisk: str_key("ramdisk")?,
        cmdline,
    };
    VmConfig::from_parts(d).with_context(|| format!("in {source}"))
}

/// Reads and parses an xl.cfg file.
///
/// # Errors
/// Unreadable file or [`parse`] errors.
pub fn load(path: &Path, overrides: &[String]) -> anyhow::Result<VmConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    parse(&path.to_string_lossy(), &text, overrides)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_cfg_and_overrides() {
        let text = "# probe\nname = \"hello\"\nkernel = \"target/debug/domus-probe\" # the ELF\nextra = \"probe=hello\"\nmemory = 64\nvcpus = 1\n";
        let c = parse(
            "examples/hello.cfg",
            text,
            &["vcpus=2".into(), "memory = 96".into()],
        )
        .unwrap();
        assert_eq!(c.name, "hello");
        assert_eq!(c.vcpus, 2);
        assert_eq!(c.memory_mib, 96);
        assert_eq!(c.cmdline, "probe=hello");
        let c = parse(
            "dir/x.cfg",
            "kernel='k'\nroot='/dev/xvda1 ro'\nextra='quiet'\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.name, "x.cfg");
        assert_eq!(c.cmdline, "root=/dev/xvda1 ro quiet");
        let c = parse("x", "kernel='k'\ncmdline='a b'\nextra='ignored'\n", &[]).unwrap();
        assert_eq!(c.cmdline, "a b");
    }

    #[test]
    fn bad_files() {
        assert!(parse("x", "kernel 'k'\n", &[])
            .unwrap_err()
            .to_string()
            .contains("x:1"));
        assert!(parse("x", "memory = 64\n", &[]).is_err());
        assert!(parse("x", "kernel = 'k'\nmemory = 'lots'\n", &[]).is_err());
    }
}
