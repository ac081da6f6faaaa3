//! A descriptor chain resolved to host memory: the guest ranges of one or more chains in order,
//! with byte access at a logical offset (for the header fields and the destination MAC, which may
//! straddle descriptors). The vectors are reused from frame to frame: no allocation per packet.

use vm_memory::GuestAddress;

use crate::vstate::memory::{Direction, GuestIoVec, GuestRam};

/// Most guest ranges one frame may span (a chain is at most a queue long; mergeable frames span
/// several chains, the iovec limit of readv/writev caps the total).
pub const MAX_IOV: usize = 1023;

/// Why a descriptor could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IovError {
    /// Outside guest RAM (or across a region boundary).
    NotRam(u64, u32),
    /// More than [`MAX_IOV`] ranges.
    TooMany,
}

impl std::fmt::Display for IovError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotRam(gpa, len) => write!(f, "descriptor {gpa:#x}+{len} is outside guest RAM"),
            Self::TooMany => write!(f, "more than {MAX_IOV} descriptors in one frame"),
        }
    }
}

/// The guest ranges of one frame, with their host iovecs beside them.
#[derive(Default)]
pub struct FrameIov {
    guest: Vec<GuestIoVec>,
    host: Vec<libc::iovec>,
    bytes: usize,
}

impl FrameIov {
    /// Room for [`MAX_IOV`] ranges plus one.
    pub fn new() -> Self {
        Self {
            guest: Vec::with_capacity(MAX_IOV + 1),
            host: Vec::with_capacity(MAX_IOV + 1),
            bytes: 0,
        }
    }

    /// Forgets every range.
    pub fn clear(&mut self) {
        self.guest.clear();
        self.host.clear();
        self.bytes = 0;
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.guest.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.guest.is_empty()
    }

    /// Total bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops the ranges from `len` on.
    pub fn truncate(&mut self, len: usize) {
        self.guest.truncate(len);
        self.host.truncate(len);
        self.bytes = self.guest.iter().map(GuestIoVec::len).sum();
    }

    /// Appends the guest range `gpa`+`len`, checked against RAM.
    ///
    /// # Errors
    /// [`IovError`].
    pub fn push(
        &mut self,
        ram: &GuestRam,
        gpa: GuestAddress,
        len: u32,
        dir: Direction,
    ) -> Result<(), IovError> {
        if self.guest.len() >= MAX_IOV {
            return Err(IovError::TooMany);
        }
        let n = usize::try_from(len).map_err(|_| IovError::NotRam(gpa.0, len))?;
        let v = ram
            .iovec(gpa, n, dir)
            .map_err(|_| IovError::NotRam(gpa.0, len))?;
        self.host.push(v.as_libc());
        self.guest.push(v);
        self.bytes += n;
        Ok(())
    }

    /// Drops the first `n` ranges (the chains a frame consumed; the rest stay for the next one).
    pub fn drain_front(&mut self, n: usize) {
        let n = n.min(self.guest.len());
        self.guest.drain(..n);
        self.host.truncate(self.guest.len() + n);
        self.host.drain(..n);
        self.bytes = self.guest.iter().map(GuestIoVec::len).sum();
    }

    /// Appends a host buffer (the receive path's overflow scratch) to the host iovecs only.
    pub fn push_host(&mut self, buf: &mut [u8]) {
        self.host.push(libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        });
    }

    /// Removes the host-only tail added by [`FrameIov::push_host`].
    pub fn pop_host(&mut self) {
        self.host.truncate(self.guest.len());
    }

    /// The host iovecs (for readv/writev).
    pub fn host(&self) -> &[libc::iovec] {
        &self.host
    }

    /// The guest address of `[at, at + len)` when it lies in one range (the common case: the
    /// header and the Ethernet addresses are in the first descriptor).
    fn contiguous(&self, at: usize, len: usize) -> Option<GuestAddress> {
        let mut start = 0usize;
        for v in &self.guest {
            if at < start + v.len() {
                let off = at - start;
                return (off.checked_add(len)? <= v.len())
                    .then(|| GuestAddress(v.gpa().0.wrapping_add(off as u64)));
            }
            start += v.len();
        }
        None
    }

    /// Reads `out.len()` bytes from logical offset `at`.
    pub fn read(&self, ram: &GuestRam, at: usize, out: &mut [u8]) -> Option<()> {
        if let Some(gpa) = self.contiguous(at, out.len()) {
            return ram.read_slice(out, gpa).ok();
        }
        let mut done = 0;
        self.for_each_piece(at, out.len(), |gpa, n| {
            let piece = out.get_mut(done..done + n)?;
            ram.read_slice(piece, gpa).ok()?;
            done += n;
            Some(())
        })
    }

    /// Writes `data` at logical offset `at`, range by range; `None` if it does not fit.
    pub fn write(&self, ram: &GuestRam, at: usize, data: &[u8]) -> Option<()> {
        if let Some(gpa) = self.contiguous(at, data.len()) {
            return ram.write_slice(data, gpa).ok();
        }
        let mut done = 0;
        self.for_each_piece(at, data.len(), |gpa, n| {
            ram.write_slice(data.get(done..done + n)?, gpa).ok()?;
            done += n;
            Some(())
        })
    }

    /// Calls `f(guest address, length)` for each piece of `[at, at + len)` in range order;
    /// `None` if `f` fails or the ranges end first.
    fn for_each_piece(
        &self,
        at: usize,
        len: usize,
        mut f: impl FnMut(GuestAddress, usize) -> Option<()>,
    ) -> Option<()> {
        let (mut skip, mut rest) = (at, len);
        for v in &self.guest {
            if rest == 0 {
                break;
            }
            if skip >= v.len() {
                skip -= v.len();
                continue;
            }
            let n = (v.len() - skip).min(rest);
            f(GuestAddress(v.gpa().0.checked_add(skip as u64)?), n)?;
            rest -= n;
            skip = 0;
        }
        (rest == 0).then_some(())
    }

    /// Host iovecs for the bytes from logical offset `at` on, into `out` (as many ranges as fit);
    /// how many were written and the bytes they cover.
    pub fn host_from(&self, at: usize, out: &mut [libc::iovec]) -> (usize, usize) {
        let (mut skip, mut k, mut bytes) = (at, 0, 0);
        for v in &self.host {
            if k == out.len() {
                break;
            }
            if skip >= v.iov_len {
                skip -= v.iov_len;
                continue;
            }
            out[k] = libc::iovec {
                iov_base: v.iov_base.cast::<u8>().wrapping_add(skip).cast(),
                iov_len: v.iov_len - skip,
            };
            bytes += v.iov_len - skip;
            skip = 0;
            k += 1;
        }
        (k, bytes)
    }

    /// Bytes of the first `n` ranges.
    pub fn prefix_bytes(&self, n: usize) -> usize {
        self.guest.iter().take(n).map(GuestIoVec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::test_utils::test_ram;

    #[test]
    fn bytes_across_ranges_read_and_write_at_logical_offsets() {
        let ram = test_ram(1 << 20);
        let mut f = FrameIov::new();
        f.push(&ram, GuestAddress(0x1000), 4, Direction::DeviceWrites)
            .unwrap();
        f.push(&ram, GuestAddress(0x3000), 8, Direction::DeviceWrites)
            .unwrap();
        assert_eq!((f.len(), f.bytes()), (2, 12));
        f.write(&ram, 2, &[1, 2, 3, 4]).unwrap();
        let mut a = [0u8; 4];
        ram.read_slice(&mut a, GuestAddress(0x1000)).unwrap();
        assert_eq!(a, [0, 0, 1, 2]);
        ram.read_slice(&mut a, GuestAddress(0x3000)).unwrap();
        assert_eq!(a, [3, 4, 0, 0]);
        let mut back = [0u8; 4];
        f.read(&ram, 2, &mut back).unwrap();
        assert_eq!(back, [1, 2, 3, 4]);
        f.read(&ram, 5, &mut back[..2]).unwrap();
        assert_eq!(back[..2], [4, 0]);
        assert!(f.read(&ram, 10, &mut back).is_none(), "past the end");
        assert!(f
            .push(
                &ram,
                GuestAddress(u64::MAX - 4),
                100,
                Direction::DeviceReads
            )
            .is_err());
        // A write across both ranges, and one past the end.
        f.write(&ram, 0, &[9; 12]).unwrap();
        let mut all = [0u8; 8];
        ram.read_slice(&mut all, GuestAddress(0x3000)).unwrap();
        assert_eq!(all, [9; 8]);
        assert!(f.write(&ram, 1, &[7; 12]).is_none(), "past the end");
        assert_eq!(f.prefix_bytes(1), 4);
        assert_eq!(f.prefix_bytes(5), 12);
        f.truncate(1);
        assert_eq!(f.bytes(), 4);
    }
}
