//! [`GuestRam`]: the one handle devices get on guest RAM.
//!
//! Every translation of a guest physical address into host memory happens here. Devices never see a
//! raw pointer they made themselves: they borrow [`GuestIoVec`]s (a range checked to lie inside one
//! RAM region) for the host's scatter-gather I/O, and copy data in and out with
//! [`GuestRam::read_slice`] / [`GuestRam::write_slice`]. Every device write into guest RAM passes
//! [`GuestRam::mark_dirty`] (a write through `write_*`, an iovec borrowed for the device to write
//! into, a used-ring update reported by the transport), so dirty-page tracking for live migration
//! sees it once [`GuestRam::enable_dirty_log`] turned it on. It is off by default and then costs one
//! relaxed atomic load per write.
//!
//! Backing: anonymous private memory by default, with transparent huge pages asked for when the
//! machine has disks ([`GuestRam::advise_huge_pages`]); a shareable memfd ([`RamBacking::Memfd`]) for
//! consumers that need to map guest RAM elsewhere.

use std::fs::File;
use std::os::fd::FromRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use vm_memory::{
    Address, ByteValued, Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryError,
    GuestMemoryRegion, MemoryRegionAddress,
};

use super::{ram_regions, GuestMem};

/// Page size of the dirty log.
pub const DIRTY_PAGE: u64 = 4096;

/// How guest RAM is backed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RamBacking {
    /// Anonymous private memory (the default).
    #[default]
    Anonymous,
    /// A memfd mapped shared (another process can map the same RAM).
    Memfd,
}

/// Guest RAM could not be created.
#[derive(Debug, thiserror::Error)]
pub enum RamError {
    /// mmap of the regions failed.
    #[error("cannot map {bytes} bytes of guest RAM")]
    Map {
        /// Requested size.
        bytes: u64,
        /// Cause.
        #[source]
        source: vm_memory::mmap::FromRangesError,
    },
    /// memfd_create or ftruncate failed.
    #[error("cannot create a {bytes}-byte memfd for guest RAM")]
    Memfd {
        /// Requested size.
        bytes: u64,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Who writes into a borrowed range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The device only reads guest memory (a driver-readable buffer).
    DeviceReads,
    /// The device writes guest memory (marked dirty when borrowed).
    DeviceWrites,
}

/// A range of guest RAM that lies inside one region, resolved to host memory.
///
/// Valid for as long as any clone of the [`GuestRam`] it came from lives: guest RAM is mapped once
/// and unmapped only when the last clone is dropped, and every device keeps a clone for as long as
/// it has I/O in flight.
#[derive(Debug, Clone, Copy)]
pub struct GuestIoVec {
    hva: NonNull<u8>,
    len: usize,
    gpa: GuestAddress,
}

// SAFETY: a GuestIoVec only names memory of the guest RAM mapping (checked in `GuestRam::iovec`),
// which is shared by every thread of the VMM and stays mapped while the GuestRam lives (see the type's
// docs); it carries no thread-affine state, so it may move to and be shared with I/O threads.
unsafe impl Send for GuestIoVec {}
// SAFETY: as above; `&GuestIoVec` only gives read access to the address and length.
unsafe impl Sync for GuestIoVec {}

impl GuestIoVec {
    /// Guest physical address of the range.
    pub fn gpa(&self) -> GuestAddress {
        self.gpa
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the host address and the length are multiples of `align` (O_DIRECT needs 512).
    pub fn is_aligned(&self, align: usize) -> bool {
        align != 0 && (self.hva.as_ptr() as usize) % align == 0 && self.len % align == 0
    }

    /// The part of the range starting `skip` bytes in (empty when `skip` >= the length).
    #[must_use]
    pub fn tail(&self, skip: usize) -> Self {
        let skip = skip.min(self.len);
        Self {
            // `skip` <= len keeps the pointer inside (or one past) the checked range.
            hva: NonNull::new(self.hva.as_ptr().wrapping_add(skip)).unwrap_or(self.hva),
            len: self.len - skip,
            gpa: GuestAddress(self.gpa.0.wrapping_add(skip as u64)),
        }
    }

    /// The first `len` bytes of the range (at most its length).
    #[must_use]
    pub fn head(&self, len: usize) -> Self {
        Self {
            len: len.min(self.len),
            ..*self
        }
    }

    /// The range as a `struct iovec` for preadv/pwritev/io_uring.
    pub fn as_libc(&self) -> libc::iovec {
        libc::iovec {
            iov_base: self.hva.as_ptr().cast(),
            iov_len: self.len,
        }
    }
}

/// Dirty bitmap of one region (one bit per [`DIRTY_PAGE`]).
struct RegionLog {
    start: u64,
    len: u64,
    bits: Vec<AtomicU64>,
}

/// The dirty log: off until enabled, then one bit per page per region.
#[derive(Default)]
struct DirtyLog {
    enabled: AtomicBool,
    regions: OnceLock<Vec<RegionLog>>,
}

struct Inner {
    mem: GuestMem,
    backing: RamBacking,
    dirty: DirtyLog,
}

/// Guest RAM as devices see it (cheap to clone: one reference count).
#[derive(Clone)]
pub struct GuestRam {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GuestRam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestRam")
            .field(
                "bytes",
                &self.inner.mem.iter().map(|r| r.len()).sum::<u64>(),
            )
            .field("backing", &self.inner.backing)
            .finish_non_exhaustive()
    }
}

impl GuestRam {
    /// Maps `mem_bytes` of guest RAM laid out as the machine model says ([`ram_regions`]), not yet
    /// touched: the host backs only the pages the guest uses.
    ///
    /// # Errors
    /// [`RamError`] when the host refuses the mapping or the memfd.
    pub fn new(mem_bytes: u64, backing: RamBacking) -> Result<Self, RamError> {
        let ranges = ram_regions(mem_bytes);
        let mem = match backing {
            RamBacking::Anonymous => GuestMem::from_ranges(&ranges),
            RamBacking::Memfd => {
                let file = Arc::new(memfd(mem_bytes).map_err(|source| RamError::Memfd {
                    bytes: mem_bytes,
                    source,
                })?);
                let mut offset = 0u64;
                let with_files: Vec<_> = ranges
                    .iter()
                    .map(|&(gpa, len)| {
                        let fo = FileOffset::from_arc(Arc::clone(&file), offset);
                        offset += len as u64;
                        (gpa, len, Some(fo))
                    })
                    .collect();
                GuestMem::from_ranges_with_files(with_files)
            }
        }
        .map_err(|source| RamError::Map {
            bytes: mem_bytes,
            source,
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                mem,
                backing,
                dirty: DirtyLog::default(),
            }),
        })
    }

    /// The underlying mapping, for what is not a device write: KVM slot registration, loading the
    /// kernel and firmware tables before the guest runs, and virtio-queue's ring accessors (whose
    /// used-ring writes the transport reports through [`GuestRam::mark_dirty`]).
    pub fn mmap(&self) -> &GuestMem {
        &self.inner.mem
    }

    /// How the RAM is backed.
    pub fn backing(&self) -> RamBacking {
        self.inner.backing
    }

    /// Asks for transparent huge pages on every region (a hint: refusals are logged at debug). The
    /// machine does so when it has disks: O_DIRECT transfers pin guest buffers page by page, and 2 MiB
    /// pages make a 1 MiB transfer one pin instead of 256 (QEMU does the same).
    pub fn advise_huge_pages(&self) {
        for r in self.inner.mem.iter() {
            let Ok(host) = r.get_host_address(MemoryRegionAddress(0)) else {
                continue;
            };
            let Ok(len) = usize::try_from(r.len()) else {
                continue;
            };
            // SAFETY: `host`/`len` is exactly one live guest RAM mapping owned by `self`;
            // MADV_HUGEPAGE only changes how the kernel backs it, never its contents or validity.
            let rc = unsafe { libc::madvise(host.cast(), len, libc::MADV_HUGEPAGE) };
            if rc != 0 {
                tracing::debug!(error = %std::io::Error::last_os_error(), "MADV_HUGEPAGE refused");
            }
        }
    }

    /// Whether `[gpa, gpa + len)` lies inside one RAM region.
    pub fn is_ram(&self, gpa: GuestAddress, len: usize) -> bool {
        self.inner.mem.get_slice(gpa, len.max(1)).is_ok()
    }

    /// Gives the pages of `[gpa, gpa + len)` back to the host (a balloon inflated them): anonymous
    /// memory is dropped with `MADV_DONTNEED` (the guest reads zeros if it touches them again), a
    /// memfd gets a hole punched (`fallocate(PUNCH_HOLE)`: dropping the mapping alone would keep the
    /// shared file's pages). The range must lie inside one RAM region and be page-aligned; the pages
    /// are marked dirty (their contents changed to zeros).
    ///
    /// # Errors
    /// The range is not page-aligned RAM inside one region, or the host refused.
    pub fn discard(&self, gpa: GuestAddress, len: usize) -> std::io::Result<()> {
        let bad = || std::io::Error::from(std::io::ErrorKind::InvalidInput);
        if gpa.0 % DIRTY_PAGE != 0 || len as u64 % DIRTY_PAGE != 0 || len == 0 {
            return Err(bad());
        }
        gpa.checked_add(len as u64).ok_or_else(bad)?;
        let region = self.inner.mem.find_region(gpa).ok_or_else(bad)?;
        let offset = gpa.0 - region.start_addr().raw_value();
        if offset
            .checked_add(len as u64)
            .is_none_or(|end| end > region.len())
        {
            return Err(bad());
        }
        let host = region
            .get_host_address(MemoryRegionAddress(offset))
            .map_err(|_| bad())?;
        match region.file_offset() {
            Some(fo) => {
                use std::os::fd::AsRawFd;
                let at = fo.start().checked_add(offset).ok_or_else(bad)?;
                let at = libc::off_t::try_from(at).map_err(|_| bad())?;
                let n = libc::off_t::try_from(len).map_err(|_| bad())?;
                // SAFETY: plain syscall on the memfd that backs this region; the range is the part of
                // the file behind the checked guest range, so no other mapping's data is affected.
                let rc = unsafe {
                    libc::fallocate(
                        fo.file().as_raw_fd(),
                        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                        at,
                        n,
                    )
                };
                if rc != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            None => {
                // SAFETY: `host`/`len` lies inside one live guest RAM mapping owned by `self`
                // (checked above); MADV_DONTNEED on private anonymous memory only replaces its pages
                // with zero-fill-on-demand ones: the mapping stays valid for every other user.
                let rc = unsafe { libc::madvise(host.cast(), len, libc::MADV_DONTNEED) };
                if rc != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
        self.mark_dirty(gpa, len);
        Ok(())
    }

    /// Borrows `[gpa, gpa + len)` for host I/O; the range must lie inside one RAM region. A range the
    /// device writes into is marked dirty now.
    ///
    /// # Errors
    /// The range leaves RAM, crosses a region boundary or overflows.
    pub fn iovec(
        &self,
        gpa: GuestAddress,
        len: usize,
        dir: Direction,
    ) -> Result<GuestIoVec, GuestMemoryError> {
        gpa.checked_add(len as u64)
            .ok_or(GuestMemoryError::InvalidGuestAddress(gpa))?;
        let slice = self.inner.mem.get_slice(gpa, len.max(1))?;
        let hva = NonNull::new(slice.ptr_guard_mut().as_ptr())
            .ok_or(GuestMemoryError::InvalidGuestAddress(gpa))?;
        if dir == Direction::DeviceWrites {
            self.mark_dirty(gpa, len);
        }
        Ok(GuestIoVec { hva, len, gpa })
    }

    /// Copies `buf.len()` bytes from guest RAM at `gpa`.
    ///
    /// # Errors
    /// The range is not RAM.
    pub fn read_slice(&self, buf: &mut [u8], gpa: GuestAddress) -> Result<(), GuestMemoryError> {
        self.inner.mem.read_slice(buf, gpa)
    }

    /// Reads a plain-data object from guest RAM at `gpa`.
    ///
    /// # Errors
    /// The range is not RAM.
    pub fn read_obj<T: ByteValued>(&self, gpa: GuestAddress) -> Result<T, GuestMemoryError> {
        self.inner.mem.read_obj(gpa)
    }

    /// Copies `buf` into guest RAM at `gpa` (marks the pages dirty).
    ///
    /// # Errors
    /// The range is not RAM.
    pub fn write_slice(&self, buf: &[u8], gpa: GuestAddress) -> Result<(), GuestMemoryError> {
        self.inner.mem.write_slice(buf, gpa)?;
        self.mark_dirty(gpa, buf.len());
        Ok(())
    }

    /// Writes a plain-data object into guest RAM at `gpa` (marks the pages dirty).
    ///
    /// # Errors
    /// The range is not RAM.
    pub fn write_obj<T: ByteValued>(
        &self,
        val: T,
        gpa: GuestAddress,
    ) -> Result<(), GuestMemoryError> {
        self.inner.mem.write_obj(val, gpa)?;
        self.mark_dirty(gpa, std::mem::size_of::<T>());
        Ok(())
    }

    /// The dirty hook: records that the device wrote `[gpa, gpa + len)` (no-op while the log is off).
    pub fn mark_dirty(&self, gpa: GuestAddress, len: usize) {
        let log = &self.inner.dirty;
        if !log.enabled.load(Ordering::Relaxed) || len == 0 {
            return;
        }
        let Some(regions) = log.regions.get() else {
            return;
        };
        let (first, end) = (gpa.0, gpa.0.saturating_add(len as u64));
        for r in regions {
            let (lo, hi) = (first.max(r.start), end.min(r.start + r.len));
            if lo >= hi {
                continue;
            }
            for page in (lo - r.start) / DIRTY_PAGE..=(hi - 1 - r.start) / DIRTY_PAGE {
                let (word, bit) = (page / 64, page % 64);
                if let Some(w) = usize::try_from(word).ok().and_then(|i| r.bits.get(i)) {
                    w.fetch_or(1 << bit, Ordering::Relaxed);
                }
            }
        }
    }

    /// Turns device-write dirty tracking on (the migration issue uses it; off by default).
    pub fn enable_dirty_log(&self) {
        let log = &self.inner.dirty;
        log.regions.get_or_init(|| {
            self.inner
                .mem
                .iter()
                .map(|r| {
                    let pages = r.len().div_ceil(DIRTY_PAGE);
                    let words = usize::try_from(pages.div_ceil(64)).unwrap_or(0);
                    RegionLog {
                        start: r.start_addr().raw_value(),
                        len: r.len(),
                        bits: (0..words).map(|_| AtomicU64::new(0)).collect(),
                    }
                })
                .collect()
        });
        log.enabled.store(true, Ordering::SeqCst);
    }

    /// Returns the guest addresses of the pages marked dirty since the last call, and clears them.
    pub fn take_dirty_pages(&self) -> Vec<GuestAddress> {
        let mut out = Vec::new();
        let Some(regions) = self.inner.dirty.regions.get() else {
            return out;
        };
        for r in regions {
            for (i, w) in r.bits.iter().enumerate() {
                let mut v = w.swap(0, Ordering::Relaxed);
                while v != 0 {
                    let bit = u64::from(v.trailing_zeros());
                    v &= v - 1;
                    out.push(GuestAddress(r.start + (i as u64 * 64 + bit) * DIRTY_PAGE));
                }
            }
        }
        out
    }
}

/// An anonymous memory file of `bytes` bytes (close-on-exec).
fn memfd(bytes: u64) -> std::io::Result<File> {
    let name = c"domus-guest-ram";
    // SAFETY: `name` is a valid NUL-terminated string; memfd_create returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a freshly created descriptor nothing else owns; File takes ownership.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(bytes)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iovecs_are_checked_and_writes_marked_dirty() {
        let ram = GuestRam::new(2 << 20, RamBacking::Anonymous).unwrap();
        assert!(ram
            .iovec(GuestAddress(0x1000), 512, Direction::DeviceReads)
            .is_ok());
        assert!(ram
            .iovec(GuestAddress((2 << 20) - 256), 512, Direction::DeviceReads)
            .is_err());
        assert!(ram
            .iovec(GuestAddress(u64::MAX - 10), 512, Direction::DeviceReads)
            .is_err());
        // Off by default: nothing is recorded.
        ram.write_obj(7u32, GuestAddress(0x2000)).unwrap();
        assert!(ram.take_dirty_pages().is_empty());
        ram.enable_dirty_log();
        ram.write_slice(&[1; 5000], GuestAddress(0x3ff0)).unwrap();
        let _w = ram
            .iovec(GuestAddress(0x10_0000), 1, Direction::DeviceWrites)
            .unwrap();
        let _r = ram
            .iovec(GuestAddress(0x11_0000), 4096, Direction::DeviceReads)
            .unwrap();
        assert_eq!(
            ram.take_dirty_pages(),
            [0x3000, 0x4000, 0x5000, 0x10_0000].map(GuestAddress)
        );
        assert!(ram.take_dirty_pages().is_empty(), "taking clears");
    }

    #[test]
    fn iovec_views() {
        let ram = GuestRam::new(2 << 20, RamBacking::Anonymous).unwrap();
        let v = ram
            .iovec(GuestAddress(0x2000), 1024, Direction::DeviceReads)
            .unwrap();
        assert!(v.is_aligned(512));
        let t = v.tail(100);
        assert_eq!((t.len(), t.gpa()), (924, GuestAddress(0x2064)));
        assert!(!t.is_aligned(512));
        assert_eq!(v.head(10).len(), 10);
        assert!(v.tail(5000).is_empty());
        ram.write_slice(b"abc", GuestAddress(0x2000)).unwrap();
        let iov = v.as_libc();
        assert_eq!(iov.iov_len, 1024);
    }

    fn resident_pages(ram: &GuestRam, gpa: u64, pages: usize) -> usize {
        let r = ram.mmap().find_region(GuestAddress(gpa)).unwrap();
        let off = gpa - r.start_addr().raw_value();
        let host = r.get_host_address(MemoryRegionAddress(off)).unwrap();
        let mut vec = vec![0u8; pages];
        // SAFETY: test: mincore on a live mapping of `pages` pages.
        let rc = unsafe { libc::mincore(host.cast(), pages * 4096, vec.as_mut_ptr()) };
        assert_eq!(rc, 0);
        vec.iter().filter(|b| **b & 1 != 0).count()
    }

    #[test]
    fn discard_returns_pages_to_the_host() {
        for backing in [RamBacking::Anonymous, RamBacking::Memfd] {
            let ram = GuestRam::new(4 << 20, backing).unwrap();
            ram.write_slice(&[7u8; 16 * 4096], GuestAddress(0x10_0000))
                .unwrap();
            assert_eq!(resident_pages(&ram, 0x10_0000, 16), 16, "{backing:?}");
            ram.discard(GuestAddress(0x10_0000), 8 * 4096).unwrap();
            assert_eq!(resident_pages(&ram, 0x10_0000, 16), 8, "{backing:?}");
            // The guest reads zeros there afterwards; the rest is untouched.
            assert_eq!(ram.read_obj::<u64>(GuestAddress(0x10_0000)).unwrap(), 0);
            assert_eq!(ram.read_obj::<u8>(GuestAddress(0x10_8000)).unwrap(), 7);
            // Unaligned, empty, outside RAM: refused.
            assert!(ram.discard(GuestAddress(0x10_0001), 4096).is_err());
            assert!(ram.discard(GuestAddress(0x10_0000), 100).is_err());
            assert!(ram.discard(GuestAddress(0x10_0000), 0).is_err());
            assert!(ram.discard(GuestAddress(4 << 20), 4096).is_err());
            assert!(ram.discard(GuestAddress((4 << 20) - 4096), 8192).is_err());
            assert!(ram.discard(GuestAddress(!4095), 4096).is_err());
        }
    }

    #[test]
    fn memfd_backing_is_shared_and_works() {
        let ram = GuestRam::new(4 << 20, RamBacking::Memfd).unwrap();
        assert_eq!(ram.backing(), RamBacking::Memfd);
        ram.write_obj(0xabcd_u16, GuestAddress(0x1000)).unwrap();
        assert_eq!(ram.read_obj::<u16>(GuestAddress(0x1000)).unwrap(), 0xabcd);
        assert!(ram.mmap().iter().all(|r| r.file_offset().is_some()));
    }
}
