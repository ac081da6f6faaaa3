//! An append-only file written through a shared memory mapping: the journal's write path.
//!
//! Appending copies bytes into a `MAP_SHARED` mapping of the file, so they are in the kernel's page cache
//! — and survive the process being killed, exactly as after write(2) — without a system call per append.
//! Blocks are reserved ahead with fallocate(2) in [`CHUNK`] steps (a full disk is then an error from
//! [`MappedFile::append`], never a SIGBUS on a page fault), and the mapping covers a large virtual range
//! so that growing the file rarely needs a new mapping. fdatasync(2) on the file writes mapped pages back
//! like written ones. The file's size runs ahead of its contents while open: the bytes past
//! [`MappedFile::len`] are zeros, and dropping the value cuts the file back to its contents.

use std::fs::File;
use std::io;
use std::ptr::NonNull;

use rustix::fs::FallocateFlags;
use rustix::mm::{MapFlags, ProtFlags};

/// Bytes reserved at a time.
pub const CHUNK: u64 = 16 * 1024;
/// Initial size of the mapping (virtual address space only).
const MAP_MIN: usize = 64 << 20;

/// An open append-only file.
#[derive(Debug)]
pub struct MappedFile {
    file: File,
    map: NonNull<u8>,
    map_len: usize,
    reserved: u64,
    len: u64,
}

// SAFETY: the mapping is owned by this value alone (never shared or aliased), so moving it to another
// thread moves exclusive access with it.
unsafe impl Send for MappedFile {}

fn map(file: &File, len: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: a fresh shared mapping chosen by the kernel (null hint) aliases no Rust memory; it stays
    // valid until `unmap` in `remap`/`drop`. Only pages below the reserved file size are ever touched.
    let p = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            file,
            0,
        )
    }?;
    NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))
}

impl MappedFile {
    /// Takes over `file` (opened read-write), whose first `len` bytes are its contents; anything after
    /// them is cut off.
    ///
    /// # Errors
    /// Resizing, reserving or mapping the file failed.
    pub fn new(file: File, len: u64) -> io::Result<MappedFile> {
        file.set_len(len)?;
        let map_len = MAP_MIN.max(usize::try_from(len).unwrap_or(usize::MAX) * 2);
        let map = map(&file, map_len)?;
        Ok(MappedFile {
            file,
            map,
            map_len,
            reserved: len,
            len,
        })
    }

    /// Bytes of contents.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file has no contents.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file, for fdatasync and duplicating.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Appends `data`: once this returns, the bytes are in the page cache.
    ///
    /// # Errors
    /// The disk is full or the file could not be grown or mapped; nothing was appended then.
    pub fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let end = self.len + data.len() as u64;
        if end > self.reserved {
            let want = end.div_ceil(CHUNK) * CHUNK;
            rustix::fs::fallocate(
                &self.file,
                FallocateFlags::empty(),
                self.reserved,
                want - self.reserved,
            )?;
            self.reserved = want;
        }
        let end_usize =
            usize::try_from(end).map_err(|_| io::Error::other("journal larger than memory"))?;
        if end_usize > self.map_len {
            self.remap(end_usize.saturating_mul(2))?;
        }
        let at = usize::try_from(self.len).map_err(|_| io::Error::other("journal too large"))?;
        // SAFETY: `at + data.len() <= map_len` (checked above): the offset stays inside the mapping.
        let dst = unsafe { self.map.as_ptr().add(at) };
        // SAFETY: `dst..dst + data.len()` lies in the mapping, below the reserved file size (so every
        // page is backed), and nothing else reads or writes the mapping while `&mut self` is held.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        self.len = end;
        Ok(())
    }

    fn remap(&mut self, len: usize) -> io::Result<()> {
        let new = map(&self.file, len)?;
        // SAFETY: the old mapping came from `map` with `map_len` bytes and is not referenced anywhere.
        unsafe {
            let _ = rustix::mm::munmap(self.map.as_ptr().cast(), self.map_len);
        }
        self.map = new;
        self.map_len = len;
        Ok(())
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        // SAFETY: as in `remap`: our own mapping, unreferenced.
        unsafe {
            let _ = rustix::mm::munmap(self.map.as_ptr().cast(), self.map_len);
        }
        if let Err(e) = self.file.set_len(self.len) {
            tracing::warn!(error = %e, "cannot cut the journal back to its contents");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_reach_the_file_before_drop_and_the_size_follows_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"head").unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut m = MappedFile::new(f, 4).unwrap();
        let big = vec![7u8; 3 * CHUNK as usize + 5];
        m.append(b"-one").unwrap();
        m.append(&big).unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(&on_disk[..8], b"head-one", "visible while open");
        assert_eq!(&on_disk[8..8 + big.len()], &big[..]);
        assert!(
            on_disk[8 + big.len()..].iter().all(|b| *b == 0),
            "reserved tail is zeros"
        );
        assert_eq!(m.len(), 8 + big.len() as u64);
        drop(m);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            8 + big.len() as u64
        );
    }

    #[test]
    fn grows_past_the_first_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let mut m = MappedFile::new(f, 0).unwrap();
        m.remap(8192).unwrap(); // as if the first mapping had been small
        let block = vec![1u8; 5000];
        for _ in 0..4 {
            m.append(&block).unwrap();
        }
        assert!(m.map_len >= 20000);
        drop(m);
        assert_eq!(std::fs::read(&path).unwrap(), vec![1u8; 20000]);
    }
}
