//! PVH boot (xen/include/public/arch-x86/hvm/start_info.h, docs/misc/pvh.pandoc): `hvm_start_info` with
//! the command line, the e820 memory map, the RSDP and an optional ramdisk module.

use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::{Bytes, GuestAddress};

use super::{BootError, Ramdisk, CMDLINE_ADDR};
use crate::vstate::memory::{e820_map, GuestMem};

/// `hvm_start_info` address.
pub const START_INFO_ADDR: u64 = 0x6000;
/// Module list (the ramdisk).
pub const MODLIST_ADDR: u64 = 0x6040;
/// e820-style memory map.
pub const MEMMAP_ADDR: u64 = 0x7000;
/// PVH entry GDT (selectors 0x08 = 32-bit code, 0x10 = data, 0x18 = TSS): the flat segments the PVH ABI
/// describes for the entry state.
pub const PVH_GDT: [u64; 4] = [
    0,
    super::linux::gdt_entry(0xc09b, 0, 0xffff_ffff),
    super::linux::gdt_entry(0xc093, 0, 0xffff_ffff),
    super::linux::gdt_entry(0x008b, 0, 0x67),
];
/// `XEN_HVM_START_MAGIC_VALUE`.
pub const START_MAGIC: u32 = 0x336e_c578;

/// Writes start_info, its memory map and module list; returns the start_info address (the guest's `ebx`).
///
/// # Errors
/// Guest memory writes failed.
pub fn write_start_info(
    mem: &GuestMem,
    mem_bytes: u64,
    rsdp: u64,
    ramdisk: Option<Ramdisk>,
) -> Result<u64, BootError> {
    let write_err = |what| move |source| BootError::Write { what, source };
    let map = e820_map(mem_bytes);
    for (i, e) in map.iter().enumerate() {
        let entry = hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind,
            reserved: 0,
        };
        let at = MEMMAP_ADDR
            + u64::try_from(i * std::mem::size_of::<hvm_memmap_table_entry>()).unwrap_or(0);
        mem.write_obj(entry, GuestAddress(at))
            .map_err(write_err("PVH memory map"))?;
    }
    let mut info = hvm_start_info {
        magic: START_MAGIC,
        version: 1,
        cmdline_paddr: CMDLINE_ADDR,
        rsdp_paddr: rsdp,
        memmap_paddr: MEMMAP_ADDR,
        memmap_entries: u32::try_from(map.len()).unwrap_or(0),
        ..Default::default()
    };
    if let Some(rd) = ramdisk {
        let m = hvm_modlist_entry {
            paddr: rd.addr,
            size: rd.size,
            ..Default::default()
        };
        mem.write_obj(m, GuestAddress(MODLIST_ADDR))
            .map_err(write_err("PVH module list"))?;
        info.nr_modules = 1;
        info.modlist_paddr = MODLIST_ADDR;
    }
    mem.write_obj(info, GuestAddress(START_INFO_ADDR))
        .map_err(write_err("PVH start_info"))?;
    Ok(START_INFO_ADDR)
}
