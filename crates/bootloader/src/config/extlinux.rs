//! syslinux / extlinux / isolinux configs: `DEFAULT`, `LABEL`, `KERNEL`/`LINUX`, `APPEND`, `INITRD`,
//! `MENU LABEL`, `MENU DEFAULT`. Keywords are case-insensitive; relative paths are relative to the
//! config file's directory. A global `APPEND` applies to labels without their own; `initrd=` inside
//! `APPEND` names the initrd when there is no `INITRD` line. Labels that boot COMBOOT/COM32 modules, a
//! local disk or another config are skipped with a warning; `INCLUDE` is not followed (warned).

use super::{normalize, Entry, Format, Menu, MAX_ENTRIES};

#[derive(Default)]
struct Label {
    name: String,
    title: Option<String>,
    line: usize,
    kernel: Option<String>,
    append: Option<String>,
    initrd: Option<String>,
    foreign: Option<String>,
}

/// Parses an extlinux/syslinux/isolinux config found at `path`.
pub fn parse(path: &str, text: &str) -> Menu {
    let dir = match path.rfind('/') {
        Some(i) => &path[..=i],
        None => "/",
    };
    let mut menu = Menu {
        format: Format::Extlinux,
        entries: Vec::new(),
        default: None,
        warnings: Vec::new(),
    };
    let mut labels: Vec<Label> = Vec::new();
    let mut global_append: Option<String> = None;
    let mut menu_default: Option<String> = None;
    let mut in_text = false;
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let l = raw.trim();
        if in_text {
            in_text = !l.eq_ignore_ascii_case("endtext");
            continue;
        }
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (kw, rest) = split_kw(l);
        let kw = kw.to_ascii_lowercase();
        let (kw, rest) = if kw == "menu" {
            let (k2, r2) = split_kw(rest);
            (format!("menu {}", k2.to_ascii_lowercase()), r2)
        } else {
            (kw, rest)
        };
        let cur = labels.last_mut();
        match (kw.as_str(), cur) {
            ("label", _) => labels.push(Label {
                name: rest.to_string(),
                line,
                ..Label::default()
            }),
            ("default", _) => menu.default = Some(rest.to_string()),
            ("text", _) if rest.eq_ignore_ascii_case("help") => in_text = true,
            ("include" | "menu include", _) => menu.warnings.push(format!(
                "syslinux config line {line}: INCLUDE {rest} is not followed (its labels are not offered)"
            )),
            ("append", None) => global_append = Some(rest.to_string()),
            ("append", Some(c)) => c.append = Some(rest.to_string()),
            ("kernel" | "linux", Some(c)) => c.kernel = Some(rest.to_string()),
            ("initrd", Some(c)) => c.initrd = Some(rest.to_string()),
            ("menu label", Some(c)) => c.title = Some(rest.replace('^', "")),
            ("menu default", Some(c)) => menu_default = Some(c.name.clone()),
            ("localboot" | "com32" | "boot" | "bss" | "pxe" | "fdimage" | "comboot" | "config", Some(c)) => {
                c.foreign = Some(kw.clone());
            }
            _ => {}
        }
    }
    if menu_default.is_some() {
        menu.default = menu_default;
    }
    for (i, label) in labels.into_iter().enumerate() {
        add(&mut menu, label, i, dir, global_append.as_deref());
    }
    // DEFAULT may name a label by its name or its menu title; syslinux also accepts a kernel command line
    // there, which is not guessed at.
    menu
}

fn split_kw(l: &str) -> (&str, &str) {
    match l.find(char::is_whitespace) {
        Some(i) => (&l[..i], l[i..].trim()),
        None => (l, ""),
    }
}

fn resolve(dir: &str, p: &str) -> String {
    if p.starts_with('/') {
        normalize(p)
    } else {
        normalize(&format!("{dir}{p}"))
    }
}

fn add(menu: &mut Menu, label: Label, position: usize, dir: &str, global_append: Option<&str>) {
    let line = label.line;
    let name = label.name;
    if let Some(f) = label.foreign {
        menu.warnings.push(format!(
            "syslinux config line {line}: label '{name}' uses {}, not a Linux kernel: skipped",
            f.to_uppercase()
        ));
        return;
    }
    let Some(kernel) = label.kernel.filter(|k| !k.is_empty()) else {
        menu.warnings.push(format!(
            "syslinux config line {line}: label '{name}' has no KERNEL/LINUX line: skipped"
        ));
        return;
    };
    let lower = kernel.to_ascii_lowercase();
    if [".c32", ".com", ".cbt", ".bss", ".0", ".bin"]
        .iter()
        .any(|ext| lower.ends_with(ext))
    {
        menu.warnings.push(format!(
            "syslinux config line {line}: label '{name}' boots the module {kernel}, not a Linux kernel: skipped"
        ));
        return;
    }
    let append = label.append.as_deref().or(global_append).unwrap_or("");
    let append = if append == "-" { "" } else { append };
    let mut initrd_arg = None;
    let args: Vec<&str> = append
        .split_whitespace()
        .filter(|a| match a.strip_prefix("initrd=") {
            Some(v) => {
                initrd_arg = Some(v.to_string());
                false
            }
            None => true,
        })
        .collect();
    let initrds = label
        .initrd
        .or(initrd_arg)
        .map(|i| {
            i.split(',')
                .filter(|p| !p.is_empty())
                .map(|p| resolve(dir, p))
                .collect()
        })
        .unwrap_or_default();
    if menu.entries.len() >= MAX_ENTRIES {
        menu.warnings.push(format!(
            "syslinux config line {line}: more than {MAX_ENTRIES} labels: '{name}' is ignored"
        ));
        return;
    }
    let title = label.title.unwrap_or_else(|| name.clone());
    menu.entries.push(Entry {
        position: vec![position],
        titles: vec![title],
        ids: vec![Some(name)],
        kernel: resolve(dir, &kernel),
        initrds,
        args: args.join(" "),
        line,
    });
}
