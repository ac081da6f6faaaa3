//! Boot configurations: GRUB 2 `grub.cfg` (+ `grubenv`), GRUB legacy `menu.lst`/`grub.conf`, and
//! syslinux/extlinux/isolinux configs, each parsed into one [`Menu`] of Linux entries.
//!
//! The parsers are pure (text in, menu out) and never fail on content: what they cannot understand (an
//! entry without a Linux kernel, a chainloader, a multiboot hypervisor, an `INCLUDE`) is left out with a
//! warning naming it and its line, never guessed at. Limits keep hostile files bounded: the file itself is
//! read up to [`MAX_CONFIG_BYTES`], at most [`MAX_ENTRIES`] entries and [`MAX_NESTING`] levels of blocks.

mod extlinux;
mod grub2;
mod legacy;

pub use extlinux::parse as parse_extlinux;
pub use grub2::{parse as parse_grub2, parse_grubenv};
pub use legacy::parse as parse_legacy;

/// The largest boot configuration read.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// The most entries kept; later ones are dropped with a warning.
pub const MAX_ENTRIES: usize = 512;
/// The deepest nesting of `{ }` blocks (GRUB 2) accepted.
pub const MAX_NESTING: usize = 16;

/// Which kind of configuration a menu came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// GRUB 2 `grub.cfg`.
    Grub2,
    /// GRUB legacy `menu.lst` / `grub.conf` (also pvgrub's).
    GrubLegacy,
    /// syslinux / extlinux / isolinux.
    Extlinux,
}

/// Where each format's configuration lives, in the order they are looked for (pygrub's order: GRUB 2,
/// then syslinux family, then GRUB legacy).
pub const CONFIG_PATHS: &[(&str, Format)] = &[
    ("/boot/grub/grub.cfg", Format::Grub2),
    ("/grub/grub.cfg", Format::Grub2),
    ("/boot/grub2/grub.cfg", Format::Grub2),
    ("/grub2/grub.cfg", Format::Grub2),
    ("/boot/isolinux/isolinux.cfg", Format::Extlinux),
    ("/isolinux/isolinux.cfg", Format::Extlinux),
    ("/boot/extlinux/extlinux.conf", Format::Extlinux),
    ("/boot/extlinux.conf", Format::Extlinux),
    ("/extlinux/extlinux.conf", Format::Extlinux),
    ("/extlinux.conf", Format::Extlinux),
    ("/boot/syslinux/syslinux.cfg", Format::Extlinux),
    ("/syslinux/syslinux.cfg", Format::Extlinux),
    ("/syslinux.cfg", Format::Extlinux),
    ("/boot/grub/menu.lst", Format::GrubLegacy),
    ("/boot/grub/grub.conf", Format::GrubLegacy),
    ("/grub/menu.lst", Format::GrubLegacy),
    ("/grub/grub.conf", Format::GrubLegacy),
];

/// One bootable Linux entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its position, as GRUB numbers it: `[2]` for the third top-level item, `[1, 0]` for the first
    /// entry of the submenu that is the second item. Unbootable items still take a number.
    pub position: Vec<usize>,
    /// Titles along the position (submenu title, then entry title).
    pub titles: Vec<String>,
    /// Ids (`--id`, or extlinux `LABEL`) along the position.
    pub ids: Vec<Option<String>>,
    /// Kernel path in the filesystem (absolute).
    pub kernel: String,
    /// Initial ramdisk paths, concatenated in this order (GRUB 2 `initrd a b`).
    pub initrds: Vec<String>,
    /// Kernel command line.
    pub args: String,
    /// Line of the entry in its file.
    pub line: usize,
}

impl Entry {
    /// The entry's title (the last of [`Entry::titles`]).
    pub fn title(&self) -> &str {
        self.titles.last().map_or("", String::as_str)
    }

    /// The position as GRUB writes it: `2`, `1>0`.
    pub fn position_string(&self) -> String {
        let parts: Vec<String> = self.position.iter().map(usize::to_string).collect();
        parts.join(">")
    }

    /// Whether `spec` (GRUB's `default`/`saved_entry` syntax: `>`-separated numbers, titles or ids)
    /// names this entry: `exact` requires as many components as the entry is deep, otherwise a prefix
    /// naming its submenu is enough.
    fn is_named_by(&self, parts: &[&str], exact: bool) -> bool {
        if parts.is_empty()
            || parts.len() > self.position.len()
            || (exact && parts.len() != self.position.len())
        {
            return false;
        }
        parts.iter().enumerate().all(|(i, p)| {
            p.parse::<usize>().ok() == Some(self.position[i])
                || self.titles[i] == *p
                || self.ids[i].as_deref() == Some(*p)
        })
    }
}

/// A parsed boot configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Menu {
    /// Which format.
    pub format: Format,
    /// The Linux entries, in file order.
    pub entries: Vec<Entry>,
    /// The default entry as the file names it (number, title, id or `>`-path), if it names one.
    pub default: Option<String>,
    /// What was skipped or not understood, with line numbers.
    pub warnings: Vec<String>,
}

impl Menu {
    /// The entry `spec` names: GRUB syntax (`2`, `1>0`, a title, an id, `Advanced options>Debian`).
    pub fn find(&self, spec: &str) -> Option<&Entry> {
        let spec = spec.trim();
        let parts: Vec<&str> = spec.split('>').collect();
        // A whole title may itself contain '>': try it as one component too.
        let whole = [spec];
        [true, false].iter().find_map(|exact| {
            self.entries
                .iter()
                .find(|e| e.is_named_by(&parts, *exact) || e.is_named_by(&whole, *exact))
        })
    }

    /// The entry to boot without `--entry`: the configured default, or the first entry when there is
    /// none or it names nothing bootable (with a warning saying so). `None` for a menu without entries.
    pub fn default_entry(&self) -> Option<(&Entry, Option<String>)> {
        let first = self.entries.first()?;
        match &self.default {
            None => Some((first, None)),
            Some(d) => match self.find(d) {
                Some(e) => Some((e, None)),
                None => Some((
                    first,
                    Some(format!(
                        "default entry '{d}' names no bootable entry: booting the first one, '{}'",
                        first.title()
                    )),
                )),
            },
        }
    }
}

/// Parses `text` in `format`; `grubenv` is GRUB 2's environment block beside `grub.cfg`, if any.
pub fn parse(format: Format, path: &str, text: &str, grubenv: Option<&str>) -> Menu {
    match format {
        Format::Grub2 => parse_grub2(text, grubenv),
        Format::GrubLegacy => parse_legacy(text),
        Format::Extlinux => parse_extlinux(path, text),
    }
}

/// Strips a GRUB device prefix (`(hd0,msdos1)/boot/vmlinuz` → `/boot/vmlinuz`) and makes the path
/// absolute. `None` for a path that names only a device or is empty.
pub fn grub_path(raw: &str) -> Option<String> {
    let p = if raw.starts_with('(') {
        raw.find(')').map(|i| &raw[i + 1..])?
    } else {
        raw
    };
    if p.is_empty() {
        return None;
    }
    Some(normalize(p))
}

/// Makes `path` absolute and resolves `.` and `..` lexically (`..` at the root stays at the root), so
/// every reader sees one canonical spelling.
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests;
