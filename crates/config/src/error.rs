//! Located configuration errors.
//!
//! Every error the crate returns is one [`ConfigError`]: where it happened (`file:line:column`), which key
//! it concerns (when known) and what was expected versus what was found. Spec-level errors (disk, vif, pci,
//! cpus, vdev, memory units) have their own enums so the `FromStr` impls can return them; inside a config
//! file they are wrapped into a [`ConfigError`] that adds the location of the offending string.

use std::fmt;
use std::sync::Arc;

use crate::cpus::CpusError;
use crate::disk::DiskSpecError;
use crate::pci::PciSpecError;
use crate::units::UnitsError;
use crate::vif::VifSpecError;

/// A position in some input: the source's name (a file name as given, or `command line`), 1-based line
/// and 1-based column (counted in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The name of the input, e.g. the config file's path as the user wrote it.
    pub source: Arc<str>,
    /// 1-based line number.
    pub line: u32,
    /// 1-based column number, in characters.
    pub column: u32,
}

impl Location {
    /// A location in `source` at `line`:`column`.
    pub fn new(source: &Arc<str>, line: u32, column: u32) -> Self {
        Self {
            source: Arc::clone(source),
            line,
            column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.source, self.line, self.column)
    }
}

/// The one error type of `domus-config`: what went wrong ([`ConfigErrorKind`]), where, and for which key.
///
/// Displayed as `FILE:LINE:COLUMN: KEY: MESSAGE` (without `KEY: ` when the error is not about one key).
#[derive(Debug, thiserror::Error)]
#[error("{location}: {}{kind}", KeyPrefix(.key.as_deref()))]
pub struct ConfigError {
    /// Where in the input the problem is.
    pub location: Location,
    /// The config key concerned, if any (e.g. `disk`).
    pub key: Option<String>,
    /// What went wrong.
    pub kind: ConfigErrorKind,
}

/// A syntax error at `at`: `expected` something, `found` something else (shared by the lexer and the
/// parser).
pub(crate) fn syntax(at: Location, expected: &str, found: &str) -> ConfigError {
    ConfigError::new(
        at,
        ConfigErrorKind::Syntax {
            expected: expected.into(),
            found: found.into(),
        },
    )
}

impl ConfigError {
    /// An error at `location`, not tied to a key.
    pub fn new(location: Location, kind: ConfigErrorKind) -> Self {
        Self {
            location,
            key: None,
            kind,
        }
    }

    /// An error at `location` about `key`.
    pub fn for_key(location: Location, key: &str, kind: ConfigErrorKind) -> Self {
        Self {
            location,
            key: Some(key.to_owned()),
            kind,
        }
    }
}

struct KeyPrefix<'a>(Option<&'a str>);

impl fmt::Display for KeyPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(key) => write!(f, "{key}: "),
            None => Ok(()),
        }
    }
}

/// What went wrong. Messages say what was expected and what was found.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// A string literal has no closing quote on its line.
    #[error("unterminated string: expected a closing {quote} before the end of the line")]
    UnterminatedString {
        /// The quote character that opened the string.
        quote: char,
    },
    /// A backslash escape xl does not know.
    #[error(
        "invalid escape `\\{found}` in string: expected one of \\a \\b \\f \\n \\r \\t \\v \\xHH \\ooo \\\\ \\' \\\""
    )]
    BadEscape {
        /// The text after the backslash.
        found: String,
    },
    /// Escapes produced bytes that are not UTF-8.
    #[error("string is not valid UTF-8 after its escapes were applied")]
    NotUtf8,
    /// A number with a leading minus sign.
    #[error("negative number `{found}`: expected a number >= 0 (xl.cfg has no negative numbers)")]
    NegativeNumber {
        /// The number as written.
        found: String,
    },
    /// A malformed or too large number.
    #[error("invalid number `{found}`: expected {expected}")]
    BadNumber {
        /// What a valid number looks like here.
        expected: &'static str,
        /// The text found.
        found: String,
    },
    /// The grammar was violated.
    #[error("expected {expected}, found {found}")]
    Syntax {
        /// What the grammar allows here.
        expected: String,
        /// What was found instead.
        found: String,
    },
    /// A Python (xm) literal such as `True`, `False` or `None`.
    #[error("`{found}` is Python (xm) syntax, not xl.cfg: write {write} instead")]
    PythonLiteral {
        /// The literal found.
        found: String,
        /// What to write instead.
        write: String,
    },
    /// An unquoted word where a value was expected.
    #[error("bare word `{found}` is not a value (xm accepted Python names, xl does not): write \"{found}\" to make it a string")]
    BareWord {
        /// The word found.
        found: String,
    },
    /// An xm-era key that xl dropped, with its replacement.
    #[error("`{found}` is an xm setting that xl does not support: {write}")]
    XmKey {
        /// The key (and value) found.
        found: String,
        /// What to write instead.
        write: &'static str,
    },
    /// `+=` on a number.
    #[error("`+=` cannot append to a number: expected a string or a list, found {found}")]
    AppendNumber {
        /// The kind of value involved.
        found: &'static str,
    },
    /// `+=` with a value of another type than the existing one.
    #[error("`+=` cannot append a {found} to a {expected}: expected a {expected}")]
    AppendMismatch {
        /// The existing value's type.
        expected: &'static str,
        /// The appended value's type.
        found: &'static str,
    },
    /// A value of the wrong type for its key.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// The type the key needs.
        expected: &'static str,
        /// The type found.
        found: &'static str,
    },
    /// A value of the right type but not an accepted one.
    #[error("expected {expected}, found `{found}`")]
    InvalidValue {
        /// What is accepted.
        expected: String,
        /// The value found.
        found: String,
    },
    /// Two disks with the same virtual device.
    #[error("vdev `{vdev}` (device number {devnum}) is already used by disk {first} (`{first_vdev}`): expected a unique vdev per disk")]
    DuplicateVdev {
        /// The vdev of the second disk.
        vdev: String,
        /// Its device number.
        devnum: u32,
        /// Index of the first disk with that number.
        first: usize,
        /// vdev of the first disk.
        first_vdev: String,
    },
    /// Two vifs with the same devid.
    #[error("devid {devid} is already used by vif {first}: expected a unique devid per vif")]
    DuplicateDevid {
        /// The duplicated devid.
        devid: u32,
        /// Index of the first vif with it.
        first: usize,
    },
    /// A disk spec string is malformed.
    #[error(transparent)]
    Disk(#[from] DiskSpecError),
    /// A vif spec string is malformed.
    #[error(transparent)]
    Vif(#[from] VifSpecError),
    /// A pci spec string is malformed.
    #[error(transparent)]
    Pci(#[from] PciSpecError),
    /// A cpus spec is malformed.
    #[error(transparent)]
    Cpus(#[from] CpusError),
    /// A memory size is malformed.
    #[error(transparent)]
    Units(#[from] UnitsError),
}
