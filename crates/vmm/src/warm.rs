//! Warming the code a live migration's stop-and-copy runs, before the guest is paused.
//!
//! A process maps its executable's pages into its page tables only when it first runs them (a
//! minor fault per page, or per 64 KiB with the kernel's fault-around). The stop-and-copy runs code
//! the VMM never ran before (collecting and encoding the state on the source; decoding and
//! applying it on the target), so each first call paid those faults inside the guest-visible
//! downtime: on the development host (itself a VM), encoding a vCPU's state the first time took
//! 11-16 µs and 3-4 µs once the code was mapped, 0.5 µs warm. [`map_code`] asks the kernel to map
//! every executable segment of the process at once (`MADV_POPULATE_READ`, Linux 5.14): one call per
//! segment, a few hundred µs for the whole VMM, off the downtime. The pages are the page cache's
//! (the binary is read anyway); nothing is copied or locked, and the kernel may unmap them again
//! under memory pressure, which only costs the faults back.

use std::ffi::c_void;

/// What [`map_code`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Mapped {
    /// Executable segments mapped.
    pub segments: u32,
    /// Their bytes.
    pub bytes: u64,
    /// Segments the kernel refused (an older kernel without `MADV_POPULATE_READ`, the vDSO).
    pub refused: u32,
}

/// The page size (4 KiB where `sysconf` cannot say).
fn page_size() -> usize {
    // SAFETY: sysconf only reads a system value.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// The page-aligned `(start, len)` of every executable `PT_LOAD` segment of every object loaded
/// into the process (the executable and its shared libraries).
fn code_segments() -> Vec<(usize, usize)> {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `&mut Vec` passed to dl_iterate_phdr below, alive for its call.
        let out = unsafe { &mut *data.cast::<Vec<(usize, u64, u64)>>() };
        // SAFETY: the loader passes a valid `dl_phdr_info` for the duration of this callback.
        let info = unsafe { &*info };
        if info.dlpi_phdr.is_null() {
            return 0;
        }
        // SAFETY: `dlpi_phdr` points at `dlpi_phnum` program headers of the loaded object.
        let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
        for h in headers {
            if h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_X != 0 {
                out.push((
                    usize::try_from(info.dlpi_addr).unwrap_or(0),
                    h.p_vaddr,
                    h.p_memsz,
                ));
            }
        }
        0
    }
    let mut raw: Vec<(usize, u64, u64)> = Vec::new();
    // SAFETY: the callback only reads the headers it is given and appends to `raw`, which
    // outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(each), std::ptr::addr_of_mut!(raw).cast()) };
    let page = page_size();
    raw.into_iter()
        .filter_map(|(base, vaddr, len)| {
            let start = base.checked_add(usize::try_from(vaddr).ok()?)?;
            let end = start.checked_add(usize::try_from(len).ok()?)?;
            let start = start & !(page - 1);
            (end > start).then_some((start, end - start))
        })
        .collect()
}

/// [`map_code`], with a debug line saying what it mapped and how long it took; `side` names the
/// caller in it ("migration" on the source, "restore" on the target).
pub fn map_code_logged(side: &str) {
    let t = std::time::Instant::now();
    let m = map_code();
    tracing::debug!(
        segments = m.segments,
        bytes = m.bytes,
        refused = m.refused,
        us = t.elapsed().as_micros(),
        "{side}: code mapped"
    );
}

/// Maps every executable page of the process into its page tables now ([module docs](self)).
/// Best effort: a segment the kernel refuses is counted, not an error.
pub fn map_code() -> Mapped {
    let mut m = Mapped::default();
    for (start, len) in code_segments() {
        // SAFETY: MADV_POPULATE_READ only faults in pages of an existing mapping of this
        // process (the loader's own code segments), as reading them would; it changes no data.
        let rc = unsafe { libc::madvise(start as *mut c_void, len, libc::MADV_POPULATE_READ) };
        if rc == 0 {
            m.segments += 1;
            m.bytes += len as u64;
        } else {
            m.refused += 1;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the page at `addr` is in this process's page tables (`/proc/self/pagemap`: bit 63
    /// present, or bit 62 swapped).
    fn present(addr: usize) -> bool {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open("/proc/self/pagemap").unwrap();
        f.seek(SeekFrom::Start((addr / page_size() * 8) as u64))
            .unwrap();
        let mut b = [0u8; 8];
        f.read_exact(&mut b).unwrap();
        u64::from_le_bytes(b) >> 62 != 0
    }

    /// Runs in a process of its own (this test binary run again for this test alone): other tests
    /// of the same process may have mapped the code already.
    #[test]
    fn the_code_of_the_process_is_mapped_once_warmed() {
        const CHILD: &str = "DOMUS_WARM_TEST_CHILD";
        if std::env::var_os(CHILD).is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "warm::tests::the_code_of_the_process_is_mapped_once_warmed",
                    "--test-threads=1",
                ])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.contains("1 passed"), "{text}");
            return;
        }
        let segs = code_segments();
        // The test binary's own code is among the segments.
        let here = present as *const () as usize;
        let own = segs
            .iter()
            .find(|&&(s, l)| (s..s + l).contains(&here))
            .copied()
            .unwrap();
        assert!(own.1 >= page_size(), "{own:?}");
        let page = page_size();
        let missing =
            |(s, l): (usize, usize)| (s..s + l).step_by(page).filter(|&p| !present(p)).count();
        // A test binary runs a small part of its code: most of it is not mapped yet.
        assert!(missing(own) > 0, "{own:?}");
        let m = map_code();
        assert!(m.segments >= 1, "{m:?}");
        assert!(m.bytes >= own.1 as u64, "{m:?}");
        // Every page of the executable's code is now present, also the ones never run.
        assert_eq!(missing(own), 0, "{m:?}");
    }
}
