//! Finding what to boot on a disk (runs inside the sandboxed child, and in tests directly): volumes in
//! order, the first boot configuration found on each, the entry chosen, and then the kernel and ramdisk
//! copied into the report.

use std::io::{Seek, Write};

use crate::config::{self, Format, Menu, CONFIG_PATHS, MAX_CONFIG_BYTES};
use crate::disk::Region;
use crate::fs::{Filesystem, FsError, IsoError};
use crate::layout::{self, LayoutError};
use crate::protocol::{Limits, Tag, Writer};
use crate::request::BootRequest;

/// What was chosen, before any bytes are copied.
#[derive(Debug)]
pub struct Found {
    /// The filesystem it is on.
    pub fs: Filesystem,
    /// Which volume.
    pub volume: String,
    /// The config file read (none for `--kernel`).
    pub config: Option<String>,
    /// The entry's title and position (none for `--kernel`).
    pub entry: Option<(String, String)>,
    /// Kernel path.
    pub kernel: String,
    /// Ramdisk paths (concatenated).
    pub initrds: Vec<String>,
    /// Command line.
    pub args: String,
    /// Warnings collected on the way.
    pub warnings: Vec<String>,
}

/// Why nothing can be booted.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    /// The partition table is unusable.
    #[error("boot disk")]
    Layout(#[from] LayoutError),
    /// The disk has no bytes.
    #[error("the boot disk is empty")]
    Empty,
    /// The disk's first sector cannot be read.
    #[error("cannot read the boot disk")]
    Unreadable(#[source] std::io::Error),
    /// No volume had what was asked for.
    #[error("no boot configuration found ({})", .tried.join("; "))]
    NothingFound {
        /// Per volume, what was wrong.
        tried: Vec<String>,
    },
    /// `--entry` names no entry.
    #[error("--entry={spec} names no entry of {config} (entries: {})", .available.join(", "))]
    NoSuchEntry {
        /// What was asked for.
        spec: String,
        /// The config.
        config: String,
        /// `position 'title'` of each entry.
        available: Vec<String>,
    },
    /// Copying the kernel or ramdisk failed.
    #[error("{what} {path} on {volume}")]
    Copy {
        /// "kernel" or "ramdisk".
        what: &'static str,
        /// Path in the guest.
        path: String,
        /// Volume.
        volume: String,
        /// Cause.
        #[source]
        source: FsError,
    },
    /// Writing the report failed.
    #[error("writing the report")]
    Report(#[from] std::io::Error),
}

/// `error: cause: cause` in one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn is_not_found(e: &FsError) -> bool {
    match e {
        FsError::Ext(ext4_view::Ext4Error::NotFound | ext4_view::Ext4Error::NotADirectory) => true,
        FsError::Fat(io) => io.kind() == std::io::ErrorKind::NotFound,
        FsError::Iso(IsoError::NotFound(_)) => true,
        _ => false,
    }
}

/// Reads and parses the first boot configuration on `fs`; `Ok(None)` if there is none.
fn read_menu(fs: &Filesystem, notes: &mut Vec<String>) -> Option<(String, Menu)> {
    for (path, format) in CONFIG_PATHS {
        let bytes = match fs.read(path, MAX_CONFIG_BYTES) {
            Ok(b) => b,
            Err(e) if is_not_found(&e) => continue,
            Err(e) => {
                notes.push(format!("{path}: {}", chain(&e)));
                continue;
            }
        };
        let text = String::from_utf8_lossy(&bytes);
        let env = if *format == Format::Grub2 {
            let dir = &path[..path.rfind('/').unwrap_or(0)];
            fs.read(&format!("{dir}/grubenv"), 64 << 10)
                .ok()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        } else {
            None
        };
        let menu = config::parse(*format, path, &text, env.as_deref());
        if menu.entries.is_empty() {
            let why = if menu.warnings.is_empty() {
                String::new()
            } else {
                format!(": {}", menu.warnings.join("; "))
            };
            notes.push(format!("{path} has no bootable Linux entry{why}"));
            continue;
        }
        return Some(((*path).to_string(), menu));
    }
    None
}

/// Finds what `req` asks to boot on `disk`.
///
/// # Errors
/// [`FindError`]: an unusable partition table, nothing bootable on any volume, an `--entry` that names
/// nothing.
pub fn find(disk: &Region, req: &BootRequest) -> Result<Found, FindError> {
    let mut first = [0u8; 512];
    if disk.is_empty() {
        return Err(FindError::Empty);
    }
    if let Err(e) = disk.read_exact_at(
        0,
        &mut first[..usize::try_from(disk.len().min(512)).unwrap_or(512)],
    ) {
        return Err(FindError::Unreadable(e));
    }
    let (_, volumes) = layout::volumes(disk)?;
    let mut tried = Vec::new();
    for vol in volumes {
        let fs = match Filesystem::open(&vol.region) {
            Ok(fs) => fs,
            Err(e) => {
                tried.push(format!("{}: {}", vol.name, chain(&e)));
                continue;
            }
        };
        let fs_name = fs.kind().name();
        if let Some(kernel) = &req.kernel {
            if fs.is_file(kernel) {
                return Ok(Found {
                    fs,
                    volume: vol.name,
                    config: None,
                    entry: None,
                    kernel: kernel.clone(),
                    initrds: req.ramdisk.iter().cloned().collect(),
                    args: req.args.clone().unwrap_or_default(),
                    warnings: Vec::new(),
                });
            }
            tried.push(format!("{} ({fs_name}): no file {kernel}", vol.name));
            continue;
        }
        let mut notes = Vec::new();
        let Some((path, menu)) = read_menu(&fs, &mut notes) else {
            let detail = if notes.is_empty() {
                "no boot configuration (looked for /boot/grub/grub.cfg, menu.lst, extlinux.conf, isolinux.cfg and the other usual places)".to_string()
            } else {
                notes.join("; ")
            };
            tried.push(format!("{} ({fs_name}): {detail}", vol.name));
            continue;
        };
        let mut warnings = notes;
        warnings.extend(menu.warnings.iter().cloned());
        let entry = match &req.entry {
            Some(spec) => menu.find(spec).ok_or_else(|| FindError::NoSuchEntry {
                spec: spec.clone(),
                config: path.clone(),
                available: menu
                    .entries
                    .iter()
                    .map(|e| format!("{} '{}'", e.position_string(), e.title()))
                    .collect(),
            })?,
            None => {
                let (e, note) = menu
                    .default_entry()
                    .ok_or_else(|| FindError::NothingFound { tried: Vec::new() })?;
                warnings.extend(note);
                e
            }
        };
        let mut args = entry.args.clone();
        if let Some(extra) = req.args.as_deref().filter(|a| !a.is_empty()) {
            if !args.is_empty() {
                args.push(' ');
            }
            args.push_str(extra);
        }
        return Ok(Found {
            volume: vol.name,
            config: Some(path),
            entry: Some((entry.title().to_string(), entry.position_string())),
            kernel: entry.kernel.clone(),
            initrds: entry.initrds.clone(),
            args,
            warnings,
            fs,
        });
    }
    Err(FindError::NothingFound { tried })
}

/// Writes the report of `found`: names, command line, then the kernel and ramdisk bytes.
///
/// # Errors
/// [`FindError::Copy`] for a kernel or ramdisk that cannot be read or is too large; a failed write.
pub fn report<W: Write + Seek>(
    found: &Found,
    limits: Limits,
    w: &mut Writer<W>,
) -> Result<(), FindError> {
    for warning in &found.warnings {
        w.text(Tag::Warning, warning)?;
    }
    w.text(Tag::Volume, &found.volume)?;
    if let Some(c) = &found.config {
        w.text(Tag::Config, c)?;
    }
    if let Some((title, position)) = &found.entry {
        w.text(Tag::Title, title)?;
        w.text(Tag::Position, position)?;
    }
    w.text(Tag::KernelPath, &found.kernel)?;
    w.text(Tag::Args, &found.args)?;
    let copy_err = |what, path: &str| {
        let volume = found.volume.clone();
        let path = path.to_string();
        move |source| FindError::Copy {
            what,
            path,
            volume,
            source,
        }
    };
    w.data(Tag::KernelData, |out| {
        found
            .fs
            .copy(&found.kernel, limits.kernel_bytes, out)
            .map(|_| ())
            .map_err(copy_err("kernel", &found.kernel))
    })?;
    if !found.initrds.is_empty() {
        w.text(Tag::RamdiskPath, &found.initrds.join(" "))?;
        w.data(Tag::RamdiskData, |out| {
            let mut left = limits.ramdisk_bytes;
            for path in &found.initrds {
                let n = found
                    .fs
                    .copy(path, left, out)
                    .map_err(copy_err("ramdisk", path))?;
                left -= n;
            }
            Ok::<(), FindError>(())
        })?;
    }
    Ok(())
}
