//! The xl.cfg parser: tokens in, assignments applied to an [`XlConfig`].
//!
//! Grammar (xl.cfg(5), libxlu):
//! ```text
//! file  := { sep } { stmt sep { sep } }      sep := newline | ';'
//! stmt  := KEY ('=' | '+=') value            KEY := [a-z][._0-9a-z]*
//! value := STRING | NUMBER | '[' [ value { ',' value } [ ',' ] ] ']'   (newlines allowed inside lists)
//! ```
//! Semantics: the last `=` wins; `+=` appends to an existing string or list (an error on numbers or when
//! the types differ) and acts like `=` for a key not yet set. Python forms that xm accepted (`True`,
//! `False`, `None`, bare names) are rejected with what to write instead.

use std::sync::Arc;

use crate::error::{syntax, ConfigError, ConfigErrorKind, Location};
use crate::lexer::{Lexer, Token};
use crate::value::{Setting, Spanned, Value, XlConfig};

/// Lists may nest at most this deep (bounds recursion on hostile input).
pub const MAX_LIST_DEPTH: usize = 32;

/// Parses `text` (named `source` in errors; its first line numbered `first_line`) and applies its
/// assignments, in order, to `config`.
///
/// # Errors
/// The first syntax or `+=` error, located.
pub fn parse_into(
    config: &mut XlConfig,
    source: &Arc<str>,
    text: &str,
    first_line: u32,
) -> Result<(), ConfigError> {
    // Editors on other systems may start the file with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser {
        lexer: Lexer::new(source, text, first_line),
        peeked: None,
    };
    loop {
        let (token, at) = parser.next()?;
        match token {
            Token::Eof => return Ok(()),
            Token::Newline | Token::Semi => continue,
            Token::Word(word) => {
                let stmt = parser.statement(word, at)?;
                apply(config, stmt)?;
            }
            other => {
                return Err(syntax(at, "a key ([a-z][._0-9a-z]*)", &other.describe()));
            }
        }
    }
}

/// Parses a whole file into a fresh [`XlConfig`].
///
/// # Errors
/// As [`parse_into`].
pub fn parse(source: &str, text: &str) -> Result<XlConfig, ConfigError> {
    let mut config = XlConfig::default();
    parse_into(&mut config, &Arc::from(source), text, 1)?;
    Ok(config)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Assign,
    Append,
}

struct Statement {
    key: String,
    key_location: Location,
    op: Op,
    value: Spanned<Value>,
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    peeked: Option<(Token, Location)>,
}

impl Parser<'_> {
    fn next(&mut self) -> Result<(Token, Location), ConfigError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lexer.next_token(),
        }
    }

    fn statement(&mut self, key: String, key_location: Location) -> Result<Statement, ConfigError> {
        if !is_key(&key) {
            return Err(syntax(
                key_location,
                "a key ([a-z][._0-9a-z]*)",
                &format!("`{key}`"),
            ));
        }
        self.statement_body(&key, key_location).map_err(|mut e| {
            // Lexer errors inside the value (bad escape, negative number) name the key too.
            e.key.get_or_insert(key);
            e
        })
    }

    fn statement_body(
        &mut self,
        key: &str,
        key_location: Location,
    ) -> Result<Statement, ConfigError> {
        let key = key.to_owned();
        if !is_key(&key) {
            return Err(syntax(
                key_location,
                "a key ([a-z][._0-9a-z]*)",
                &format!("`{key}`"),
            ));
        }
        let (token, at) = self.next()?;
        let op = match token {
            Token::Assign => Op::Assign,
            Token::Append => Op::Append,
            other => return Err(syntax(at, "`=` or `+=` after the key", &other.describe())),
        };
        let (token, at) = self.next()?;
        let value = self.value(token, at, &key, 0)?;
        let (token, at) = self.next()?;
        match token {
            Token::Newline | Token::Semi => {}
            Token::Eof => self.peeked = Some((Token::Eof, at)),
            other => {
                return Err(ConfigError::for_key(
                    at,
                    &key,
                    ConfigErrorKind::Syntax {
                        expected: "end of line or `;` after the value".into(),
                        found: other.describe(),
                    },
                ))
            }
        }
        Ok(Statement {
            key,
            key_location,
            op,
            value,
        })
    }

    fn value(
        &mut self,
        token: Token,
        at: Location,
        key: &str,
        depth: usize,
    ) -> Result<Spanned<Value>, ConfigError> {
        let value = match token {
            Token::Str(s) => Value::Str(s),
            Token::Num(n, text) => Value::Num(n, text),
            Token::Open => self.list(&at, key, depth + 1)?,
            Token::Word(word) => return Err(word_error(at, key, word)),
            other => {
                return Err(ConfigError::for_key(
                    at,
                    key,
                    ConfigErrorKind::Syntax {
                        expected: "a value (a quoted string, a number or a [list])".into(),
                        found: other.describe(),
                    },
                ))
            }
        };
        Ok(Spanned {
            value,
            location: at,
        })
    }

    fn next_skipping_newlines(&mut self) -> Result<(Token, Location), ConfigError> {
        loop {
            let (token, at) = self.next()?;
            if token != Token::Newline {
                return Ok((token, at));
            }
        }
    }

    fn list(&mut self, open: &Location, key: &str, depth: usize) -> Result<Value, ConfigError> {
        if depth > MAX_LIST_DEPTH {
            return Err(ConfigError::for_key(
                open.clone(),
                key,
                ConfigErrorKind::Syntax {
                    expected: format!("lists nested at most {MAX_LIST_DEPTH} deep"),
                    found: "a deeper list".into(),
                },
            ));
        }
        let mut items = Vec::new();
        loop {
            let (token, at) = self.next_skipping_newlines()?;
            if token == Token::Close {
                return Ok(Value::List(items));
            }
            if token == Token::Eof {
                return Err(ConfigError::for_key(
                    open.clone(),
                    key,
                    ConfigErrorKind::Syntax {
                        expected: "`]` to close this list".into(),
                        found: "end of input".into(),
                    },
                ));
            }
            items.push(self.value(token, at, key, depth)?);
            let (token, at) = self.next_skipping_newlines()?;
            match token {
                Token::Comma => {}
                Token::Close => return Ok(Value::List(items)),
                other => {
                    return Err(ConfigError::for_key(
                        at,
                        key,
                        ConfigErrorKind::Syntax {
                            expected: "`,` or `]` in a list".into(),
                            found: other.describe(),
                        },
                    ))
                }
            }
        }
    }
}

/// Whether `word` is a valid key: `[a-z][._0-9a-z]*`.
pub fn is_key(word: &str) -> bool {
    let mut chars = word.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_')
}

fn word_error(at: Location, key: &str, word: String) -> ConfigError {
    let kind = match (key, word.as_str()) {
        ("autorestart", _) => ConfigErrorKind::XmKey {
            found: format!("autorestart = {word}"),
            write: AUTORESTART_ADVICE,
        },
        (_, "True") => ConfigErrorKind::PythonLiteral {
            found: word,
            write: "1".into(),
        },
        (_, "False") => ConfigErrorKind::PythonLiteral {
            found: word,
            write: "0".into(),
        },
        (_, "None") => ConfigErrorKind::PythonLiteral {
            found: word,
            write: "nothing (remove the line)".into(),
        },
        _ => ConfigErrorKind::BareWord { found: word },
    };
    ConfigError::for_key(at, key, kind)
}

/// What to write instead of xm's `autorestart`.
pub const AUTORESTART_ADVICE: &str = "remove it; xl restarts a domain that reboots by default \
     (on_reboot = \"restart\"), and on_poweroff = \"restart\" / on_crash = \"restart\" restart it in the other cases";

fn apply(config: &mut XlConfig, stmt: Statement) -> Result<(), ConfigError> {
    let Some(existing) = config.get_mut(&stmt.key) else {
        config.insert(Setting {
            key: stmt.key,
            key_location: stmt.key_location,
            value: stmt.value,
        });
        return Ok(());
    };
    if stmt.op == Op::Assign {
        existing.key_location = stmt.key_location;
        existing.value = stmt.value;
        return Ok(());
    }
    let mismatch = |kind| ConfigError::for_key(stmt.value.location.clone(), &stmt.key, kind);
    match (&mut existing.value.value, stmt.value.value) {
        (Value::Str(old), Value::Str(new)) => old.push_str(&new),
        (Value::List(old), Value::List(new)) => old.extend(new),
        (Value::Num(..), new) => {
            return Err(mismatch(ConfigErrorKind::AppendNumber {
                found: new.type_name(),
            }))
        }
        (_, new @ Value::Num(..)) => {
            return Err(mismatch(ConfigErrorKind::AppendNumber {
                found: new.type_name(),
            }))
        }
        (old, new) => {
            return Err(mismatch(ConfigErrorKind::AppendMismatch {
                expected: old.type_name(),
                found: new.type_name(),
            }))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn str_of(config: &XlConfig, key: &str) -> Value {
        config.get(key).unwrap().value.value.clone()
    }

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    #[test]
    fn statements_separators_and_last_wins() {
        let c = parse("t", "\u{feff}a = 1; b = 'x'\r\n\n# c\na = 2;;\nc=[]").unwrap();
        assert_eq!(str_of(&c, "a"), Value::Num(2, "2".into()));
        assert_eq!(str_of(&c, "b"), s("x"));
        assert_eq!(str_of(&c, "c"), Value::List(vec![]));
        let keys: Vec<_> = c.settings.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(c.get("a").unwrap().key_location.line, 4);
    }

    #[test]
    fn nested_multiline_lists_with_trailing_comma() {
        let c = parse(
            "t",
            "l = [ 'a', 1,\n  [ 'b', [ 2 ], ],\n  # comment\n  'c', ]\n",
        )
        .unwrap();
        let Value::List(items) = str_of(&c, "l") else {
            panic!("not a list")
        };
        let plain: Vec<_> = items
            .iter()
            .map(|i| i.value.to_plain().to_string())
            .collect();
        assert_eq!(plain, ["\"a\"", "1", "[ \"b\", [ 2 ] ]", "\"c\""]);
        assert_eq!(items[3].location.line, 4);
    }

    #[test]
    fn append_semantics() {
        let c = parse(
            "t",
            "s = 'a'\ns += 'b'\nl = ['x']\nl += ['y', 'z']\nn += 'new'",
        )
        .unwrap();
        assert_eq!(str_of(&c, "s"), s("ab"));
        assert_eq!(
            str_of(&c, "l").to_plain().to_string(),
            "[ \"x\", \"y\", \"z\" ]"
        );
        assert_eq!(str_of(&c, "n"), s("new"));
    }

    #[test]
    fn keys_are_lowercase_words() {
        assert!(is_key("on_crash"));
        assert!(is_key("a.b_9"));
        assert!(!is_key("Name"));
        assert!(!is_key("_x"));
        assert!(!is_key(""));
    }

    #[test]
    fn malformed_statements() {
        let cases: &[(&str, &str)] = &[
            ("n = 1\nn += 2", "t:2:6: n: `+=` cannot append to a number: expected a string or a list, found number"),
            ("n = 'a'\nn += 2", "t:2:6: n: `+=` cannot append to a number"),
            ("n = 'a'\nn += ['b']", "t:2:6: n: `+=` cannot append a list to a string: expected a string"),
            ("l = ['a']\nl += 'b'", "t:2:6: l: `+=` cannot append a string to a list: expected a list"),
            ("autorestart = True", "t:1:15: autorestart: `autorestart = True` is an xm setting that xl does not support: remove it;"),
            ("acpi = True", "t:1:8: acpi: `True` is Python (xm) syntax, not xl.cfg: write 1 instead"),
            ("acpi = False", "t:1:8: acpi: `False` is Python (xm) syntax, not xl.cfg: write 0 instead"),
            ("x = None", "t:1:5: x: `None` is Python (xm) syntax, not xl.cfg: write nothing (remove the line) instead"),
            ("kernel = netbsd", "t:1:10: kernel: bare word `netbsd` is not a value (xm accepted Python names, xl does not): write \"netbsd\" to make it a string"),
            ("Name = 'x'", "t:1:1: expected a key ([a-z][._0-9a-z]*), found `Name`"),
            ("= 'x'", "t:1:1: expected a key ([a-z][._0-9a-z]*), found `=`"),
            ("a 'x'", "t:1:3: a: expected `=` or `+=` after the key, found string \"x\""),
            ("a = 'x' 'y'", "t:1:9: a: expected end of line or `;` after the value, found string \"y\""),
            ("a = ['x' 'y']", "t:1:10: a: expected `,` or `]` in a list, found string \"y\""),
            ("a = [,]", "t:1:6: a: expected a value (a quoted string, a number or a [list]), found `,`"),
            ("a = ['x',\n", "t:1:5: a: expected `]` to close this list, found end of input"),
            ("a =\n1", "t:1:4: a: expected a value (a quoted string, a number or a [list]), found end of line"),
        ];
        for (input, want) in cases {
            let err = parse("t", input).unwrap_err().to_string();
            assert!(
                err.starts_with(want),
                "input {input:?}:\n got {err:?}\nwant {want:?}"
            );
        }
    }

    #[test]
    fn equality_ignores_locations() {
        // Found by the fuzz target's first run: printing moves settings to other lines and columns, and
        // the round-trip compares values, not where they were written.
        let a = parse("a.cfg", "\n\n  x = [ 1,\n 'y' ]\n").unwrap();
        let b = parse("b.cfg", "x = [ 1, 'y' ]").unwrap();
        assert_eq!(a, b);
        assert_ne!(a.settings[0].key_location, b.settings[0].key_location);
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let deep = format!("a = {}{}", "[".repeat(100), "]".repeat(100));
        let err = parse("t", &deep).unwrap_err().to_string();
        assert!(err.contains("lists nested at most 32 deep"), "{err}");
        let ok = format!("a = {}{}", "[".repeat(32), "]".repeat(32));
        assert!(parse("t", &ok).is_ok());
    }

    #[test]
    fn printing_round_trips() {
        let text = "a = \"x\\\"y\\n\\x01\"\nb = 0x10\nc = [ 'p', [ 1, 2 ], ]\n";
        let c = parse("t", text).unwrap();
        let printed = c.to_string();
        assert_eq!(
            printed,
            "a = \"x\\\"y\\n\\x01\"\nb = 0x10\nc = [ \"p\", [ 1, 2 ] ]\n"
        );
        assert_eq!(parse("t", &printed).unwrap(), c);
    }
}
