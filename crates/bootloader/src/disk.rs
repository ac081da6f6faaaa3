//! A read-only window onto the boot disk: the whole disk or one partition, as `Read + Seek` (and
//! ext4-view's `Ext4Read`), reading with `pread` so several windows share one descriptor.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Where the bytes come from: the boot disk's descriptor, or memory (tests and fuzzing).
#[derive(Debug)]
enum Backing {
    File(File),
    Bytes(Vec<u8>),
}

impl Backing {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        match self {
            Self::File(f) => f.read_at(buf, offset),
            Self::Bytes(b) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
                let n = buf.len().min(b.len() - start);
                buf[..n].copy_from_slice(&b[start..start + n]);
                Ok(n)
            }
        }
    }

    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += u64::try_from(n).map_err(|_| io::ErrorKind::InvalidData)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A byte range of the disk. Reads past its end return 0 bytes (end of file), never bytes beyond it.
#[derive(Debug, Clone)]
pub struct Region {
    disk: Arc<Backing>,
    start: u64,
    len: u64,
    pos: u64,
}

impl Region {
    /// The whole of `disk` (a regular file or a block device).
    ///
    /// # Errors
    /// The size cannot be determined (seek to the end failed).
    pub fn whole(disk: File) -> io::Result<Self> {
        let len = (&disk).seek(SeekFrom::End(0))?;
        Ok(Self {
            disk: Arc::new(Backing::File(disk)),
            start: 0,
            len,
            pos: 0,
        })
    }

    /// A disk held in memory (tests, fuzzing).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        Self {
            disk: Arc::new(Backing::Bytes(bytes)),
            start: 0,
            len,
            pos: 0,
        }
    }

    /// The sub-range `[offset, offset + len)` of this region, clipped to its end.
    pub fn slice(&self, offset: u64, len: u64) -> Self {
        let offset = offset.min(self.len);
        let len = len.min(self.len - offset);
        Self {
            disk: Arc::clone(&self.disk),
            start: self.start + offset,
            len,
            pos: 0,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads exactly `dst.len()` bytes at `offset` within the region.
    ///
    /// # Errors
    /// `UnexpectedEof` if the range passes the region's end; the disk's own read errors.
    pub fn read_exact_at(&self, offset: u64, dst: &mut [u8]) -> io::Result<()> {
        let want = u64::try_from(dst.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
        match offset.checked_add(want) {
            Some(end) if end <= self.len => self.disk.read_exact_at(dst, self.start + offset),
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "read of {want} bytes at offset {offset} passes the end of a {}-byte region",
                    self.len
                ),
            )),
        }
    }
}

impl Read for Region {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let got = self.disk.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += u64::try_from(got).map_err(|_| io::ErrorKind::InvalidData)?;
        Ok(got)
    }
}

impl Seek for Region {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the region",
            )),
        }
    }
}

/// The disk is read-only: fatfs needs `Write` in its bounds, and gets an error if it ever writes.
impl Write for Region {
    fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the boot disk is opened read-only",
        ))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ext4_view::Ext4Read for Region {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        Ok(self.read_exact_at(start_byte, dst)?)
    }
}
