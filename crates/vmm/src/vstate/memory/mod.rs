//! Guest physical memory: layout of the machine (see the crate docs' machine model) and the mmap-backed RAM.
//!
//! RAM starts at 0. Up to 3 GiB it is one region; anything above goes above 4 GiB (the 32-bit MMIO hole
//! holds the IOAPIC, LAPIC and the virtio-mmio window). The e820 map additionally reports
//! `[0x9fc00, 0x100000)` as reserved (EBDA, VGA hole, BIOS area), as a PC does; the ACPI tables and the MP
//! table live in that reserved area.
//!
//! Devices reach guest RAM only through [`ram::GuestRam`] (checked iovecs, copies, the dirty hook); this
//! module tree is the only place that turns a guest address into a host pointer.

pub mod ram;

pub use ram::{Direction, GuestIoVec, GuestRam, RamBacking, RamError};

use vm_memory::{GuestAddress, GuestMemoryMmap};

/// Guest memory type used throughout the VMM.
pub type GuestMem = GuestMemoryMmap<()>;

/// End of usable low RAM in the e820 map (start of the EBDA).
pub const EBDA_START: u64 = 0x9fc00;
/// Start of RAM above the legacy hole.
pub const HIGH_RAM_START: u64 = 0x10_0000;
/// Top of the 32-bit RAM region (3 GiB).
pub const MEM_32BIT_GAP_START: u64 = 0xc000_0000;
/// Start of RAM above 4 GiB.
pub const RAM_64BIT_START: u64 = 0x1_0000_0000;
/// The IOAPIC's MMIO base.
pub const IOAPIC_ADDR: u64 = 0xfec0_0000;
/// The LAPIC's MMIO base.
pub const LAPIC_ADDR: u64 = 0xfee0_0000;
/// First virtio-mmio slot (reserved for later devices; 4 KiB per slot, 32 slots).
pub const VIRTIO_MMIO_BASE: u64 = 0xd000_0000;

/// e820 entry types.
pub const E820_RAM: u32 = 1;
/// Reserved.
pub const E820_RESERVED: u32 = 2;

/// One e820 map entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    /// Start address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// [`E820_RAM`] or [`E820_RESERVED`].
    pub kind: u32,
}

/// The (start, size) RAM regions for `mem_bytes` of guest RAM.
pub fn ram_regions(mem_bytes: u64) -> Vec<(GuestAddress, usize)> {
    let low = mem_bytes.min(MEM_32BIT_GAP_START);
    let mut regions = vec![(GuestAddress(0), usize::try_from(low).unwrap_or(usize::MAX))];
    if mem_bytes > MEM_32BIT_GAP_START {
        let high = mem_bytes - MEM_32BIT_GAP_START;
        regions.push((
            GuestAddress(RAM_64BIT_START),
            usize::try_from(high).unwrap_or(usize::MAX),
        ));
    }
    regions
}

/// The e820 map of the machine model for `mem_bytes` of guest RAM (at least 1 MiB + a bit).
pub fn e820_map(mem_bytes: u64) -> Vec<E820Entry> {
    let low_end = mem_bytes.min(MEM_32BIT_GAP_START);
    let mut map = vec![
        E820Entry {
            addr: 0,
            size: EBDA_START,
            kind: E820_RAM,
        },
        E820Entry {
            addr: EBDA_START,
            size: HIGH_RAM_START - EBDA_START,
            kind: E820_RESERVED,
        },
    ];
    if low_end > HIGH_RAM_START {
        map.push(E820Entry {
            addr: HIGH_RAM_START,
            size: low_end - HIGH_RAM_START,
            kind: E820_RAM,
        });
    }
    if mem_bytes > MEM_32BIT_GAP_START {
        map.push(E820Entry {
            addr: RAM_64BIT_START,
            size: mem_bytes - MEM_32BIT_GAP_START,
            kind: E820_RAM,
        });
    }
    map
}

/// Creates a plain guest RAM mapping (anonymous, private, not yet touched) for tests and tools; the
/// machine uses [`GuestRam::new`].
///
/// # Errors
/// The mmap failed (e.g. the host refused the size).
pub fn create_guest_memory(mem_bytes: u64) -> Result<GuestMem, vm_memory::mmap::FromRangesError> {
    GuestMemoryMmap::from_ranges(&ram_regions(mem_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e820_small_machine() {
        let m = e820_map(64 << 20);
        assert_eq!(m.len(), 3);
        assert_eq!(
            m[0],
            E820Entry {
                addr: 0,
                size: 0x9fc00,
                kind: E820_RAM
            }
        );
        assert_eq!(m[1].addr, 0x9fc00);
        assert_eq!(m[1].kind, E820_RESERVED);
        assert_eq!(
            m[2],
            E820Entry {
                addr: 0x100000,
                size: (64 << 20) - 0x100000,
                kind: E820_RAM
            }
        );
    }

    #[test]
    fn e820_above_4g() {
        let m = e820_map(4 << 30);
        assert_eq!(m[2].addr + m[2].size, 3 << 30);
        assert_eq!(
            m[3],
            E820Entry {
                addr: 4 << 30,
                size: 1 << 30,
                kind: E820_RAM
            }
        );
        let r = ram_regions(4 << 30);
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].0, GuestAddress(4 << 30));
    }
}
