//! The child → parent report: a small framed format on one memfd, so the parent receives only what it
//! asked for (names, a command line, two files' bytes), each within its limit.
//!
//! ```text
//! "DOMUSBL1"                       magic
//! { tag: u8, len: u64 LE, bytes }  records, in any order; text records are UTF-8
//! tag 0, len 0                     end (nothing may follow)
//! ```
//!
//! Text records may appear once each (warnings up to [`MAX_WARNINGS`] times); the kernel and ramdisk data
//! records once each. The parser copies data records straight to the caller's files, checking their
//! lengths against [`Limits`], and fails on anything else: unknown tags, short records, a missing end.

use std::io::{self, Read, Seek, SeekFrom, Write};

/// The first 8 bytes of a report.
pub const MAGIC: &[u8; 8] = b"DOMUSBL1";
/// Longest text record (title, paths, command line, a warning, an error).
pub const MAX_TEXT: u64 = 8 << 10;
/// Most warnings kept.
pub const MAX_WARNINGS: usize = 64;

/// Record tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Tag {
    /// End of the report.
    End = 0,
    /// The chosen entry's title.
    Title = 1,
    /// The chosen entry's position (`2`, `1>0`).
    Position = 2,
    /// Which volume it was found on.
    Volume = 3,
    /// The boot configuration file read.
    Config = 4,
    /// Kernel path inside the guest's filesystem.
    KernelPath = 5,
    /// Ramdisk path(s) inside the guest's filesystem (space-separated).
    RamdiskPath = 6,
    /// The kernel command line.
    Args = 7,
    /// A warning.
    Warning = 8,
    /// Why no kernel was found (the child then exits non-zero).
    Error = 9,
    /// The kernel's bytes.
    KernelData = 10,
    /// The ramdisk's bytes.
    RamdiskData = 11,
}

impl Tag {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::End,
            1 => Self::Title,
            2 => Self::Position,
            3 => Self::Volume,
            4 => Self::Config,
            5 => Self::KernelPath,
            6 => Self::RamdiskPath,
            7 => Self::Args,
            8 => Self::Warning,
            9 => Self::Error,
            10 => Self::KernelData,
            11 => Self::RamdiskData,
            _ => return None,
        })
    }
}

/// Size limits of the data records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest kernel, bytes.
    pub kernel_bytes: u64,
    /// Largest ramdisk (all initrds together), bytes.
    pub ramdisk_bytes: u64,
}

impl Default for Limits {
    /// 128 MiB kernels, 1 GiB ramdisks.
    fn default() -> Self {
        Self {
            kernel_bytes: 128 << 20,
            ramdisk_bytes: 1 << 30,
        }
    }
}

/// What the child reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Title of the chosen entry (none when booting `--kernel` directly).
    pub title: Option<String>,
    /// Its position.
    pub position: Option<String>,
    /// The volume it came from.
    pub volume: Option<String>,
    /// The config file read.
    pub config: Option<String>,
    /// Kernel path in the guest.
    pub kernel_path: Option<String>,
    /// Ramdisk path(s) in the guest.
    pub ramdisk_path: Option<String>,
    /// Command line.
    pub args: Option<String>,
    /// Warnings.
    pub warnings: Vec<String>,
    /// The child's error, if it failed.
    pub error: Option<String>,
    /// Kernel bytes copied out.
    pub kernel_bytes: Option<u64>,
    /// Ramdisk bytes copied out.
    pub ramdisk_bytes: Option<u64>,
}

/// A malformed report.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// Wrong magic.
    #[error("report does not start with the expected magic")]
    Magic,
    /// Unknown tag.
    #[error("report has an unknown record tag {0}")]
    Tag(u8),
    /// A record longer than allowed.
    #[error("report record {tag:?} is {len} bytes, more than the {limit}-byte limit")]
    TooLong {
        /// Tag.
        tag: Tag,
        /// Its length.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// A record given twice.
    #[error("report record {0:?} appears twice")]
    Duplicate(Tag),
    /// Too many warnings.
    #[error("report has more than {MAX_WARNINGS} warnings")]
    TooManyWarnings,
    /// Text that is not UTF-8.
    #[error("report record {0:?} is not UTF-8")]
    Utf8(Tag),
    /// Bytes after the end record.
    #[error("report has bytes after its end record")]
    Trailing,
    /// Truncated.
    #[error("report is truncated")]
    Truncated,
    /// Reading the report or writing a copied file failed.
    #[error("copying the report")]
    Io(#[source] io::Error),
}

fn read_exact_or_truncated(r: &mut impl Read, buf: &mut [u8]) -> Result<(), ProtocolError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => ProtocolError::Truncated,
        _ => ProtocolError::Io(e),
    })
}

/// Parses a report from `r`, copying the kernel into `kernel` and the ramdisk into `ramdisk`.
///
/// # Errors
/// [`ProtocolError`] for anything but a well-formed report within `limits`.
pub fn parse(
    r: &mut impl Read,
    limits: Limits,
    kernel: &mut dyn Write,
    ramdisk: &mut dyn Write,
) -> Result<Report, ProtocolError> {
    let mut magic = [0u8; 8];
    read_exact_or_truncated(r, &mut magic)?;
    if &magic != MAGIC {
        return Err(ProtocolError::Magic);
    }
    let mut rep = Report::default();
    loop {
        let mut head = [0u8; 9];
        read_exact_or_truncated(r, &mut head)?;
        let tag = Tag::from_u8(head[0]).ok_or(ProtocolError::Tag(head[0]))?;
        let mut len_bytes = [0u8; 8];
        len_bytes.copy_from_slice(&head[1..]);
        let len = u64::from_le_bytes(len_bytes);
        let limit = match tag {
            Tag::End => 0,
            Tag::KernelData => limits.kernel_bytes,
            Tag::RamdiskData => limits.ramdisk_bytes,
            _ => MAX_TEXT,
        };
        if len > limit {
            return Err(ProtocolError::TooLong { tag, len, limit });
        }
        match tag {
            Tag::End => {
                let mut extra = [0u8; 1];
                return match r.read(&mut extra).map_err(ProtocolError::Io)? {
                    0 => Ok(rep),
                    _ => Err(ProtocolError::Trailing),
                };
            }
            Tag::KernelData | Tag::RamdiskData => {
                let is_kernel = tag == Tag::KernelData;
                let slot = if is_kernel {
                    &mut rep.kernel_bytes
                } else {
                    &mut rep.ramdisk_bytes
                };
                if slot.is_some() {
                    return Err(ProtocolError::Duplicate(tag));
                }
                let mut src = r.by_ref().take(len);
                let copied = if is_kernel {
                    io::copy(&mut src, kernel)
                } else {
                    io::copy(&mut src, ramdisk)
                }
                .map_err(ProtocolError::Io)?;
                if copied != len {
                    return Err(ProtocolError::Truncated);
                }
                *slot = Some(len);
            }
            _ => {
                let mut buf =
                    vec![0u8; usize::try_from(len).map_err(|_| ProtocolError::Truncated)?];
                read_exact_or_truncated(r, &mut buf)?;
                let text = String::from_utf8(buf).map_err(|_| ProtocolError::Utf8(tag))?;
                let slot = match tag {
                    Tag::Title => &mut rep.title,
                    Tag::Position => &mut rep.position,
                    Tag::Volume => &mut rep.volume,
                    Tag::Config => &mut rep.config,
                    Tag::KernelPath => &mut rep.kernel_path,
                    Tag::RamdiskPath => &mut rep.ramdisk_path,
                    Tag::Args => &mut rep.args,
                    Tag::Error => &mut rep.error,
                    _ => {
                        if rep.warnings.len() >= MAX_WARNINGS {
                            return Err(ProtocolError::TooManyWarnings);
                        }
                        rep.warnings.push(text);
                        continue;
                    }
                };
                if slot.is_some() {
                    return Err(ProtocolError::Duplicate(tag));
                }
                *slot = Some(text);
            }
        }
    }
}

/// Writes a report (the child's side).
#[derive(Debug)]
pub struct Writer<W: Write + Seek> {
    out: W,
    warnings: usize,
}

impl<W: Write + Seek> Writer<W> {
    /// Starts a report.
    ///
    /// # Errors
    /// Writing the magic failed.
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(MAGIC)?;
        Ok(Self { out, warnings: 0 })
    }

    /// A text record, cut to [`MAX_TEXT`] bytes at a character boundary. Warnings past
    /// [`MAX_WARNINGS`] are dropped.
    ///
    /// # Errors
    /// The write failed.
    pub fn text(&mut self, tag: Tag, text: &str) -> io::Result<()> {
        if tag == Tag::Warning {
            if self.warnings >= MAX_WARNINGS {
                return Ok(());
            }
            self.warnings += 1;
        }
        let mut end = text
            .len()
            .min(usize::try_from(MAX_TEXT).unwrap_or(usize::MAX));
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.head(tag, u64::try_from(end).unwrap_or(0))?;
        self.out.write_all(&text.as_bytes()[..end])
    }

    fn head(&mut self, tag: Tag, len: u64) -> io::Result<()> {
        let mut head = [0u8; 9];
        head[0] = tag as u8;
        head[1..].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&head)
    }

    /// A data record whose bytes `fill` writes; its length is patched in afterwards.
    ///
    /// # Errors
    /// `fill`'s error, or a failed write or seek.
    pub fn data<E: From<io::Error>>(
        &mut self,
        tag: Tag,
        fill: impl FnOnce(&mut W) -> Result<(), E>,
    ) -> Result<(), E> {
        let at = self.out.stream_position()?;
        self.head(tag, 0)?;
        fill(&mut self.out)?;
        let end = self.out.stream_position()?;
        let len = end - at - 9;
        self.out.seek(SeekFrom::Start(at + 1))?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.seek(SeekFrom::Start(end))?;
        Ok(())
    }

    /// Ends the report.
    ///
    /// # Errors
    /// The write failed.
    pub fn finish(mut self) -> io::Result<W> {
        self.head(Tag::End, 0)?;
        self.out.flush()?;
        Ok(self.out)
    }
}
