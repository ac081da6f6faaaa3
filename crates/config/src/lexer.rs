//! The xl.cfg lexer: text in, tokens with their locations out.
//!
//! Follows the syntax of xl.cfg(5) / Xen's libxlu: `#` comments to the end of the line; strings in '…' or
//! "…" on one line with the escapes `\a \b \f \n \r \t \v \xHH \ooo \\ \' \"` (anything else is an error);
//! numbers in decimal, `0x` hex or `0` octal (a leading `-` is an error); words (keys, and Python-isms the
//! parser rejects with advice); `=`, `+=`, `[`, `]`, `,`, `;` and newlines. It never panics and always
//! terminates: each step consumes at least one character.

use std::sync::Arc;

use crate::error::{syntax, ConfigError, ConfigErrorKind, Location};

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A word: `[A-Za-z_][A-Za-z0-9_.]*` (keys are the lowercase subset).
    Word(String),
    /// A string literal, escapes applied.
    Str(String),
    /// A number: its value and its text as written.
    Num(u64, String),
    /// `=`
    Assign,
    /// `+=`
    Append,
    /// `[`
    Open,
    /// `]`
    Close,
    /// `,`
    Comma,
    /// `;`
    Semi,
    /// End of a line.
    Newline,
    /// End of the input.
    Eof,
}

impl Token {
    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Token::Word(w) => format!("`{w}`"),
            Token::Str(s) => format!("string {s:?}"),
            Token::Num(_, text) => format!("number {text}"),
            Token::Assign => "`=`".into(),
            Token::Append => "`+=`".into(),
            Token::Open => "`[`".into(),
            Token::Close => "`]`".into(),
            Token::Comma => "`,`".into(),
            Token::Semi => "`;`".into(),
            Token::Newline => "end of line".into(),
            Token::Eof => "end of input".into(),
        }
    }
}

/// Splits xl.cfg text into tokens.
pub struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    source: Arc<str>,
    line: u32,
    column: u32,
}

impl<'a> Lexer<'a> {
    /// A lexer over `text`; `first_line` numbers its first line (overrides are numbered by position).
    pub fn new(source: &Arc<str>, text: &'a str, first_line: u32) -> Self {
        Self {
            chars: text.chars().peekable(),
            source: Arc::clone(source),
            line: first_line,
            column: 1,
        }
    }

    fn here(&self) -> Location {
        Location::new(&self.source, self.line, self.column)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line = self.line.saturating_add(1);
            self.column = 1;
        } else {
            self.column = self.column.saturating_add(1);
        }
        Some(c)
    }

    /// The next token and where it starts.
    ///
    /// # Errors
    /// A located [`ConfigError`] for an unterminated string, a bad escape, a negative or malformed number
    /// or a character that cannot start a token.
    pub fn next_token(&mut self) -> Result<(Token, Location), ConfigError> {
        loop {
            match self.chars.peek() {
                Some(' ' | '\t' | '\r') => {
                    self.bump();
                }
                Some('#') => {
                    while self.chars.peek().is_some_and(|&c| c != '\n') {
                        self.bump();
                    }
                }
                _ => break,
            }
        }
        let at = self.here();
        let Some(&c) = self.chars.peek() else {
            return Ok((Token::Eof, at));
        };
        let token = match c {
            '\n' => self.single(Token::Newline),
            '=' => self.single(Token::Assign),
            '[' => self.single(Token::Open),
            ']' => self.single(Token::Close),
            ',' => self.single(Token::Comma),
            ';' => self.single(Token::Semi),
            '+' => {
                self.bump();
                if self.chars.peek() == Some(&'=') {
                    self.bump();
                    Token::Append
                } else {
                    return Err(syntax(at, "`+=`", "`+`"));
                }
            }
            '\'' | '"' => self.string(c, &at)?,
            '0'..='9' => self.number(&at, false)?,
            '-' => {
                self.bump();
                if self.chars.peek().is_some_and(char::is_ascii_digit) {
                    self.number(&at, true)?
                } else {
                    return Err(syntax(at, "a value", "`-`"));
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' => Token::Word(self.take_word()),
            other => {
                return Err(syntax(
                    at,
                    "a key, a value or one of = += [ ] , ;",
                    &format!("{other:?}"),
                ))
            }
        };
        Ok((token, at))
    }

    fn single(&mut self, token: Token) -> Token {
        self.bump();
        token
    }

    fn take_word(&mut self) -> String {
        let mut word = String::new();
        while let Some(&c) = self.chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                word.push(c);
                self.bump();
            } else {
                break;
            }
        }
        word
    }

    fn number(&mut self, at: &Location, negative: bool) -> Result<Token, ConfigError> {
        let text = self.take_word();
        if negative {
            return Err(ConfigError::new(
                at.clone(),
                ConfigErrorKind::NegativeNumber {
                    found: format!("-{text}"),
                },
            ));
        }
        match parse_number(&text) {
            Some(value) => Ok(Token::Num(value, text)),
            None => Err(ConfigError::new(
                at.clone(),
                ConfigErrorKind::BadNumber {
                    expected: NUMBER_FORMS,
                    found: text,
                },
            )),
        }
    }

    fn string(&mut self, quote: char, at: &Location) -> Result<Token, ConfigError> {
        self.bump();
        let mut bytes = Vec::new();
        loop {
            let Some(c) = self.chars.peek().copied() else {
                return Err(unterminated(at, quote));
            };
            if c == '\n' {
                return Err(unterminated(at, quote));
            }
            let esc_at = self.here();
            self.bump();
            if c == quote {
                break;
            }
            if c == '\\' {
                let byte = self.escape(esc_at)?;
                bytes.push(byte);
            } else {
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
        String::from_utf8(bytes)
            .map(Token::Str)
            .map_err(|_utf8| ConfigError::new(at.clone(), ConfigErrorKind::NotUtf8))
    }

    fn escape(&mut self, at: Location) -> Result<u8, ConfigError> {
        let bad =
            |found: String| ConfigError::new(at.clone(), ConfigErrorKind::BadEscape { found });
        let Some(c) = self.chars.peek().copied() else {
            return Err(bad(String::new()));
        };
        if c == '\n' {
            return Err(bad("<newline>".into()));
        }
        self.bump();
        let simple = match c {
            'a' => Some(0x07),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(0x0b),
            '\\' => Some(b'\\'),
            '\'' => Some(b'\''),
            '"' => Some(b'"'),
            _ => None,
        };
        if let Some(byte) = simple {
            return Ok(byte);
        }
        if c == 'x' {
            let mut digits = String::new();
            while digits.len() < 2 && self.chars.peek().is_some_and(char::is_ascii_hexdigit) {
                if let Some(d) = self.bump() {
                    digits.push(d);
                }
            }
            return match u8::from_str_radix(&digits, 16) {
                Ok(v) if digits.len() == 2 => Ok(v),
                _ => Err(bad(format!("x{digits}"))),
            };
        }
        if ('0'..='7').contains(&c) {
            let mut digits = String::from(c);
            while digits.len() < 3 && self.chars.peek().is_some_and(|d| ('0'..='7').contains(d)) {
                if let Some(d) = self.bump() {
                    digits.push(d);
                }
            }
            return u8::from_str_radix(&digits, 8).map_err(|_range| bad(digits.clone()));
        }
        Err(bad(c.to_string()))
    }
}

/// How numbers may be written, for error messages.
pub const NUMBER_FORMS: &str = "a decimal, 0x-hex or 0-octal number below 2^64";

/// Parses xl's number forms: decimal, `0x`/`0X` hex, leading-`0` octal. `None` if malformed or too big.
pub fn parse_number(text: &str) -> Option<u64> {
    let (digits, radix) =
        if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            (hex, 16)
        } else if text.len() > 1 && text.starts_with('0') {
            (&text[1..], 8)
        } else {
            (text, 10)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

fn unterminated(at: &Location, quote: char) -> ConfigError {
    ConfigError::new(at.clone(), ConfigErrorKind::UnterminatedString { quote })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(text: &str) -> Result<Vec<Token>, ConfigError> {
        let src: Arc<str> = Arc::from("t.cfg");
        let mut lexer = Lexer::new(&src, text, 1);
        let mut out = Vec::new();
        loop {
            let (t, _) = lexer.next_token()?;
            if t == Token::Eof {
                return Ok(out);
            }
            out.push(t);
        }
    }

    #[test]
    fn escapes_are_applied() {
        let toks = lex(r#"x = "a\tb\x41\101\\\"\'" 'q\n'"#).unwrap();
        assert_eq!(toks[2], Token::Str("a\tbAA\\\"'".into()));
        assert_eq!(toks[3], Token::Str("q\n".into()));
        let toks = lex(r#""\a\b\f\r\v\0""#).unwrap();
        assert_eq!(toks[0], Token::Str("\x07\x08\x0c\r\x0b\0".into()));
    }

    #[test]
    fn numbers_in_three_bases() {
        let toks = lex("1024 0x1F 0755 0").unwrap();
        assert_eq!(
            toks,
            vec![
                Token::Num(1024, "1024".into()),
                Token::Num(31, "0x1F".into()),
                Token::Num(493, "0755".into()),
                Token::Num(0, "0".into()),
            ]
        );
    }

    #[test]
    fn malformed_tokens_are_located_errors() {
        let cases: &[(&str, &str)] = &[
            (
                "a = \"abc",
                "t.cfg:1:5: unterminated string: expected a closing \" before the end of the line",
            ),
            (
                "a = 'x\n'",
                "t.cfg:1:5: unterminated string: expected a closing ' before the end of the line",
            ),
            ("a = \"x\\qy\"", "t.cfg:1:7: invalid escape `\\q` in string"),
            ("a = \"\\x4\"", "t.cfg:1:6: invalid escape `\\x4` in string"),
            (
                "\nb = -5",
                "t.cfg:2:5: negative number `-5`: expected a number >= 0",
            ),
            (
                "a = 09",
                "t.cfg:1:5: invalid number `09`: expected a decimal, 0x-hex or 0-octal number",
            ),
            ("a = 512M", "t.cfg:1:5: invalid number `512M`"),
            (
                "a = 99999999999999999999",
                "t.cfg:1:5: invalid number `99999999999999999999`",
            ),
            (
                "a = (1)",
                "t.cfg:1:5: expected a key, a value or one of = += [ ] , ;, found '('",
            ),
            ("a + 1", "t.cfg:1:3: expected `+=`, found `+`"),
        ];
        for (input, want) in cases {
            let err = lex(input).unwrap_err().to_string();
            assert!(
                err.starts_with(want),
                "input {input:?}: got {err:?}, want prefix {want:?}"
            );
        }
    }

    #[test]
    fn comments_and_columns() {
        let src: Arc<str> = Arc::from("c.cfg");
        let mut lexer = Lexer::new(&src, "# hi\n  key = 1 # tail\n", 1);
        assert_eq!(lexer.next_token().unwrap().0, Token::Newline);
        let (tok, at) = lexer.next_token().unwrap();
        assert_eq!(tok, Token::Word("key".into()));
        assert_eq!((at.line, at.column), (2, 3));
    }

    #[test]
    fn number_forms() {
        assert_eq!(parse_number("0x"), None);
        assert_eq!(parse_number("0"), Some(0));
        assert_eq!(parse_number("010"), Some(8));
        assert_eq!(parse_number("0X10"), Some(16));
        assert_eq!(parse_number("1_0"), None);
    }
}
