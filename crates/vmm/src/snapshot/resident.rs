//! Which guest pages can hold data, without touching them: `mincore(2)` on guest RAM's mapping.
//!
//! Reading a page of guest RAM the guest never touched faults in the kernel's zero page, once per
//! 4 KiB page: for a mostly idle 256 MiB guest that fault storm (65536 faults) was most of a live
//! migration's first round and of a `save`. A page `mincore` reports as not resident is all zero
//! — provided the host has no swap: guest RAM is anonymous private memory or a memfd (shmem), whose
//! only non-resident pages without swap are those never written (or dropped by the balloon's
//! `MADV_DONTNEED`, which also reads as zero). With swap configured, a swapped-out page is
//! non-resident yet holds data, so [`exact`] says no and every page is read.
//!
//! The swap check is made once per stream, just before RAM is scanned: a swap area enabled while a
//! stream's first pass runs could in principle let a page go out unseen; `swapon` during a save or
//! migration is the one case this does not cover.

use vm_memory::{GuestMemoryRegion, MemoryRegionAddress};

/// Page size of guest RAM runs.
pub const PAGE: usize = 4096;

/// Whether a non-resident page of guest RAM is known to be zero (the host has no swap).
pub fn exact() -> bool {
    // SAFETY: `sysinfo` is plain data; all-zero is a valid value for the call to overwrite.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a writable sysinfo struct.
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return false;
    }
    info.totalswap == 0
}

/// Fills `out` (one byte per page, bit 0 = resident) for the `len` bytes of `region` at `offset`.
/// Returns false when the kernel refused (the caller then reads every page).
pub fn pages<R: GuestMemoryRegion>(region: &R, offset: u64, len: usize, out: &mut Vec<u8>) -> bool {
    out.clear();
    out.resize(len.div_ceil(PAGE), 0);
    let Ok(host) = region.get_host_address(MemoryRegionAddress(offset)) else {
        return false;
    };
    if host.align_offset(PAGE) != 0 {
        return false;
    }
    // SAFETY: `host` .. `host + len` lies inside the region's live mapping (`get_host_address`
    // checked `offset`; callers pass `len` within the region), is page aligned, and `out` has
    // one byte per page of it; mincore only writes `out`.
    let rc = unsafe { libc::mincore(host.cast(), len, out.as_mut_ptr()) };
    rc == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vstate::memory::{GuestRam, RamBacking};
    use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

    #[test]
    fn only_written_pages_are_resident() {
        let ram = GuestRam::new(4 << 20, RamBacking::Anonymous).unwrap();
        ram.mmap()
            .write_slice(&[1u8; 8], GuestAddress(3 * PAGE as u64 + 100))
            .unwrap();
        let region = ram.mmap().find_region(GuestAddress(0)).unwrap();
        let mut v = Vec::new();
        assert!(pages(region, 0, 2 << 20, &mut v));
        assert_eq!(v.len(), 512);
        let resident: Vec<usize> = (0..v.len()).filter(|&i| v[i] & 1 != 0).collect();
        assert_eq!(resident, vec![3]);
    }
}
