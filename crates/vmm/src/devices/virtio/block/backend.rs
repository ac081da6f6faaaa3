//! Disk backends: a raw image file or a block device (`phy:`), opened read-only for `access=ro` and
//! cdroms, with O_DIRECT when the config says `direct-io-safe`.
//!
//! All I/O is positional (pread/pwrite family) so one open file serves every request; FLUSH is
//! `fdatasync`; DISCARD punches a hole in files and is BLKDISCARD on block devices; WRITE_ZEROES is
//! FALLOC_FL_ZERO_RANGE (or a hole punch when unmapping is allowed) on files and BLKZEROOUT on
//! block devices.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Sector size of the virtio-blk protocol.
pub const SECTOR: u64 = 512;

// <linux/fs.h> ioctls.
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
const BLKDISCARD: libc::c_ulong = 0x1277;
const BLKZEROOUT: libc::c_ulong = 0x127f;

/// A disk cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// open(2) failed.
    #[error("cannot open disk {path} ({mode})")]
    Open {
        /// Path.
        path: PathBuf,
        /// "read-only" or "read-write".
        mode: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Its size could not be read.
    #[error("cannot read the size of disk {path}")]
    Size {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Not a regular file or block device.
    #[error("disk {0} is neither a regular file nor a block device")]
    Kind(PathBuf),
}

/// An open disk.
#[derive(Debug)]
pub struct Backend {
    file: File,
    block_device: bool,
    read_only: bool,
    direct: bool,
    sectors: u64,
}

impl Backend {
    /// Opens `path`.
    ///
    /// # Errors
    /// [`BackendError`] naming the path.
    pub fn open(path: &Path, read_only: bool, direct: bool) -> Result<Self, BackendError> {
        let mode = if read_only { "read-only" } else { "read-write" };
        let mut o = OpenOptions::new();
        o.read(true).write(!read_only);
        if direct {
            o.custom_flags(libc::O_DIRECT);
        }
        let file = o.open(path).map_err(|source| BackendError::Open {
            path: path.to_owned(),
            mode,
            source,
        })?;
        Self::from_file(file, path, read_only, direct)
    }

    /// Serves an already open `file` (opened by whoever prepared the spec, with the access and
    /// `O_DIRECT` flag `read_only` and `direct` say); `path` is for messages.
    ///
    /// # Errors
    /// [`BackendError`] naming the path.
    pub fn from_file(
        file: File,
        path: &Path,
        read_only: bool,
        direct: bool,
    ) -> Result<Self, BackendError> {
        let size_err = |source| BackendError::Size {
            path: path.to_owned(),
            source,
        };
        let meta = file.metadata().map_err(size_err)?;
        let (block_device, bytes) = if meta.file_type().is_block_device() {
            let mut bytes: u64 = 0;
            // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points at `bytes`.
            let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut bytes) };
            if rc < 0 {
                return Err(size_err(std::io::Error::last_os_error()));
            }
            (true, bytes)
        } else if meta.is_file() {
            (false, meta.len())
        } else {
            return Err(BackendError::Kind(path.to_owned()));
        };
        Ok(Self {
            file,
            block_device,
            read_only,
            direct,
            sectors: bytes / SECTOR,
        })
    }

    /// The open file's descriptor (for io_uring).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }

    /// Capacity in 512-byte sectors (a trailing partial sector is not visible).
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Read-only.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Opened with O_DIRECT (buffers and offsets must be 512-byte aligned).
    pub fn direct(&self) -> bool {
        self.direct
    }

    /// preadv/pwritev over all of `iov` at `offset`, retrying short transfers.
    ///
    /// # Safety
    /// Every iovec must describe memory valid for the whole transfer (writable for reads).
    pub unsafe fn transfer(
        &self,
        write: bool,
        iov: &mut [libc::iovec],
        mut offset: u64,
    ) -> std::io::Result<()> {
        let mut first = 0usize;
        while first < iov.len() {
            let rest = iov.get(first..).unwrap_or_default();
            let cnt = libc::c_int::try_from(rest.len().min(1024)).unwrap_or(1024);
            let off = libc::off_t::try_from(offset)
                .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
            let fd = self.file.as_raw_fd();
            let n = if write {
                // SAFETY: the caller guarantees each iovec is valid memory; `rest` is a live slice.
                unsafe { libc::pwritev(fd, rest.as_ptr(), cnt, off) }
            } else {
                // SAFETY: as above; the iovecs are writable memory.
                unsafe { libc::preadv(fd, rest.as_ptr(), cnt, off) }
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
            let mut n = usize::try_from(n).unwrap_or(0);
            offset += n as u64;
            while n > 0 {
                let Some(v) = iov.get_mut(first) else { break };
                if n >= v.iov_len {
                    n -= v.iov_len;
                    first += 1;
                } else {
                    v.iov_base = v.iov_base.cast::<u8>().wrapping_add(n).cast();
                    v.iov_len -= n;
                    n = 0;
                }
            }
            while iov.get(first).is_some_and(|v| v.iov_len == 0) {
                first += 1;
            }
        }
        Ok(())
    }

    /// fdatasync.
    ///
    /// # Errors
    /// The host's error.
    pub fn flush(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// Discards (`zero == false`) or zeroes `len` bytes at `offset`; `unmap` lets zeroing free space.
    ///
    /// # Errors
    /// The host's error (EOPNOTSUPP where the file system or device cannot).
    pub fn discard_or_zero(
        &self,
        offset: u64,
        len: u64,
        zero: bool,
        unmap: bool,
    ) -> std::io::Result<()> {
        let fd = self.file.as_raw_fd();
        if self.block_device {
            let range: [u64; 2] = [offset, len];
            let op = if zero { BLKZEROOUT } else { BLKDISCARD };
            // SAFETY: both ioctls read a u64[2] (start, length) through the pointer, which points at `range`.
            let rc = unsafe { libc::ioctl(fd, op, range.as_ptr()) };
            return if rc < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            };
        }
        let mode = if zero && !unmap {
            libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE
        } else {
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE
        };
        let (off, l) = (
            libc::off_t::try_from(offset)
                .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?,
            libc::off_t::try_from(len)
                .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?,
        );
        // SAFETY: fallocate takes plain integers; `fd` is our open file.
        let rc = unsafe { libc::fallocate(fd, mode, off, l) };
        if rc < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_backend_reads_writes_discards() {
        let dir = std::env::temp_dir().join(format!("domus-blk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("d.img");
        std::fs::write(&p, vec![7u8; 8192 + 100]).unwrap();
        let b = Backend::open(&p, false, false).unwrap();
        assert_eq!(b.sectors(), 16);
        let mut buf = vec![0u8; 1024];
        let mut iov = [libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: 1024,
        }];
        // SAFETY: `buf` outlives the call and is 1024 bytes.
        unsafe { b.transfer(false, &mut iov, 512) }.unwrap();
        assert!(buf.iter().all(|&x| x == 7));
        b.discard_or_zero(0, 4096, true, false).unwrap();
        let mut iov = [libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: 1024,
        }];
        // SAFETY: as above.
        unsafe { b.transfer(false, &mut iov, 0) }.unwrap();
        assert!(buf.iter().all(|&x| x == 0));
        b.flush().unwrap();
        let ro = Backend::open(&p, true, false).unwrap();
        assert!(ro.read_only());
        let mut iov = [libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: 1024,
        }];
        // SAFETY: as above.
        assert!(unsafe { ro.transfer(true, &mut iov, 0) }.is_err());
        assert!(Backend::open(&dir.join("missing"), true, false).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
