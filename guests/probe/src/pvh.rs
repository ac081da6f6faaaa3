//! The PVH `hvm_start_info` structure handed over in `%ebx` (Xen `arch-x86/hvm/start_info.h`).
//!
//! Copied out once at boot (it lives in guest RAM that later scenarios may reuse) and validated:
//! magic, version, and every pointer checked to lie below 4 GiB before it is followed.

use crate::io::phys_slice;
use crate::memmap::{MemMap, MemRegion};

const START_INFO_MAGIC: u32 = 0x336e_c578;
const CMDLINE_MAX: usize = 1024;

/// What the boot loader told us.
pub struct BootInfo {
    /// `start_info` version (0 or 1).
    pub version: u32,
    /// The ACPI RSDP address from start_info (0 = not given).
    pub rsdp_paddr: u64,
    /// The e820-style memory map (version 1 only; empty otherwise).
    pub memmap: MemMap,
    cmdline: [u8; CMDLINE_MAX],
    cmdline_len: usize,
}

/// Why start_info could not be used.
#[derive(Debug, Clone, Copy)]
pub enum BootInfoError {
    /// `%ebx` pointed outside low memory.
    BadPointer(u64),
    /// The magic value was wrong (not booted through PVH).
    BadMagic(u32),
}

impl BootInfo {
    /// Reads and copies start_info at `paddr`.
    pub fn read(paddr: u64) -> Result<Self, BootInfoError> {
        let raw = phys_slice(paddr, 56).ok_or(BootInfoError::BadPointer(paddr))?;
        let u32_at =
            |off: usize| u32::from_le_bytes([raw[off], raw[off + 1], raw[off + 2], raw[off + 3]]);
        let u64_at = |off: usize| u64::from(u32_at(off)) | (u64::from(u32_at(off + 4)) << 32);
        let magic = u32_at(0);
        if magic != START_INFO_MAGIC {
            return Err(BootInfoError::BadMagic(magic));
        }
        let version = u32_at(4);
        let mut info = Self {
            version,
            rsdp_paddr: u64_at(32),
            memmap: MemMap::new(),
            cmdline: [0; CMDLINE_MAX],
            cmdline_len: 0,
        };
        info.copy_cmdline(u64_at(24));
        if version >= 1 {
            info.copy_memmap(u64_at(40), u32_at(48));
        }
        Ok(info)
    }

    fn copy_cmdline(&mut self, paddr: u64) {
        if paddr == 0 {
            return;
        }
        for (i, slot) in self.cmdline.iter_mut().enumerate() {
            let Some(byte) = paddr
                .checked_add(i as u64)
                .and_then(|a| phys_slice(a, 1))
                .map(|s| s[0])
            else {
                break;
            };
            if byte == 0 {
                break;
            }
            *slot = byte;
            self.cmdline_len = i + 1;
        }
    }

    fn copy_memmap(&mut self, paddr: u64, entries: u32) {
        let count = (entries as usize).min(crate::memmap::MAX_REGIONS);
        let Some(raw) = phys_slice(paddr, count * 24) else {
            return;
        };
        for entry in raw.chunks_exact(24) {
            let field = |off: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&entry[off..off + 8]);
                u64::from_le_bytes(b)
            };
            let kind = u32::from_le_bytes([entry[16], entry[17], entry[18], entry[19]]);
            self.memmap.push(MemRegion {
                addr: field(0),
                size: field(8),
                kind,
            });
        }
    }

    /// The kernel command line (bytes that are not UTF-8 make it empty).
    pub fn cmdline(&self) -> &str {
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }
}
