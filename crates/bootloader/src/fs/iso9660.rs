//! A read-only ISO 9660 (ECMA-119) reader with Rock Ridge (IEEE P1282, via SUSP) alternate names: just
//! enough to look files up by path and read them. Written here because the crates.io readers either need
//! FUSE to build (cdfs) or ignore Rock Ridge names (which hold the real, lowercase, long names xorriso and
//! genisoimage write).
//!
//! Hostile images: every extent is checked against the image size, a directory may be at most
//! [`MAX_DIR_BYTES`] long, a path at most [`MAX_DEPTH`] components deep, and multi-extent files are
//! refused, so a lookup reads a bounded number of bytes and always ends.

use std::io;

use crate::disk::Region;

/// The most directory bytes read while looking up one path component.
pub const MAX_DIR_BYTES: u64 = 4 << 20;
/// The most components in a path.
pub const MAX_DEPTH: usize = 32;
/// Volume descriptors looked at before giving up on finding the primary one.
const MAX_DESCRIPTORS: u64 = 64;
/// ECMA-119 §6.2.1: the system area is the first 16 logical sectors of 2048 bytes.
const SECTOR: u64 = 2048;

/// The ISO 9660 image is unusable or a path is not in it.
#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    /// No primary volume descriptor.
    #[error("no primary volume descriptor in the first {MAX_DESCRIPTORS} descriptors")]
    NoPrimary,
    /// A logical block size other than 512, 1024 or 2048.
    #[error("logical block size {0} is invalid")]
    BlockSize(u16),
    /// A directory record that cannot be right.
    #[error("malformed directory record at byte {offset}")]
    BadRecord {
        /// Byte offset in the image.
        offset: u64,
    },
    /// An extent outside the image.
    #[error("extent at block {lba} ({len} bytes) lies outside the {image}-byte image")]
    Extent {
        /// First block.
        lba: u32,
        /// Length in bytes.
        len: u32,
        /// Image size.
        image: u64,
    },
    /// A directory larger than [`MAX_DIR_BYTES`].
    #[error("directory of {0} bytes is larger than the {MAX_DIR_BYTES}-byte limit")]
    DirTooLarge(u32),
    /// More than [`MAX_DEPTH`] components.
    #[error("path has more than {MAX_DEPTH} components")]
    TooDeep,
    /// Not found.
    #[error("{0}: no such file")]
    NotFound(String),
    /// A directory where a file was wanted, or the reverse.
    #[error("{0}: not a regular file")]
    NotAFile(String),
    /// A file recorded in several extents.
    #[error("{0}: multi-extent files are not supported")]
    MultiExtent(String),
    /// The disk read failed.
    #[error("reading the image")]
    Io(#[source] io::Error),
}

/// One directory record, decoded.
#[derive(Debug, Clone)]
struct Record {
    lba: u32,
    len: u32,
    is_dir: bool,
    not_final: bool,
    /// The ISO 9660 identifier without its `;1` version and trailing dot.
    iso_name: String,
    /// The Rock Ridge `NM` name, if any.
    rr_name: Option<String>,
}

impl Record {
    fn matches(&self, name: &str) -> bool {
        match &self.rr_name {
            Some(rr) => rr == name,
            None => self.iso_name.eq_ignore_ascii_case(name),
        }
    }
}

/// An open ISO 9660 image.
#[derive(Debug)]
pub struct Iso {
    region: Region,
    block: u64,
    root: Record,
}

impl Iso {
    /// Finds the primary volume descriptor and the root directory.
    ///
    /// # Errors
    /// [`IsoError`] for an image without a usable primary volume descriptor.
    pub fn open(region: Region) -> Result<Self, IsoError> {
        for i in 0..MAX_DESCRIPTORS {
            let mut d = [0u8; 2048];
            region
                .read_exact_at((16 + i) * SECTOR, &mut d)
                .map_err(IsoError::Io)?;
            if &d[1..6] != b"CD001" || d[0] == 255 {
                break;
            }
            if d[0] != 1 {
                continue;
            }
            let block = u16::from_le_bytes([d[128], d[129]]);
            if !matches!(block, 512 | 1024 | 2048) {
                return Err(IsoError::BlockSize(block));
            }
            let root = parse_record(&d[156..190], (16 + i) * SECTOR + 156, true)?.ok_or(
                IsoError::BadRecord {
                    offset: (16 + i) * SECTOR + 156,
                },
            )?;
            let iso = Self {
                region,
                block: u64::from(block),
                root,
            };
            iso.check_extent(&iso.root)?;
            return Ok(iso);
        }
        Err(IsoError::NoPrimary)
    }

    fn check_extent(&self, r: &Record) -> Result<u64, IsoError> {
        let start = u64::from(r.lba) * self.block;
        match start.checked_add(u64::from(r.len)) {
            Some(end) if end <= self.region.len() => Ok(start),
            _ => Err(IsoError::Extent {
                lba: r.lba,
                len: r.len,
                image: self.region.len(),
            }),
        }
    }

    /// Looks `path` up: its size and a reader for its data.
    ///
    /// # Errors
    /// [`IsoError`]: not found, a directory, a malformed or oversized directory on the way.
    pub fn open_file(&self, path: &str) -> Result<(u64, Region), IsoError> {
        let parts: Vec<&str> = path
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        if parts.len() > MAX_DEPTH {
            return Err(IsoError::TooDeep);
        }
        let mut cur = self.root.clone();
        for (i, part) in parts.iter().enumerate() {
            if !cur.is_dir {
                return Err(IsoError::NotFound(path.into()));
            }
            cur = self
                .lookup(&cur, part)?
                .ok_or_else(|| IsoError::NotFound(path.into()))?;
            if cur.not_final {
                return Err(IsoError::MultiExtent(path.into()));
            }
            if i + 1 < parts.len() && !cur.is_dir {
                return Err(IsoError::NotFound(path.into()));
            }
        }
        if cur.is_dir {
            return Err(IsoError::NotAFile(path.into()));
        }
        let start = self.check_extent(&cur)?;
        Ok((
            u64::from(cur.len),
            self.region.slice(start, u64::from(cur.len)),
        ))
    }

    /// Finds `name` in directory `dir`.
    fn lookup(&self, dir: &Record, name: &str) -> Result<Option<Record>, IsoError> {
        if u64::from(dir.len) > MAX_DIR_BYTES {
            return Err(IsoError::DirTooLarge(dir.len));
        }
        let start = self.check_extent(dir)?;
        let mut data = vec![0u8; usize::try_from(dir.len).unwrap_or(0)];
        self.region
            .read_exact_at(start, &mut data)
            .map_err(IsoError::Io)?;
        let mut off = 0usize;
        while off < data.len() {
            let len = usize::from(data[off]);
            if len == 0 {
                // Records never cross a block boundary: the rest of this block is padding.
                let block = usize::try_from(self.block).unwrap_or(2048);
                off = (off / block + 1) * block;
                continue;
            }
            let end = off + len;
            let offset = start + u64::try_from(off).unwrap_or(0);
            let rec = data.get(off..end).ok_or(IsoError::BadRecord { offset })?;
            if let Some(r) = parse_record(rec, offset, false)? {
                if r.matches(name) {
                    return Ok(Some(r));
                }
            }
            off = end;
        }
        Ok(None)
    }
}

/// Decodes one directory record (ECMA-119 §9.1). `None` for the `.` and `..` entries unless `keep_dot`.
fn parse_record(rec: &[u8], offset: u64, keep_dot: bool) -> Result<Option<Record>, IsoError> {
    let bad = || IsoError::BadRecord { offset };
    if rec.len() < 34 || usize::from(rec[0]) > rec.len() || rec[0] < 34 {
        return Err(bad());
    }
    let rec = &rec[..usize::from(rec[0])];
    let name_len = usize::from(rec[32]);
    let name = rec.get(33..33 + name_len).ok_or_else(bad)?;
    let lba = u32::from_le_bytes([rec[2], rec[3], rec[4], rec[5]]);
    let len = u32::from_le_bytes([rec[10], rec[11], rec[12], rec[13]]);
    let flags = rec[25];
    if name == [0] || name == [1] {
        // "." and "..": only the volume descriptor's root record (a ".") is ever kept, by `open`.
        return Ok(keep_dot.then(|| Record {
            lba,
            len,
            is_dir: true,
            not_final: false,
            iso_name: String::new(),
            rr_name: None,
        }));
    }
    let mut iso_name = String::from_utf8_lossy(name).into_owned();
    if let Some(semi) = iso_name.find(';') {
        iso_name.truncate(semi);
    }
    if iso_name.ends_with('.') {
        iso_name.pop();
    }
    // The system use area follows the name and a padding byte after an even-length name.
    let su_start = 33 + name_len + usize::from(name_len % 2 == 0);
    let rr_name = rec.get(su_start..).and_then(rock_ridge_name);
    Ok(Some(Record {
        lba,
        len,
        is_dir: flags & 0x02 != 0,
        not_final: flags & 0x80 != 0,
        iso_name,
        rr_name,
    }))
}

/// The Rock Ridge `NM` name in a system use area (SUSP entries: signature, length, version, data). `CE`
/// continuation areas are not followed; names fit in the record in practice.
fn rock_ridge_name(mut su: &[u8]) -> Option<String> {
    let mut name = Vec::new();
    let mut found = false;
    while su.len() >= 4 {
        let len = usize::from(su[2]);
        if len < 4 || len > su.len() {
            break;
        }
        if &su[..2] == b"NM" && len >= 5 {
            let flags = su[4];
            // Bits 1 and 2 mark "." and ".." aliases, which carry no name.
            if flags & 0x06 == 0 {
                name.extend_from_slice(&su[5..len]);
                found = true;
            }
        }
        if &su[..2] == b"ST" {
            break;
        }
        su = &su[len..];
    }
    found.then(|| String::from_utf8_lossy(&name).into_owned())
}
