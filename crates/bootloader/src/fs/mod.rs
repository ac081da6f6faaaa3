//! Filesystems a boot disk may hold: recognising them by their magic numbers, and reading files from the
//! supported ones — ext2/3/4 (ext4-view), FAT12/16/32 (fatfs) and ISO 9660 with Rock Ridge names (our own
//! reader: the crates for it either need FUSE to build or ignore Rock Ridge names). Every other
//! filesystem that can be recognised is refused by name.
//!
//! Paths are absolute, `/`-separated, relative to the filesystem's root. Reads are bounded: a file larger
//! than the caller's limit is refused before any byte is read, and a file that yields fewer or more bytes
//! than its recorded size is an error.

pub mod iso9660;

use std::io::{self, Read, Seek, SeekFrom, Write};

use crate::disk::Region;
pub use iso9660::IsoError;

/// A filesystem this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    /// ext2, ext3 or ext4.
    Ext,
    /// FAT12, FAT16 or FAT32.
    Fat,
    /// ISO 9660 (CD/DVD images, installer ISOs).
    Iso9660,
}

impl FsKind {
    /// The name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ext => "ext2/3/4",
            Self::Fat => "FAT",
            Self::Iso9660 => "ISO 9660",
        }
    }
}

/// What a volume's first bytes say it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// A filesystem we read.
    Supported(FsKind),
    /// A filesystem (or container) we recognise but do not read.
    Unsupported(&'static str),
}

/// Recognises the filesystem on `r`, if any.
pub fn probe(r: &Region) -> Option<Probe> {
    let at = |off: u64, magic: &[u8]| {
        let mut buf = vec![0u8; magic.len()];
        r.read_exact_at(off, &mut buf).is_ok() && buf == magic
    };
    if at(0x8001, b"CD001") {
        return Some(Probe::Supported(FsKind::Iso9660));
    }
    if at(0x438, &[0x53, 0xef]) {
        return Some(Probe::Supported(FsKind::Ext));
    }
    const OTHERS: &[(u64, &[u8], &str)] = &[
        (0, b"XFSB", "XFS"),
        (0x10040, b"_BHRfS_M", "Btrfs"),
        (3, b"NTFS    ", "NTFS"),
        (3, b"EXFAT   ", "exFAT"),
        (0, b"LUKS\xba\xbe", "LUKS (encrypted)"),
        (512, b"LABELONE", "LVM physical volume"),
        (4086, b"SWAPSPACE2", "Linux swap"),
        (4086, b"SWAP-SPACE", "Linux swap"),
        (0, b"hsqs", "SquashFS"),
        (0x400, &[0x10, 0x20, 0xf5, 0xf2], "F2FS"),
        (0x10034, b"ReIsEr", "ReiserFS"),
        (0x8000, b"JFS1", "JFS"),
        (8192 + 1372, &[0x54, 0x19, 0x01, 0x00], "UFS1 (BSD)"),
        (65536 + 1372, &[0x19, 0x01, 0x54, 0x19], "UFS2 (BSD)"),
        (0, b"bcachefs", "bcachefs"),
    ];
    for (off, magic, name) in OTHERS {
        if at(*off, magic) {
            return Some(Probe::Unsupported(name));
        }
    }
    if is_fat_boot_sector(r) {
        return Some(Probe::Supported(FsKind::Fat));
    }
    None
}

/// A FAT BIOS parameter block: a jump instruction, a power-of-two sector size of 512..=4096 bytes, a
/// power-of-two cluster size, at least one reserved sector, one or two FATs, the 0x55AA signature.
fn is_fat_boot_sector(r: &Region) -> bool {
    let mut s = [0u8; 512];
    if r.read_exact_at(0, &mut s).is_err() || s[510..] != [0x55, 0xaa] {
        return false;
    }
    let bytes_per_sector = u16::from_le_bytes([s[11], s[12]]);
    let sectors_per_cluster = s[13];
    let reserved = u16::from_le_bytes([s[14], s[15]]);
    (s[0] == 0xeb || s[0] == 0xe9)
        && (512..=4096).contains(&bytes_per_sector)
        && bytes_per_sector.is_power_of_two()
        && sectors_per_cluster.is_power_of_two()
        && reserved >= 1
        && (1..=2).contains(&s[16])
}

/// Opening or reading a filesystem failed.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// A recognised filesystem we do not read.
    #[error("{0} filesystems are not supported (supported: ext2/3/4, FAT, ISO 9660)")]
    Unsupported(&'static str),
    /// Nothing recognisable.
    #[error("no filesystem recognised (supported: ext2/3/4, FAT, ISO 9660)")]
    Unrecognised,
    /// ext4-view reported a problem.
    #[error("ext2/3/4 filesystem")]
    Ext(#[source] ext4_view::Ext4Error),
    /// fatfs (or the disk under it) reported a problem.
    #[error("FAT filesystem")]
    Fat(#[source] io::Error),
    /// Our ISO 9660 reader reported a problem.
    #[error("ISO 9660 filesystem")]
    Iso(#[source] IsoError),
    /// A file is larger than allowed.
    #[error("{path} is {size} bytes, more than the {limit}-byte limit")]
    TooLarge {
        /// Path in the filesystem.
        path: String,
        /// Its recorded size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A file's data ended before its recorded size (or went on after it).
    #[error("{path} should hold {size} bytes but {got} could be read")]
    ShortRead {
        /// Path in the filesystem.
        path: String,
        /// Its recorded size.
        size: u64,
        /// What was read.
        got: u64,
    },
    /// Writing the copy failed.
    #[error("writing the copy of {path}")]
    Output {
        /// Path in the filesystem.
        path: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// An open filesystem.
pub enum Filesystem {
    /// ext2/3/4.
    Ext(ext4_view::Ext4),
    /// FAT.
    Fat(fatfs::FileSystem<Region>),
    /// ISO 9660.
    Iso(iso9660::Iso),
}

impl std::fmt::Debug for Filesystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Filesystem({})", self.kind().name())
    }
}

impl Filesystem {
    /// Opens the filesystem on `r`.
    ///
    /// # Errors
    /// [`FsError::Unsupported`] naming a filesystem we do not read, [`FsError::Unrecognised`], or the
    /// filesystem's own error for a damaged superblock.
    pub fn open(r: &Region) -> Result<Self, FsError> {
        match probe(r) {
            Some(Probe::Supported(FsKind::Ext)) => ext4_view::Ext4::load(Box::new(r.clone()))
                .map(Self::Ext)
                .map_err(FsError::Ext),
            Some(Probe::Supported(FsKind::Fat)) => {
                let opts = fatfs::FsOptions::new().update_accessed_date(false);
                fatfs::FileSystem::new(r.clone(), opts)
                    .map(Self::Fat)
                    .map_err(FsError::Fat)
            }
            Some(Probe::Supported(FsKind::Iso9660)) => iso9660::Iso::open(r.clone())
                .map(Self::Iso)
                .map_err(FsError::Iso),
            Some(Probe::Unsupported(name)) => Err(FsError::Unsupported(name)),
            None => Err(FsError::Unrecognised),
        }
    }

    /// Which filesystem this is.
    pub fn kind(&self) -> FsKind {
        match self {
            Self::Ext(_) => FsKind::Ext,
            Self::Fat(_) => FsKind::Fat,
            Self::Iso(_) => FsKind::Iso9660,
        }
    }

    /// Whether `path` names a regular file.
    pub fn is_file(&self, path: &str) -> bool {
        self.open_file(path).is_ok()
    }

    /// Reads all of `path` (at most `limit` bytes).
    ///
    /// # Errors
    /// [`FsError`]: missing file, too large, damaged filesystem.
    pub fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>, FsError> {
        let mut out = Vec::new();
        self.copy(path, limit, &mut out)?;
        Ok(out)
    }

    /// Copies `path` (at most `limit` bytes) into `out`, returning its size.
    ///
    /// # Errors
    /// [`FsError`]: missing file, too large, a size that does not match the data, damaged filesystem,
    /// or a failed write to `out`.
    pub fn copy(&self, path: &str, limit: u64, out: &mut dyn Write) -> Result<u64, FsError> {
        let (size, mut reader) = self.open_file(path)?;
        if size > limit {
            return Err(FsError::TooLarge {
                path: path.into(),
                size,
                limit,
            });
        }
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io_error(e)),
            };
            got += u64::try_from(n).unwrap_or(u64::MAX);
            if got > size {
                break;
            }
            out.write_all(&buf[..n]).map_err(|source| FsError::Output {
                path: path.into(),
                source,
            })?;
        }
        if got != size {
            return Err(FsError::ShortRead {
                path: path.into(),
                size,
                got,
            });
        }
        Ok(size)
    }

    fn io_error(&self, e: io::Error) -> FsError {
        match self {
            Self::Ext(_) => match e.downcast::<ext4_view::Ext4Error>() {
                Ok(inner) => FsError::Ext(inner),
                Err(e) => FsError::Fat(e),
            },
            Self::Fat(_) => FsError::Fat(e),
            Self::Iso(_) => FsError::Iso(IsoError::Io(e)),
        }
    }

    /// Opens a regular file: its recorded size and a reader for its data.
    fn open_file(&self, path: &str) -> Result<(u64, Box<dyn Read + '_>), FsError> {
        match self {
            Self::Ext(fs) => {
                let f = fs.open(path).map_err(FsError::Ext)?;
                Ok((f.metadata().len(), Box::new(f)))
            }
            Self::Fat(fs) => {
                let rel = path.trim_start_matches('/');
                let mut f = fs.root_dir().open_file(rel).map_err(FsError::Fat)?;
                let size = f.seek(SeekFrom::End(0)).map_err(FsError::Fat)?;
                f.seek(SeekFrom::Start(0)).map_err(FsError::Fat)?;
                Ok((size, Box::new(f)))
            }
            Self::Iso(fs) => {
                let (size, r) = fs.open_file(path).map_err(FsError::Iso)?;
                Ok((size, Box::new(r)))
            }
        }
    }
}
