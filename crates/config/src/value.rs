//! Values of the xl.cfg language and a parsed file ([`XlConfig`]): settings in first-assignment order,
//! each holding its final value (the last assignment wins; `+=` already applied).
//!
//! [`XlConfig`] prints back as canonical xl.cfg text (`key = value` lines) that parses to an equal
//! [`XlConfig`]; that is the round-trip the sample tests check.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Location;

/// A value with the location where it starts. Equality ignores the location.
#[derive(Debug, Clone)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub location: Location,
}

impl<T: PartialEq> PartialEq for Spanned<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

/// An xl.cfg value: a string, a number (booleans are numbers) or a list of values.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string literal (escapes applied).
    Str(String),
    /// A number and its text as written (`0x10`, `020`, `16`).
    Num(u64, String),
    /// A list; elements may be of any type, lists included.
    List(Vec<Spanned<Value>>),
}

impl Value {
    /// The type's name for messages: `string`, `number` or `list`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Num(..) => "number",
            Value::List(_) => "list",
        }
    }

    /// The value without locations, for keeping unknown keys in a [`crate::DomainConfig`].
    pub fn to_plain(&self) -> PlainValue {
        match self {
            Value::Str(s) => PlainValue::Str(s.clone()),
            Value::Num(n, _) => PlainValue::Num(*n),
            Value::List(items) => {
                PlainValue::List(items.iter().map(|i| i.value.to_plain()).collect())
            }
        }
    }
}

/// A value without locations; serialises as a JSON string, number or array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PlainValue {
    /// A number.
    Num(u64),
    /// A string.
    Str(String),
    /// A list.
    List(Vec<PlainValue>),
}

impl fmt::Display for PlainValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlainValue::Num(n) => write!(f, "{n}"),
            PlainValue::Str(s) => write_quoted(f, s),
            PlainValue::List(items) => {
                f.write_str("[ ")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str(" ]")
            }
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => write_quoted(f, s),
            Value::Num(_, text) => f.write_str(text),
            Value::List(items) => {
                f.write_str("[ ")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}", item.value)?;
                }
                f.write_str(" ]")
            }
        }
    }
}

/// Writes `s` as a double-quoted xl.cfg string, escaping what the lexer would not read back verbatim.
pub fn write_quoted(f: &mut impl fmt::Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            c if (c as u32) < 0x20 || c == '\u{7f}' => write!(f, "\\x{:02x}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// The quoted form of `s` (see [`write_quoted`]).
pub fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    // Writing to a String cannot fail.
    let _ = write_quoted(&mut out, s);
    out
}

/// One setting of a parsed file: its key, where it was assigned, and the final value. Equality ignores
/// locations.
#[derive(Debug, Clone)]
pub struct Setting {
    /// The key (`[a-z][._0-9a-z]*`).
    pub key: String,
    /// Where the last plain assignment (`=`) of the key starts, or the first `+=` if there was none.
    pub key_location: Location,
    /// The final value.
    pub value: Spanned<Value>,
}

impl PartialEq for Setting {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.value == other.value
    }
}

/// A parsed xl.cfg file: its settings in the order their keys first appeared.
#[derive(Debug, Clone, Default)]
pub struct XlConfig {
    /// The settings (add new ones with [`XlConfig::insert`] so lookups stay indexed).
    pub settings: Vec<Setting>,
    /// Key -> position in `settings` (keeps assignment linear on configs with many keys).
    index: HashMap<String, usize>,
}

impl PartialEq for XlConfig {
    fn eq(&self, other: &Self) -> bool {
        self.settings == other.settings
    }
}

impl XlConfig {
    /// The setting for `key`, if assigned.
    pub fn get(&self, key: &str) -> Option<&Setting> {
        match self.index.get(key) {
            Some(&i) => self.settings.get(i),
            None if self.index.len() == self.settings.len() => None,
            None => self.settings.iter().find(|s| s.key == key),
        }
    }

    /// The setting for `key`, mutable.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Setting> {
        match self.index.get(key) {
            Some(&i) => self.settings.get_mut(i),
            None if self.index.len() == self.settings.len() => None,
            None => self.settings.iter_mut().find(|s| s.key == key),
        }
    }

    /// Appends a setting for a key not yet present.
    pub fn insert(&mut self, setting: Setting) {
        self.index.insert(setting.key.clone(), self.settings.len());
        self.settings.push(setting);
    }
}

impl fmt::Display for XlConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.settings {
            writeln!(f, "{} = {}", s.key, s.value.value)?;
        }
        Ok(())
    }
}
