//! Guest RAM of a paused machine into the stream, fast: non-zero 4 KiB pages only (contiguous ones as
//! one RAM run of at most [`RAM_CHUNK`] bytes), written straight from the guest's memory mapping — no
//! copy through a bounce buffer, since nothing writes guest memory while every vCPU and device thread
//! is paused. Pages `mincore` reports the host never mapped are not read at all (they are zero:
//! [`super::resident`]). The runs are the same RAM sections a live migration sends: a restore reads
//! them alike.
//! Used by `save` and by the migration of a paused domain; a running guest's RAM goes through
//! [`super::write_ram`] / [`super::write_pages`], which copy it first.

use std::io::Write;

use vm_memory::{GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};

use super::format::{StreamWriter, TAG_RAM};
use super::resident;
use super::{SnapshotError, RAM_CHUNK};
use crate::vstate::memory::GuestMem;

const PAGE: usize = 4096;

/// Whether `bytes` are all zero (compares whole words: the compiler vectorizes it).
pub fn is_zero(bytes: &[u8]) -> bool {
    let words = bytes.chunks_exact(8);
    let tail = words.remainder();
    let acc = words.fold(0u64, |acc, w| {
        acc | u64::from_ne_bytes(w.try_into().unwrap_or([0xff; 8]))
    });
    acc == 0 && tail.iter().all(|&b| b == 0)
}

/// Appends every non-zero 4 KiB page of guest RAM to `w`, contiguous pages as one run.
///
/// Every vCPU and device thread must be paused: the pages are read in place.
///
/// # Errors
/// [`SnapshotError`].
pub fn write_ram_paused<W: Write>(
    w: &mut StreamWriter<W>,
    mem: &GuestMem,
) -> Result<(), SnapshotError> {
    let exact = resident::exact();
    let mut map = Vec::new();
    for region in mem.iter() {
        let start = region.start_addr().0;
        let len = usize::try_from(region.len()).map_err(|_| SnapshotError::Ram {
            gpa: start,
            len: region.len(),
        })?;
        let host = region
            .get_host_address(MemoryRegionAddress(0))
            .map_err(|_| SnapshotError::Ram {
                gpa: start,
                len: region.len(),
            })?;
        // SAFETY: the region maps `len` bytes at `host` for as long as `mem` is borrowed, and the
        // caller paused every vCPU and device thread, so nothing writes them while this slice lives.
        let ram = unsafe { std::slice::from_raw_parts(host.cast_const(), len) };
        let known = exact && resident::pages(region, 0, len, &mut map);
        write_runs(w, start, ram, known.then_some(map.as_slice()))?;
    }
    Ok(())
}

/// Appends the non-zero pages of `ram` (guest memory from `start`) as runs; with a `resident` map
/// (one byte per page, bit 0 set = resident), pages not resident are zero and not read.
fn write_runs<W: Write>(
    w: &mut StreamWriter<W>,
    start: u64,
    ram: &[u8],
    resident: Option<&[u8]>,
) -> Result<(), SnapshotError> {
    let mut run: Option<usize> = None;
    let mut off = 0usize;
    while off < ram.len() {
        let end = (off + PAGE).min(ram.len());
        let mapped = resident.is_none_or(|m| m.get(off / PAGE).is_some_and(|b| b & 1 != 0));
        let zero = !mapped || is_zero(ram.get(off..end).unwrap_or_default());
        if let Some(from) = run {
            if zero || off - from >= RAM_CHUNK {
                emit(w, start, ram, from, off)?;
                run = None;
            }
        }
        if !zero && run.is_none() {
            run = Some(off);
        }
        off = end;
    }
    if let Some(from) = run {
        emit(w, start, ram, from, ram.len())?;
    }
    Ok(())
}

fn emit<W: Write>(
    w: &mut StreamWriter<W>,
    start: u64,
    ram: &[u8],
    from: usize,
    to: usize,
) -> Result<(), SnapshotError> {
    let gpa = start + from as u64;
    let bytes = ram.get(from..to).ok_or(SnapshotError::Ram {
        gpa,
        len: (to - from) as u64,
    })?;
    w.section(TAG_RAM, &[&gpa.to_le_bytes(), bytes])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::format::{Section, StreamReader};

    #[test]
    fn zero_detection_sees_every_byte() {
        assert!(is_zero(&[0; 4096]));
        assert!(is_zero(&[]));
        for at in [0, 7, 8, 4095, 4099] {
            let mut b = vec![0u8; 4100];
            b[at] = 1;
            assert!(!is_zero(&b), "{at}");
        }
    }

    /// The runs `write_runs` makes of `ram`, as (offset, length).
    fn runs(ram: &[u8]) -> Vec<(u64, u64)> {
        runs_with(ram, None)
    }

    fn runs_with(ram: &[u8], resident: Option<&[u8]>) -> Vec<(u64, u64)> {
        let mut w = StreamWriter::new(Vec::new()).unwrap();
        write_runs(&mut w, 0x1000_0000, ram, resident).unwrap();
        let bytes = w.finish().unwrap();
        let mut r = StreamReader::new(&bytes[..], 1 << 30).unwrap();
        let mut out = Vec::new();
        loop {
            match r.next_section().unwrap() {
                Section::Ram { gpa, len } => {
                    let mut payload = vec![0u8; usize::try_from(len).unwrap()];
                    r.read_payload(&mut payload).unwrap();
                    let off = gpa - 0x1000_0000;
                    let o = usize::try_from(off).unwrap();
                    assert_eq!(payload, ram[o..o + payload.len()]);
                    out.push((off, len));
                }
                Section::End => break,
                Section::Machine(_) => panic!("no machine section here"),
            }
        }
        out
    }

    #[test]
    fn non_zero_pages_go_as_runs_of_at_most_a_chunk() {
        let page = PAGE as u64;
        let mut ram = vec![0u8; 4 * RAM_CHUNK + PAGE];
        assert!(runs(&ram).is_empty());
        // Pages 1-2 and 5, then 2 chunks and a page of non-zero bytes from page 10.
        for p in [1usize, 2, 5] {
            ram[p * PAGE + 100] = 0xaa;
        }
        let big = 10 * PAGE;
        for b in &mut ram[big..big + 2 * RAM_CHUNK + PAGE] {
            *b = 0x55;
        }
        // The last page is partial data at its end.
        let n = ram.len();
        ram[n - 1] = 1;
        let chunk = RAM_CHUNK as u64;
        assert_eq!(
            runs(&ram),
            [
                (page, 2 * page),
                (5 * page, page),
                (10 * page, chunk),
                (10 * page + chunk, chunk),
                (10 * page + 2 * chunk, page),
                (n as u64 - page, page),
            ]
        );
    }

    #[test]
    fn pages_the_host_never_mapped_are_not_read() {
        let page = PAGE as u64;
        let ram = vec![0x11u8; 4 * PAGE];
        // Pages 1 and 2 are not resident: skipped even though these bytes are not zero (a real
        // non-resident page reads as zero; here the map alone decides).
        let map = [1u8, 0, 0, 1];
        assert_eq!(runs_with(&ram, Some(&map)), [(0, page), (3 * page, page)]);
        assert_eq!(runs_with(&ram, None), [(0, 4 * page)]);
    }
}
