//! GRUB legacy `menu.lst` / `grub.conf` (also pvgrub's): `default`, `title`, `kernel`, `initrd`.
//! Keywords may be separated from their arguments by spaces or `=`. Entries with `module`,
//! `chainloader` or no `kernel` are skipped with a warning; `default saved` is not supported (warned,
//! first entry).

use super::{grub_path, Entry, Format, Menu, MAX_ENTRIES};

#[derive(Default)]
struct Pending {
    title: String,
    line: usize,
    kernel: Option<(String, String)>,
    initrd: Option<String>,
    foreign: Option<String>,
}

/// Parses a GRUB legacy menu.
pub fn parse(text: &str) -> Menu {
    let mut menu = Menu {
        format: Format::GrubLegacy,
        entries: Vec::new(),
        default: None,
        warnings: Vec::new(),
    };
    let mut pending: Option<Pending> = None;
    let mut count = 0usize;
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (kw, rest) = match l.find(|c: char| c.is_whitespace() || c == '=') {
            Some(i) => (
                &l[..i],
                l[i + 1..].trim_start_matches(|c: char| c.is_whitespace() || c == '='),
            ),
            None => (l, ""),
        };
        let kw = kw.to_ascii_lowercase();
        match (kw.as_str(), pending.as_mut()) {
            ("title", _) => {
                finish(&mut menu, pending.take(), count.saturating_sub(1));
                count += 1;
                pending = Some(Pending {
                    title: rest.trim().to_string(),
                    line,
                    ..Pending::default()
                });
            }
            ("default", None) => {
                let d = rest.split_whitespace().next().unwrap_or("");
                if d == "saved" {
                    menu.warnings.push(format!(
                        "menu.lst line {line}: 'default saved' is not supported: using the first entry"
                    ));
                } else if !d.is_empty() {
                    menu.default = Some(d.to_string());
                }
            }
            ("kernel", Some(p)) => {
                let mut it = rest.splitn(2, char::is_whitespace);
                let path = it.next().unwrap_or("").to_string();
                let args = it.next().unwrap_or("").trim().to_string();
                p.kernel = Some((path, args));
            }
            ("initrd", Some(p)) => {
                p.initrd = rest.split_whitespace().next().map(str::to_string);
            }
            ("module" | "modulenounzip" | "chainloader" | "makeactive", Some(p)) => {
                p.foreign = Some(kw.clone());
            }
            _ => {}
        }
    }
    finish(&mut menu, pending, count.saturating_sub(1));
    menu
}

fn finish(menu: &mut Menu, p: Option<Pending>, position: usize) {
    let Some(p) = p else { return };
    let line = p.line;
    let title = p.title;
    if let Some(f) = p.foreign {
        menu.warnings.push(format!(
            "menu.lst line {line}: entry '{title}' uses '{f}', not a plain Linux kernel: skipped"
        ));
        return;
    }
    let Some((path, args)) = p.kernel else {
        menu.warnings.push(format!(
            "menu.lst line {line}: entry '{title}' has no 'kernel' line: skipped"
        ));
        return;
    };
    let Some(kernel) = grub_path(&path) else {
        menu.warnings.push(format!(
            "menu.lst line {line}: entry '{title}' has no usable kernel path ('{path}'): skipped"
        ));
        return;
    };
    let initrds = match p.initrd.as_deref().map(grub_path) {
        None => Vec::new(),
        Some(Some(i)) => vec![i],
        Some(None) => {
            menu.warnings.push(format!(
                "menu.lst line {line}: entry '{title}' has an unusable initrd path: skipped"
            ));
            return;
        }
    };
    if menu.entries.len() >= MAX_ENTRIES {
        menu.warnings.push(format!(
            "menu.lst line {line}: more than {MAX_ENTRIES} entries: '{title}' is ignored"
        ));
        return;
    }
    menu.entries.push(Entry {
        position: vec![position],
        titles: vec![title],
        ids: vec![None],
        kernel,
        initrds,
        args,
        line,
    });
}
