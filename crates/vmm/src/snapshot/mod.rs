//! Save and restore of the whole machine through a byte stream ([`mod@format`]): `xl save` / `xl restore`.
//!
//! What a snapshot holds ([`MachineSnapshot`]): every vCPU's state (registers, special registers,
//! XSAVE, XCRs, debug registers, LAPIC, MSRs, pending events, MP state: [`crate::vstate::state`]) —
//! every vCPU KVM has, i.e. the boot vCPUs and those created by CPU hotplug since, with whether each
//! is offline (parked after the guest ejected it) — the in-kernel PICs, IOAPIC, PIT and KVM clock,
//! the 16550 (vm-superio's `SerialState`), CMOS/RTC and ACPI PM registers, the CPU hotplug register
//! block and GED, each virtio slot (transport registers, negotiated features, virtio-queue's
//! `QueueState`, the device model's own state through [`crate::devices::virtio::device::VirtioDevice`]'s
//! save/restore hooks: a new device gets saved by implementing them), the console backlog, and guest RAM
//! (runs of non-zero 4 KiB pages, at most 2 MiB each; the rest is zero). The machine state is bincode
//! (format version 2; version 1 images, JSON, are still read).
//!
//! Taking one: the control socket's `save` request carries the descriptor to write to (SCM_RIGHTS),
//! so the VMM never opens a path. vCPUs and device threads are paused first (a device thread
//! acknowledges its pause only with no request in flight), each vCPU thread reports its state through
//! the save-state event, and the VMM writes the stream — to a regular file past the page cache
//! ([`direct`]), to anything else (a pipe) through a buffer.
//!
//! Restoring: domusd hands the stream over as an inherited descriptor (`restore_fd` in the spec); the
//! machine is built as for a boot (same devices, from the same configuration), then, instead of loading
//! a kernel, [`read`] fills RAM and returns the state, which the machine applies before any vCPU or
//! device thread starts. A stream whose checksum, version or shape does not match is refused before
//! anything runs.

pub mod direct;
pub mod direct_read;
pub mod format;
pub mod ram_paused;
pub mod resident;

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use crate::devices::virtio::mmio::TransportSnapshot;
use crate::devices::LegacySnapshot;
use crate::vstate::memory::GuestMem;
use crate::vstate::state::{VcpuState, VmState};
use format::{FormatError, Section, StreamReader, StreamWriter, TAG_MACHINE, TAG_RAM};

/// RAM is sent in runs of at most this size; all-zero pages are skipped.
pub const RAM_CHUNK: usize = 2 << 20;

/// Everything but RAM.
#[derive(Serialize, Deserialize)]
pub struct MachineSnapshot {
    /// Guest RAM size, MiB (must match the restoring machine's).
    pub memory_mib: u64,
    /// Per vCPU created (boot vCPUs and those plugged in since, online or parked), in order.
    pub vcpus: Vec<VcpuState>,
    /// Per vCPU of [`MachineSnapshot::vcpus`]: offline (ejected by the guest, its thread parked).
    /// Absent in images from before CPU hotplug: all online.
    #[serde(default)]
    pub vcpu_offline: Vec<bool>,
    /// PIC, IOAPIC, PIT, clock.
    pub vm: VmState,
    /// Port devices.
    pub legacy: LegacySnapshot,
    /// virtio slots, in slot order.
    pub virtio: Vec<TransportSnapshot>,
    /// The console backlog.
    pub console: Vec<u8>,
    /// Whether the guest was paused when saved (informational).
    pub paused: bool,
}

/// Saving or restoring failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The stream.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The machine state could not be encoded or decoded (version 1: JSON).
    #[error("machine state in the image is malformed: {0}")]
    Json(#[from] serde_json::Error),
    /// The machine state could not be encoded or decoded (version 2: bincode).
    #[error("machine state in the image is malformed: {0}")]
    State(String),
    /// Writing the image file failed outside the stream's own writes (its direct-I/O buffers,
    /// [`direct`]).
    #[error("cannot write the image: {0}")]
    File(#[from] std::io::Error),
    /// The image is for another machine shape.
    #[error("the image does not match this domain: {0}")]
    Mismatch(String),
    /// Guest memory access.
    #[error("guest memory at {gpa:#x} ({len} bytes) is outside this domain's RAM")]
    Ram {
        /// Address.
        gpa: u64,
        /// Length.
        len: u64,
    },
}

/// Writes `snap` and all non-zero RAM to `out`; returns the bytes written. The machine must be paused
/// (RAM is read in place: [`ram_paused`]).
///
/// # Errors
/// [`SnapshotError`].
pub fn write<W: Write>(
    out: W,
    snap: &MachineSnapshot,
    mem: &GuestMem,
) -> Result<u64, SnapshotError> {
    let mut w = StreamWriter::new(out)?;
    let state = encode_state(snap)?;
    w.section(TAG_MACHINE, &[&state])?;
    ram_paused::write_ram_paused(&mut w, mem)?;
    let total = w.bytes();
    w.finish()?;
    Ok(total + 16)
}

/// [`format::MAX_STATE_BYTES`] as a length (it fits any `usize` this runs on: 64 MiB).
const MAX_STATE_LEN: usize = 64 << 20;
const _: () = assert!(MAX_STATE_LEN as u64 == format::MAX_STATE_BYTES);

/// The bincode settings of the machine state (and of a vCPU thread's state report).
fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_STATE_LEN>()
}

/// Encodes `v` as the stream's machine state is (version [`format::VERSION`]: bincode; the
/// kvm-bindings structures go as their bytes, where JSON wrote one number per byte).
///
/// # Errors
/// [`SnapshotError::State`].
pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, SnapshotError> {
    bincode::serde::encode_to_vec(v, bincode_config())
        .map_err(|e| SnapshotError::State(e.to_string()))
}

/// Decodes what [`encode`] made; all of `bytes` must be used.
///
/// # Errors
/// [`SnapshotError::State`].
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, SnapshotError> {
    let (v, used) = bincode::serde::decode_from_slice(bytes, bincode_config())
        .map_err(|e| SnapshotError::State(e.to_string()))?;
    if used != bytes.len() {
        return Err(SnapshotError::State(format!(
            "{} bytes after its end",
            bytes.len() - used
        )));
    }
    Ok(v)
}

/// The `MACH` section's payload for `snap`.
///
/// # Errors
/// [`SnapshotError::State`].
pub fn encode_state(snap: &MachineSnapshot) -> Result<Vec<u8>, SnapshotError> {
    encode(snap)
}

/// Appends every non-zero page of guest RAM to `w` (a fresh restore target is zero), contiguous
/// pages as one run of at most [`RAM_CHUNK`] bytes. Pages the host never mapped are known to be
/// zero without reading them ([`resident`]); the others are read and sent unless all zero.
///
/// # Errors
/// [`SnapshotError`].
pub fn write_ram<W: Write>(w: &mut StreamWriter<W>, mem: &GuestMem) -> Result<(), SnapshotError> {
    const PAGE: usize = resident::PAGE;
    let exact = resident::exact();
    let mut buf = vec![0u8; RAM_CHUNK];
    let mut map = Vec::with_capacity(RAM_CHUNK / PAGE);
    let mut keep = Vec::with_capacity(RAM_CHUNK / PAGE);
    for region in mem.iter() {
        let start = region.start_addr().0;
        let len = region.len();
        let mut off = 0u64;
        while off < len {
            let n = usize::try_from((len - off).min(RAM_CHUNK as u64)).unwrap_or(RAM_CHUNK);
            let gpa = start + off;
            let known = exact && resident::pages(region, off, n, &mut map);
            // Which pages to send: resident (or not known not to be) and not all zero.
            keep.clear();
            let mut p = 0;
            while p * PAGE < n {
                let mut q = p;
                while q * PAGE < n && (!known || map.get(q).is_some_and(|b| b & 1 != 0)) {
                    q += 1;
                }
                if q > p {
                    let run = buf.get_mut(p * PAGE..(q * PAGE).min(n)).unwrap_or_default();
                    let at = gpa + (p * PAGE) as u64;
                    mem.read_slice(run, GuestAddress(at))
                        .map_err(|_| SnapshotError::Ram {
                            gpa: at,
                            len: run.len() as u64,
                        })?;
                    for page in run.chunks(PAGE) {
                        keep.push(!ram_paused::is_zero(page));
                    }
                    p = q;
                } else {
                    keep.push(false);
                    p += 1;
                }
            }
            // Runs of pages to keep, each one section.
            let mut i = 0;
            while i < keep.len() {
                if !keep.get(i).copied().unwrap_or(false) {
                    i += 1;
                    continue;
                }
                let mut j = i;
                while keep.get(j).copied().unwrap_or(false) {
                    j += 1;
                }
                let bytes = buf.get(i * PAGE..(j * PAGE).min(n)).unwrap_or_default();
                let at = gpa + (i * PAGE) as u64;
                w.section(TAG_RAM, &[&at.to_le_bytes(), bytes])?;
                i = j;
            }
            off += n as u64;
        }
    }
    Ok(())
}

/// Writes the mark that the guest is paused next (an empty RAM run at 0): the target may get
/// ready for the stop-and-copy ([`read_marked`]); readers that predate it skip it.
///
/// # Errors
/// The stream cannot be written.
pub fn write_pause_mark<W: Write>(w: &mut StreamWriter<W>) -> Result<(), SnapshotError> {
    w.section(TAG_RAM, &[&0u64.to_le_bytes()])?;
    Ok(())
}

/// Appends the 4 KiB pages at `pages` (sorted, deduplicated guest addresses), whatever they hold
/// (a page zeroed since it was sent must be sent again), contiguous pages as one run of at most
/// [`RAM_CHUNK`] bytes. Returns the bytes of guest memory sent.
///
/// # Errors
/// [`SnapshotError`].
pub fn write_pages<W: Write>(
    w: &mut StreamWriter<W>,
    mem: &GuestMem,
    pages: &[u64],
) -> Result<u64, SnapshotError> {
    const PAGE: u64 = 4096;
    // Grown to the longest run only: the stop-and-copy's few pages do not pay for a 2 MiB buffer.
    let mut buf = Vec::new();
    let mut sent = 0u64;
    let mut i = 0;
    while let Some(&start) = pages.get(i) {
        let mut end = start + PAGE;
        i += 1;
        while pages.get(i) == Some(&end) && end - start < RAM_CHUNK as u64 {
            end += PAGE;
            i += 1;
        }
        let len = end - start;
        let n = usize::try_from(len).unwrap_or(RAM_CHUNK);
        if buf.len() < n {
            buf.resize(n, 0);
        }
        let chunk = buf.get_mut(..n).unwrap_or_default();
        mem.read_slice(chunk, GuestAddress(start))
            .map_err(|_| SnapshotError::Ram { gpa: start, len })?;
        w.section(TAG_RAM, &[&start.to_le_bytes(), chunk])?;
        sent += len;
    }
    Ok(sent)
}

/// Reads a stream: RAM runs go straight into `mem` (which must be fresh, i.e. zero), the machine
/// state is returned once the trailer's checksum matched.
///
/// # Errors
/// [`SnapshotError`]; on error `mem` may hold part of the image (the machine must not run).
pub fn read<R: Read>(input: R, mem: &GuestMem) -> Result<MachineSnapshot, SnapshotError> {
    read_with(input, mem, &mut Vec::new())
}

/// [`read`] with the caller's buffer for RAM runs across regions (grown to [`RAM_CHUNK`]; runs
/// within one region go straight into guest memory): a live migration's
/// target frees it (and its reader's buffer) only once the guest runs — freeing a few MiB of
/// touched memory took 0.2 ms on the development host, all of it guest-visible downtime.
///
/// # Errors
/// As [`read`].
pub fn read_with<R: Read>(
    input: R,
    mem: &GuestMem,
    buf: &mut Vec<u8>,
) -> Result<MachineSnapshot, SnapshotError> {
    read_marked(input, mem, buf, &mut || {})
}

/// Reads the RAM run `gpa`..`gpa + len` straight into guest memory when it lies in one region
/// (returns false otherwise, having read nothing). No copy through a buffer, and nothing read
/// but not yet in guest memory: a live migration's source, which waits until the stream's pipe
/// is empty before it pauses the guest, then knows that the target has no pre-copy backlog left
/// (a 2 MiB run gathered in a buffer cost up to ~1 ms of downtime).
fn read_in_place<R: Read>(
    r: &mut StreamReader<R>,
    mem: &GuestMem,
    gpa: u64,
    len: u64,
) -> Result<bool, SnapshotError> {
    let Some(region) = mem.find_region(GuestAddress(gpa)) else {
        return Ok(false);
    };
    let offset = gpa - region.start_addr().0;
    let (Some(end), Ok(n)) = (offset.checked_add(len), usize::try_from(len)) else {
        return Ok(false);
    };
    if end > region.len() {
        return Ok(false);
    }
    let Ok(host) = region.get_host_address(vm_memory::MemoryRegionAddress(offset)) else {
        return Ok(false);
    };
    // SAFETY: `host` .. `host + n` lies inside the region's live mapping (offset and end checked
    // above) for as long as `mem` is borrowed, and a restore reads into the fresh memory of a
    // machine that does not run: no vCPU or device thread reads or writes it meanwhile.
    let dst = unsafe { std::slice::from_raw_parts_mut(host, n) };
    r.read_payload(dst)?;
    Ok(true)
}

/// [`read_with`], calling `on_pause` at each empty RAM run: the mark a live migration's source
/// sends just before it pauses the guest ([`write_pause_mark`]; any reader skips it).
///
/// # Errors
/// As [`read`].
pub fn read_marked<R: Read>(
    input: R,
    mem: &GuestMem,
    buf: &mut Vec<u8>,
    on_pause: &mut dyn FnMut(),
) -> Result<MachineSnapshot, SnapshotError> {
    let ram_bytes: u64 = mem.iter().map(GuestMemoryRegion::len).sum();
    let mut r = StreamReader::new(input, ram_bytes)?;
    let mut machine = None;
    loop {
        match r.next_section()? {
            Section::Machine(state) => {
                tracing::debug!(bytes = state.len(), "restore: machine state received");
                if machine.is_some() {
                    return Err(SnapshotError::Mismatch(
                        "the image has two machine-state sections".into(),
                    ));
                }
                machine = Some(state);
            }
            Section::Ram { len: 0, .. } => on_pause(),
            Section::Ram { gpa, len } if read_in_place(&mut r, mem, gpa, len)? => {}
            Section::Ram { gpa, len } => {
                // A run across regions: through `buf`.
                if buf.len() < RAM_CHUNK {
                    buf.resize(RAM_CHUNK, 0);
                }
                let mut done = 0u64;
                while done < len {
                    let n =
                        usize::try_from((len - done).min(RAM_CHUNK as u64)).unwrap_or(RAM_CHUNK);
                    let chunk = buf.get_mut(..n).unwrap_or_default();
                    r.read_payload(chunk)?;
                    let at = gpa.saturating_add(done);
                    mem.write_slice(chunk, GuestAddress(at))
                        .map_err(|_| SnapshotError::Ram { gpa, len })?;
                    done += n as u64;
                }
            }
            Section::End => {
                tracing::debug!("restore: stream complete");
                break;
            }
        }
    }
    let state = machine
        .ok_or_else(|| SnapshotError::Mismatch("the image has no machine-state section".into()))?;
    if r.version() == 1 {
        return Ok(serde_json::from_slice(&state)?);
    }
    decode(&state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vstate::memory::{GuestRam, RamBacking};

    /// Version 2 streams of the fuzz corpus, made from a real `save` (32 MiB idle probe guest).
    const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/snapshot_stream/");

    fn read_seed(name: &str) -> Result<MachineSnapshot, SnapshotError> {
        let bytes = std::fs::read(format!("{CORPUS}{name}")).unwrap();
        let ram = GuestRam::new(1 << 20, RamBacking::Anonymous).unwrap();
        read(bytes.as_slice(), ram.mmap())
    }

    #[test]
    fn version_2_state_round_trips_and_damage_is_refused() {
        let snap = read_seed("v2_state_and_ram").unwrap();
        assert_eq!(snap.memory_mib, 32);
        assert_eq!(snap.vcpus.len(), 1);
        let again: MachineSnapshot = decode(&encode_state(&snap).unwrap()).unwrap();
        assert_eq!(encode(&again).unwrap(), encode(&snap).unwrap());
        for (seed, want) in [
            ("v2_state_truncated", "malformed"),
            ("v2_state_trailing", "4 bytes after its end"),
            ("v2_huge_vec_length", "malformed"),
        ] {
            let e = read_seed(seed).err().map(|e| e.to_string());
            assert!(
                e.as_deref().is_some_and(|e| e.contains(want)),
                "{seed}: {e:?}"
            );
        }
    }

    #[test]
    fn non_zero_pages_only_are_written() {
        let ram = GuestRam::new(4 << 20, RamBacking::Anonymous).unwrap();
        let mem = ram.mmap();
        mem.write_slice(&[7u8; 10], GuestAddress(0x3000)).unwrap();
        mem.write_slice(&[9u8; 4096], GuestAddress(0x20_0000 + 0x5000))
            .unwrap();
        // A page read (so resident) but zero is not sent either.
        let mut z = [1u8; 4];
        mem.read_slice(&mut z, GuestAddress(0x8000)).unwrap();
        let mut w = StreamWriter::new(Vec::new()).unwrap();
        write_ram(&mut w, mem).unwrap();
        // Two runs of one page each: tag, length, address, 4096 bytes.
        assert_eq!(w.bytes(), 12 + 2 * (12 + 8 + 4096));
        let out = w.finish().unwrap();
        let back = GuestRam::new(4 << 20, RamBacking::Anonymous).unwrap();
        let mut r = format::StreamReader::new(out.as_slice(), 4 << 20).unwrap();
        let mut runs = Vec::new();
        while let Section::Ram { gpa, len } = r.next_section().unwrap() {
            let mut b = vec![0u8; usize::try_from(len).unwrap()];
            r.read_payload(&mut b).unwrap();
            back.mmap().write_slice(&b, GuestAddress(gpa)).unwrap();
            runs.push(gpa);
        }
        assert_eq!(runs, vec![0x3000, 0x20_5000]);
        let mut got = [0u8; 10];
        back.mmap()
            .read_slice(&mut got, GuestAddress(0x3000))
            .unwrap();
        assert_eq!(got, [7u8; 10]);
    }

    #[test]
    fn a_pause_mark_is_reported_to_its_reader_and_skipped_by_others() {
        let bytes = std::fs::read(format!("{CORPUS}v2_state_and_ram")).unwrap();
        let ram = GuestRam::new(32 << 20, RamBacking::Anonymous).unwrap();
        let snap = read(bytes.as_slice(), ram.mmap()).unwrap();
        // A live migration's shape: RAM, the mark, the last pages, the machine state.
        ram.mmap()
            .write_slice(&[5u8; 16], GuestAddress(0x7000))
            .unwrap();
        let mut w = StreamWriter::new(Vec::new()).unwrap();
        write_ram(&mut w, ram.mmap()).unwrap();
        write_pause_mark(&mut w).unwrap();
        write_pages(&mut w, ram.mmap(), &[0x7000]).unwrap();
        w.section(format::TAG_MACHINE, &[&encode_state(&snap).unwrap()])
            .unwrap();
        let stream = w.finish().unwrap();
        let mut marks = 0;
        let back = GuestRam::new(32 << 20, RamBacking::Anonymous).unwrap();
        let got = read_marked(stream.as_slice(), back.mmap(), &mut Vec::new(), &mut || {
            marks += 1;
        })
        .unwrap();
        assert_eq!(marks, 1);
        assert_eq!(encode(&got).unwrap(), encode(&snap).unwrap());
        let mut page = [0u8; 16];
        back.mmap()
            .read_slice(&mut page, GuestAddress(0x7000))
            .unwrap();
        assert_eq!(page, [5u8; 16]);
        // A reader without the hook skips the mark.
        let plain = GuestRam::new(32 << 20, RamBacking::Anonymous).unwrap();
        let got = read(stream.as_slice(), plain.mmap()).unwrap();
        assert_eq!(encode(&got).unwrap(), encode(&snap).unwrap());
    }
}
