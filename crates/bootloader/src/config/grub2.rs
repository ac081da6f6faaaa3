//! GRUB 2 `grub.cfg`: the subset pygrub and real distribution configs need.
//!
//! Understood: `menuentry` and `submenu` blocks (GRUB's numbering, titles, `--id`), `set name=value` and
//! `name=value`, `$name`/`${name}` expansion (not inside single quotes), quoting and escapes, comments,
//! `;`, `load_env` (the `grubenv` block's variables), and inside entries `linux`/`linux16`/`linuxefi` and
//! `initrd`/`initrd16`/`initrdefi` (several initrds are concatenated, as GRUB does). `if`/`else` blocks
//! are not evaluated: the commands of every branch run in order, so the last assignment wins (Debian's
//! generated `set default=` is in the last branch). `function` bodies are skipped. Entries that load
//! anything but a Linux kernel (`multiboot`, `chainloader`, ...) are skipped with a warning.

use std::collections::HashMap;

use super::{grub_path, Entry, Format, Menu, MAX_ENTRIES, MAX_NESTING};

/// One piece of a word: literal text or a variable reference.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var(String),
}

/// A shell-like word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Word {
    parts: Vec<Part>,
    quoted: bool,
}

impl Word {
    /// The word's text when it has no variables (for keywords).
    fn plain(&self) -> Option<String> {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => s.push_str(l),
                Part::Var(_) => return None,
            }
        }
        Some(s)
    }

    fn is(&self, kw: &str) -> bool {
        !self.quoted && self.plain().as_deref() == Some(kw)
    }

    fn push_char(&mut self, c: char) {
        if let Some(Part::Lit(l)) = self.parts.last_mut() {
            l.push(c);
        } else {
            self.parts.push(Part::Lit(c.to_string()));
        }
    }
}

/// One command: its words and the line it starts on.
#[derive(Debug, Clone)]
struct Cmd {
    words: Vec<Word>,
    line: usize,
}

/// Splits `text` into commands (newline and `;` separate them).
fn lex(text: &str) -> Vec<Cmd> {
    let mut cmds = Vec::new();
    let mut words: Vec<Word> = Vec::new();
    let mut word: Option<Word> = None;
    let mut line = 1usize;
    let mut cmd_line = 1usize;
    let mut chars = text.chars().peekable();
    // A bare `{` ends its command (`menuentry 'x' { linux ...` on one line); a bare `}` is a command of
    // its own.
    let end_word =
        |word: &mut Option<Word>, words: &mut Vec<Word>, cmds: &mut Vec<Cmd>, line: usize| {
            let Some(w) = word.take() else { return };
            if w.is("}") && !words.is_empty() {
                cmds.push(Cmd {
                    words: std::mem::take(words),
                    line,
                });
            }
            let brace = w.is("{") || w.is("}");
            words.push(w);
            if brace {
                cmds.push(Cmd {
                    words: std::mem::take(words),
                    line,
                });
            }
        };
    while let Some(c) = chars.next() {
        match c {
            '\n' | ';' => {
                end_word(&mut word, &mut words, &mut cmds, cmd_line);
                if !words.is_empty() {
                    cmds.push(Cmd {
                        words: std::mem::take(&mut words),
                        line: cmd_line,
                    });
                }
                if c == '\n' {
                    line += 1;
                }
            }
            ' ' | '\t' | '\r' => end_word(&mut word, &mut words, &mut cmds, cmd_line),
            '#' if word.is_none() => {
                while chars.peek().is_some_and(|c| *c != '\n') {
                    chars.next();
                }
            }
            _ => {
                if word.is_none() && words.is_empty() {
                    cmd_line = line;
                }
                let w = word.get_or_insert_with(Word::default);
                match c {
                    '\\' => match chars.next() {
                        Some('\n') => line += 1,
                        Some(n) => w.push_char(n),
                        None => {}
                    },
                    '\'' => {
                        w.quoted = true;
                        w.parts.push(Part::Lit(String::new()));
                        for n in chars.by_ref() {
                            if n == '\'' {
                                break;
                            }
                            if n == '\n' {
                                line += 1;
                            }
                            w.push_char(n);
                        }
                    }
                    '"' => {
                        w.quoted = true;
                        w.parts.push(Part::Lit(String::new()));
                        while let Some(n) = chars.next() {
                            match n {
                                '"' => break,
                                '\\' => match chars.next() {
                                    Some(e @ ('$' | '"' | '\\')) => w.push_char(e),
                                    Some('\n') => line += 1,
                                    Some(e) => {
                                        w.push_char('\\');
                                        w.push_char(e);
                                    }
                                    None => {}
                                },
                                '$' => lex_var(&mut chars, w),
                                n => {
                                    if n == '\n' {
                                        line += 1;
                                    }
                                    w.push_char(n);
                                }
                            }
                        }
                    }
                    '$' => lex_var(&mut chars, w),
                    c => w.push_char(c),
                }
            }
        }
    }
    end_word(&mut word, &mut words, &mut cmds, cmd_line);
    if !words.is_empty() {
        cmds.push(Cmd {
            words,
            line: cmd_line,
        });
    }
    cmds
}

/// After a `$`: `${name}`, `$name`, or a lone `$`.
fn lex_var(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, w: &mut Word) {
    let mut name = String::new();
    if chars.peek() == Some(&'{') {
        chars.next();
        for n in chars.by_ref() {
            if n == '}' {
                break;
            }
            name.push(n);
        }
    } else {
        while let Some(n) = chars.peek() {
            if n.is_ascii_alphanumeric() || *n == '_' || *n == '?' {
                name.push(*n);
                chars.next();
            } else {
                break;
            }
        }
        if name.is_empty() {
            w.push_char('$');
            return;
        }
    }
    w.parts.push(Part::Var(name));
}

/// Where an item sits: its position, titles and ids so far.
#[derive(Debug, Clone, Default)]
struct Scope {
    position: Vec<usize>,
    titles: Vec<String>,
    ids: Vec<Option<String>>,
}

struct Parser<'a> {
    cmds: Vec<Cmd>,
    env: HashMap<String, String>,
    grubenv: Option<&'a str>,
    menu: Menu,
}

/// Parses a `grub.cfg`; `grubenv` is the environment block `load_env` reads.
pub fn parse(text: &str, grubenv: Option<&str>) -> Menu {
    let mut p = Parser {
        cmds: lex(text),
        env: HashMap::new(),
        grubenv,
        menu: Menu {
            format: Format::Grub2,
            entries: Vec::new(),
            default: None,
            warnings: Vec::new(),
        },
    };
    let mut i = 0;
    p.block(&mut i, &Scope::default());
    if i < p.cmds.len() {
        let line = p.cmds[i].line;
        p.menu.warnings.push(format!(
            "grub.cfg line {line}: unexpected '}}': the rest of the file is ignored"
        ));
    }
    p.menu.default = p.env.get("default").filter(|d| !d.is_empty()).cloned();
    p.menu
}

/// Parses a GRUB environment block (`# GRUB Environment Block`, `name=value` lines, `#` padding).
pub fn parse_grubenv(text: &str) -> HashMap<String, String> {
    let mut vars = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let mut value = String::new();
            let mut chars = v.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
            vars.insert(k.to_string(), value);
        }
    }
    vars
}

/// Leading keywords that introduce a command list rather than being commands.
const LIST_KEYWORDS: &[&str] = &["then", "else", "do"];
/// Commands that load something other than a Linux kernel.
const FOREIGN_LOADERS: &[&str] = &[
    "multiboot",
    "multiboot2",
    "chainloader",
    "module",
    "module2",
    "kfreebsd",
    "knetbsd",
    "kopenbsd",
    "appleloader",
    "xnu_kernel",
    "xnu_kernel64",
    "fwsetup",
    "legacy_kernel",
];

impl Parser<'_> {
    fn warn(&mut self, msg: String) {
        if self.menu.warnings.len() < MAX_ENTRIES {
            self.menu.warnings.push(msg);
        }
    }

    /// The words of command `i` without leading `then`/`else`/`do`, expanded with `env`.
    fn expand(&self, words: &[Word], env: &HashMap<String, String>) -> (Vec<String>, Vec<String>) {
        let mut out = Vec::new();
        let mut unset = Vec::new();
        for w in words {
            let mut s = String::new();
            for p in &w.parts {
                match p {
                    Part::Lit(l) => s.push_str(l),
                    Part::Var(v) => match env.get(v) {
                        Some(val) => s.push_str(val),
                        None => unset.push(v.clone()),
                    },
                }
            }
            // An unquoted expansion to nothing is no word at all.
            if !s.is_empty() || w.quoted {
                out.push(s);
            }
        }
        (out, unset)
    }

    /// Runs `set` or `name=value`; returns whether the command was an assignment.
    fn assign(&self, words: &[Word], env: &mut HashMap<String, String>) -> bool {
        let (expanded, _) = self.expand(words, env);
        let Some(first) = expanded.first() else {
            return false;
        };
        let text = if words[0].is("set") {
            match expanded.get(1) {
                Some(t) => t.clone(),
                None => return true,
            }
        } else if matches!(words[0].parts.first(), Some(Part::Lit(l)) if l.contains('=')) {
            first.clone()
        } else {
            return false;
        };
        if let Some((k, v)) = text.split_once('=') {
            let valid = !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if valid {
                env.insert(k.to_string(), v.to_string());
                return true;
            }
        }
        words[0].is("set")
    }

    /// Executes commands until a `}` (returned past) or the end, numbering items from 0 in `scope`.
    fn block(&mut self, i: &mut usize, scope: &Scope) {
        let mut counter = 0usize;
        while *i < self.cmds.len() {
            let cmd = self.cmds[*i].clone();
            *i += 1;
            let mut words = &cmd.words[..];
            while words
                .first()
                .is_some_and(|w| LIST_KEYWORDS.iter().any(|k| w.is(k)))
            {
                words = &words[1..];
            }
            let Some(first) = words.first() else { continue };
            if first.is("}") {
                if scope.position.is_empty() {
                    // A stray brace at top level: back up so `parse` reports it.
                    *i -= 1;
                }
                return;
            }
            if first.is("menuentry") || first.is("submenu") {
                let is_sub = first.is("submenu");
                let (title, id) = self.header(words);
                let opens = words.last().is_some_and(|w| w.is("{"));
                if !opens {
                    self.warn(format!(
                        "grub.cfg line {}: '{}' without a '{{' block: ignored",
                        cmd.line, title
                    ));
                    continue;
                }
                let mut inner = scope.clone();
                inner.position.push(counter);
                inner.titles.push(title.clone());
                inner.ids.push(id);
                counter += 1;
                if is_sub {
                    if inner.position.len() >= MAX_NESTING {
                        self.warn(format!(
                            "grub.cfg line {}: submenu '{title}' nested too deeply: skipped",
                            cmd.line
                        ));
                        self.skip_block(i);
                    } else {
                        self.block(i, &inner);
                    }
                } else {
                    let body = self.skip_block(i);
                    self.entry(inner, &body, cmd.line);
                }
            } else if first.is("function") {
                self.skip_block(i);
            } else if first.is("load_env") {
                if let Some(envtext) = self.grubenv {
                    self.env.extend(parse_grubenv(envtext));
                }
            } else if ["source", "configfile", "blscfg", "extract_entries_source"]
                .iter()
                .any(|k| first.is(k))
            {
                let name = first.plain().unwrap_or_default();
                self.warn(format!(
                    "grub.cfg line {}: '{name}' is not followed (its entries are not offered)",
                    cmd.line
                ));
            } else {
                let mut env = std::mem::take(&mut self.env);
                self.assign(words, &mut env);
                self.env = env;
            }
        }
    }

    /// Skips to the `}` matching an opened block, returning the commands inside.
    fn skip_block(&mut self, i: &mut usize) -> Vec<Cmd> {
        let mut depth = 1usize;
        let mut body = Vec::new();
        while *i < self.cmds.len() {
            let cmd = self.cmds[*i].clone();
            *i += 1;
            if cmd.words.first().is_some_and(|w| w.is("}")) {
                depth -= 1;
                if depth == 0 {
                    return body;
                }
            } else if cmd.words.last().is_some_and(|w| w.is("{")) {
                depth += 1;
            }
            body.push(cmd);
        }
        body
    }

    /// Title and id from a `menuentry`/`submenu` command's arguments.
    fn header(&self, words: &[Word]) -> (String, Option<String>) {
        let (args, _) = self.expand(&words[1..], &self.env);
        let mut title = None;
        let mut id = None;
        let mut it = args.iter().filter(|a| a.as_str() != "{");
        while let Some(a) = it.next() {
            match a.as_str() {
                "--class" | "--users" | "--hotkey" | "--source" => {
                    it.next();
                }
                "--id" => id = it.next().cloned(),
                a if a.starts_with("--") => {}
                // Debian writes `$menuentry_id_option 'gnulinux-...'`: when the option variable is
                // empty, the id remains as a second positional argument.
                _ if title.is_none() => title = Some(a.clone()),
                _ if id.is_none() => id = Some(a.clone()),
                _ => {}
            }
        }
        (title.unwrap_or_default(), id)
    }

    /// Interprets a menu entry's body.
    fn entry(&mut self, scope: Scope, body: &[Cmd], line: usize) {
        let title = scope.titles.last().cloned().unwrap_or_default();
        let mut env = self.env.clone();
        let mut kernel: Option<(String, Vec<String>, Vec<String>)> = None;
        let mut initrds = Vec::new();
        let mut foreign = None;
        for cmd in body {
            let Some(first) = cmd.words.first() else {
                continue;
            };
            if self.assign(&cmd.words, &mut env) {
                continue;
            }
            let name = first.plain().unwrap_or_default();
            let (args, unset) = self.expand(&cmd.words[1..], &env);
            match name.as_str() {
                "linux" | "linux16" | "linuxefi" => {
                    kernel = Some((
                        args.first().cloned().unwrap_or_default(),
                        args[1.min(args.len())..].to_vec(),
                        unset,
                    ));
                }
                "initrd" | "initrd16" | "initrdefi" => initrds = args,
                n if FOREIGN_LOADERS.contains(&n) => {
                    foreign.get_or_insert(name.clone());
                }
                _ => {}
            }
        }
        if let Some(f) = foreign {
            self.warn(format!(
                "grub.cfg line {line}: entry '{title}' uses '{f}', not a Linux kernel: skipped"
            ));
            return;
        }
        let Some((path, args, unset)) = kernel else {
            self.warn(format!(
                "grub.cfg line {line}: entry '{title}' has no 'linux' command: skipped"
            ));
            return;
        };
        let Some(kernel) = grub_path(&path) else {
            self.warn(format!("grub.cfg line {line}: entry '{title}' has no usable kernel path ('{path}'): skipped"));
            return;
        };
        for v in unset {
            self.warn(format!("grub.cfg line {line}: entry '{title}': variable ${v} is not set and expands to nothing"));
        }
        let mut paths = Vec::new();
        for r in &initrds {
            match grub_path(r) {
                Some(p) => paths.push(p),
                None => {
                    self.warn(format!("grub.cfg line {line}: entry '{title}' has an unusable initrd path ('{r}'): skipped"));
                    return;
                }
            }
        }
        if self.menu.entries.len() >= MAX_ENTRIES {
            self.warn(format!("grub.cfg line {line}: more than {MAX_ENTRIES} entries: '{title}' and later ones are ignored"));
            return;
        }
        self.menu.entries.push(Entry {
            position: scope.position,
            titles: scope.titles,
            ids: scope.ids,
            kernel,
            initrds: paths,
            args: args.join(" "),
            line,
        });
    }
}
