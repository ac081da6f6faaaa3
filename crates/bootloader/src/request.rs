//! What the domain asks the bootloader for: pygrub's options, combined as libxl and pygrub combine them.
//!
//! libxl runs `pygrub [--kernel=K] [--ramdisk=R] [--args=CMDLINE] <bootloader_args...> <disk>` where K, R
//! and CMDLINE come from the config's `kernel`, `ramdisk` and command line (`cmdline`, or `root` +
//! `extra`); options given later win, so `bootloader_args` override the config. pygrub then boots:
//! - with a kernel path: that file from the guest's disk, the ramdisk path if any, and exactly the
//!   `--args` (no menu is read);
//! - otherwise: the menu entry chosen by `--entry` (else the configured default), with the entry's
//!   command line followed by the `--args`.
//!
//! `--entry` takes what GRUB's `default` takes: a number counted as GRUB counts (a submenu is one item;
//! `1>0` reaches into it; for menus without submenus this is pygrub's numbering), a title, a GRUB `--id`
//! or extlinux label, or a `>`-path of those. Unlike pygrub, an `--entry` that names nothing is an error
//! listing the entries, not a silent fall back to the default.

/// A `bootloader_args` option this implementation does not take.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgsError {
    /// An option pygrub does not have, or one that makes no sense here.
    #[error("bootloader_args: unknown option '{0}' (supported: --entry=N|TITLE, --kernel=PATH, --ramdisk=PATH, --args=ARGS, -q)")]
    Unknown(String),
    /// An option without its value.
    #[error("bootloader_args: option '{0}' needs a value")]
    MissingValue(String),
    /// A positional argument (the disk is always the domain's first disk).
    #[error(
        "bootloader_args: unexpected argument '{0}' (the boot disk is the domain's first disk)"
    )]
    Positional(String),
}

/// The request, after combining the config and `bootloader_args`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootRequest {
    /// `--entry`: a number, a title or a GRUB `>`-path.
    pub entry: Option<String>,
    /// `--kernel`: a kernel path inside the guest's filesystem.
    pub kernel: Option<String>,
    /// `--ramdisk`: a ramdisk path inside the guest's filesystem.
    pub ramdisk: Option<String>,
    /// `--args`: extra kernel command line.
    pub args: Option<String>,
}

/// Options pygrub takes that change nothing here (output plumbing, interactivity, debugging).
const IGNORED: &[&str] = &[
    "-q",
    "--quiet",
    "-i",
    "--interactive",
    "-n",
    "--not-really",
    "--debug",
    "--isconfig",
];
const IGNORED_WITH_VALUE: &[&str] = &[
    "--output",
    "--output-format",
    "--output-directory",
    "--offset",
    "--runas",
];

impl BootRequest {
    /// Builds the request from the config (`kernel`, `ramdisk`, the command line) and
    /// `bootloader_args`, as libxl orders them. Returns the notes about ignored options too.
    ///
    /// # Errors
    /// [`ArgsError`] for an unknown option, a missing value, or a positional argument.
    pub fn from_config(
        kernel: Option<&str>,
        ramdisk: Option<&str>,
        cmdline: Option<&str>,
        bootloader_args: &[String],
    ) -> Result<(Self, Vec<String>), ArgsError> {
        let mut req = Self {
            entry: None,
            kernel: kernel.filter(|k| !k.is_empty()).map(str::to_string),
            ramdisk: ramdisk.filter(|r| !r.is_empty()).map(str::to_string),
            args: cmdline.filter(|c| !c.is_empty()).map(str::to_string),
        };
        let notes = req.apply(bootloader_args)?;
        Ok((req, notes))
    }

    /// Applies pygrub-style options on top of this request (later options win).
    ///
    /// # Errors
    /// [`ArgsError`].
    pub fn apply(&mut self, args: &[String]) -> Result<Vec<String>, ArgsError> {
        let mut notes = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if IGNORED.contains(&a.as_str()) {
                if a == "-i" || a == "--interactive" {
                    notes.push(format!(
                        "bootloader_args: '{a}' ignored: there is no interactive menu"
                    ));
                }
                continue;
            }
            let (name, inline) = match a.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
                _ => (a.as_str(), None),
            };
            let known = ["--entry", "--kernel", "--ramdisk", "--args"].contains(&name)
                || IGNORED_WITH_VALUE.contains(&name);
            if !known {
                return Err(if a.starts_with('-') {
                    ArgsError::Unknown(a.clone())
                } else {
                    ArgsError::Positional(a.clone())
                });
            }
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| ArgsError::MissingValue(name.to_string()))?,
            };
            match name {
                "--entry" => self.entry = Some(value),
                "--kernel" => self.kernel = Some(value).filter(|v| !v.is_empty()),
                "--ramdisk" => self.ramdisk = Some(value).filter(|v| !v.is_empty()),
                "--args" => self.args = Some(value),
                _ => notes.push(format!(
                    "bootloader_args: '{name}' ignored: Domus handles the output itself"
                )),
            }
        }
        Ok(notes)
    }

    /// The request as `--name=value` options (how it is handed to the sandboxed child).
    pub fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, v) in [
            ("--entry", &self.entry),
            ("--kernel", &self.kernel),
            ("--ramdisk", &self.ramdisk),
            ("--args", &self.args),
        ] {
            if let Some(v) = v {
                out.push(format!("{name}={v}"));
            }
        }
        out
    }
}

/// Whether `bootloader` names pygrub: `pygrub`, or a path ending in `/pygrub` as old configs have
/// (`/usr/bin/pygrub`, `/usr/lib/xen-4.17/bin/pygrub`).
pub fn is_pygrub(bootloader: &str) -> bool {
    let b = bootloader.trim();
    b == "pygrub" || b.ends_with("/pygrub")
}
