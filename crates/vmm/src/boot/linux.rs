//! Linux 64-bit boot protocol (Documentation/arch/x86/boot.rst): the zero page (`boot_params`) with our
//! e820 map, command line, ramdisk and RSDP; the identity-mapped page tables and the boot GDT that the
//! vCPU setup points at.

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use vm_memory::{Bytes, GuestAddress};

use super::{BootError, Ramdisk, BOOT_GDT_ADDR, BOOT_IDT_ADDR, CMDLINE_ADDR};
use crate::vstate::memory::{e820_map, GuestMem};

/// Zero page address.
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// PML4.
pub const PML4_ADDR: u64 = 0x9000;
/// PDPT.
pub const PDPTE_ADDR: u64 = 0xa000;
/// Page directory (identity maps the first GiB with 2 MiB pages).
pub const PDE_ADDR: u64 = 0xb000;
/// `xloadflags` bit: the kernel has the 64-bit entry point at +0x200.
pub const XLF_KERNEL_64: u16 = 1;

const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT_BYTES: u32 = 0x100_0000;

/// Boot GDT entries (selectors 0x10 = __BOOT_CS, 0x18 = __BOOT_DS as boot.rst asks, 0x20 = TSS).
pub const BOOT_GDT: [u64; 5] = [
    0,
    0,
    gdt_entry(0xa09b, 0, 0xfffff), // 64-bit code
    gdt_entry(0xc093, 0, 0xfffff), // data
    gdt_entry(0x808b, 0, 0xfffff), // TSS
];

/// Packs a GDT descriptor from access/flags bits, base and limit (Intel SDM vol. 3 §3.4.5).
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    (((base as u64) & 0xff00_0000) << (56 - 24))
        | (((flags as u64) & 0x0000_f0ff) << 40)
        | (((limit as u64) & 0x000f_0000) << (48 - 16))
        | (((base as u64) & 0x00ff_ffff) << 16)
        | ((limit as u64) & 0x0000_ffff)
}

/// A setup header for an ELF vmlinux (which has none): just the magic values the kernel checks.
pub fn default_setup_header() -> setup_header {
    setup_header {
        boot_flag: KERNEL_BOOT_FLAG_MAGIC,
        header: KERNEL_HDR_MAGIC,
        kernel_alignment: KERNEL_MIN_ALIGNMENT_BYTES,
        // x86 COMMAND_LINE_SIZE (2048) minus the NUL: what every 64-bit kernel accepts.
        cmdline_size: 2047,
        ..Default::default()
    }
}

/// Writes the zero page; returns its address (the guest's `rsi`).
///
/// # Errors
/// Guest memory write failed.
pub fn write_zero_page(
    mem: &GuestMem,
    mut hdr: setup_header,
    mem_bytes: u64,
    cmdline: &str,
    ramdisk: Option<Ramdisk>,
    rsdp: u64,
) -> Result<u64, BootError> {
    hdr.type_of_loader = KERNEL_LOADER_OTHER;
    hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    hdr.header = KERNEL_HDR_MAGIC;
    hdr.cmd_line_ptr = u32::try_from(CMDLINE_ADDR).unwrap_or(0);
    hdr.cmdline_size = u32::try_from(cmdline.len()).unwrap_or(0);
    if let Some(rd) = ramdisk {
        hdr.ramdisk_image = u32::try_from(rd.addr).unwrap_or(0);
        hdr.ramdisk_size = u32::try_from(rd.size).unwrap_or(0);
    }
    let mut params = boot_params {
        hdr,
        acpi_rsdp_addr: rsdp,
        ..Default::default()
    };
    let map = e820_map(mem_bytes);
    for (slot, e) in params.e820_table.iter_mut().zip(map.iter()) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind,
        };
    }
    params.e820_entries = u8::try_from(map.len()).unwrap_or(0);
    mem.write_obj(params, GuestAddress(ZERO_PAGE_ADDR))
        .map_err(|source| BootError::Write {
            what: "zero page",
            source,
        })?;
    Ok(ZERO_PAGE_ADDR)
}

/// Writes the boot GDT and an empty IDT (shared by both entry modes).
///
/// # Errors
/// Guest memory write failed.
pub fn write_gdt(mem: &GuestMem, gdt: &[u64]) -> Result<(), BootError> {
    let err = |source| BootError::Write {
        what: "boot GDT",
        source,
    };
    for (i, e) in gdt.iter().enumerate() {
        let at = BOOT_GDT_ADDR + u64::try_from(i * 8).unwrap_or(0);
        mem.write_obj(*e, GuestAddress(at)).map_err(err)?;
    }
    mem.write_obj(0u64, GuestAddress(BOOT_IDT_ADDR))
        .map_err(err)
}

/// Identity-maps the first GiB with 2 MiB pages (PML4 -> PDPT -> PD), as the 64-bit entry requires.
///
/// # Errors
/// Guest memory write failed.
pub fn write_page_tables(mem: &GuestMem) -> Result<(), BootError> {
    let err = |source| BootError::Write {
        what: "boot page tables",
        source,
    };
    mem.write_obj(PDPTE_ADDR | 0x03, GuestAddress(PML4_ADDR))
        .map_err(err)?;
    mem.write_obj(PDE_ADDR | 0x03, GuestAddress(PDPTE_ADDR))
        .map_err(err)?;
    for i in 0u64..512 {
        mem.write_obj((i << 21) | 0x83, GuestAddress(PDE_ADDR + i * 8))
            .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_entries_match_known_values() {
        assert_eq!(gdt_entry(0xa09b, 0, 0xfffff), 0x00af_9b00_0000_ffff);
        assert_eq!(gdt_entry(0xc093, 0, 0xfffff), 0x00cf_9300_0000_ffff);
    }

    #[test]
    fn zero_page_carries_e820_cmdline_rsdp() {
        let mem = crate::vstate::memory::create_guest_memory(64 << 20).unwrap();
        let at = write_zero_page(
            &mem,
            default_setup_header(),
            64 << 20,
            "console=ttyS0",
            None,
            0xe0000,
        )
        .unwrap();
        let p: boot_params = mem.read_obj(GuestAddress(at)).unwrap();
        assert_eq!(p.e820_entries, 3);
        let e2 = p.e820_table[2];
        assert_eq!({ e2.addr }, 0x100000);
        assert_eq!({ p.acpi_rsdp_addr }, 0xe0000);
        let hdr = p.hdr;
        assert_eq!({ hdr.cmd_line_ptr }, 0x20000);
        assert_eq!({ hdr.type_of_loader }, 0xff);
        write_page_tables(&mem).unwrap();
        let pde1: u64 = mem.read_obj(GuestAddress(PDE_ADDR + 8)).unwrap();
        assert_eq!(pde1, 0x20_0083);
    }
}
