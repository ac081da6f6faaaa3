//! Booting a kernel: recognise the image, load it and the ramdisk, write the command line, the ACPI and
//! MP tables and the boot-protocol structure (PVH `hvm_start_info` or the Linux zero page), and say where
//! vCPU 0 starts.
//!
//! Fixed low-memory layout (all inside the first 640 KiB, below anything a kernel loads):
//! GDT 0x500, IDT 0x520, PVH start_info 0x6000 (+ modlist 0x6040), zero page / PVH memmap 0x7000,
//! boot stack top 0x8ff0, page tables 0x9000-0xbfff, command line 0x20000 (64 KiB),
//! ACPI 0xe0000, MP table 0xf0000.

pub mod acpi;
pub mod acpi_cpus;
/// Kernel recognition, shared with the spec conversion (`domus_spec::image`).
pub use domus_spec::image;
pub mod linux;
pub mod mptable;
pub mod pvh;

use std::path::PathBuf;

use vm_memory::{Bytes, GuestAddress};

use crate::config::VmConfig;
use crate::vstate::memory::{GuestMem, HIGH_RAM_START, MEM_32BIT_GAP_START};
use image::{ImageError, KernelKind};

/// Boot GDT.
pub const BOOT_GDT_ADDR: u64 = 0x500;
/// Boot IDT (empty).
pub const BOOT_IDT_ADDR: u64 = 0x520;
/// Top of the boot stack (Linux 64-bit entry).
pub const BOOT_STACK_TOP: u64 = 0x8ff0;
/// Kernel command line.
pub const CMDLINE_ADDR: u64 = 0x2_0000;
/// Room for the command line, NUL included.
pub const CMDLINE_MAX_BYTES: usize = 0x1_0000;

/// Where and how vCPU 0 starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryPoint {
    /// PVH: 32-bit protected mode, paging off, `ebx` = `start_info`.
    Pvh {
        /// 32-bit entry.
        entry: u64,
        /// `hvm_start_info` address.
        start_info: u64,
    },
    /// Linux 64-bit boot protocol: long mode with identity-mapped page tables, `rsi` = zero page.
    Linux64 {
        /// 64-bit entry.
        entry: u64,
        /// `boot_params` address.
        zero_page: u64,
    },
}

/// The kernel, ramdisk or boot structures cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Kernel file problems.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// linux-loader rejected the image.
    #[error("cannot load kernel {path} into guest memory ({memory_mib} MiB)")]
    Load {
        /// Kernel path.
        path: PathBuf,
        /// Guest RAM.
        memory_mib: u64,
        /// Cause.
        #[source]
        source: linux_loader::loader::Error,
    },
    /// A bzImage without the 64-bit entry.
    #[error("kernel {path} is a bzImage without a 64-bit entry point (XLF_KERNEL_64): use a 64-bit kernel")]
    NotKernel64 {
        /// Kernel path.
        path: PathBuf,
    },
    /// Ramdisk unreadable.
    #[error("cannot read ramdisk {path}")]
    RamdiskRead {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Ramdisk does not fit.
    #[error("ramdisk {path} ({size} bytes) does not fit in guest RAM above the kernel (kernel ends at {kernel_end:#x}, limit {limit:#x}): raise `memory`")]
    RamdiskTooLarge {
        /// Path.
        path: PathBuf,
        /// Size.
        size: u64,
        /// Kernel end.
        kernel_end: u64,
        /// Highest usable end.
        limit: u64,
    },
    /// Command line too long.
    #[error("kernel command line is {len} bytes; this kernel accepts at most {max}")]
    CmdlineTooLong {
        /// Length.
        len: usize,
        /// Max.
        max: usize,
    },
    /// Command line with a NUL.
    #[error("kernel command line contains a NUL byte")]
    CmdlineNul,
    /// Writing boot structures.
    #[error("cannot write {what} to guest memory")]
    Write {
        /// What.
        what: &'static str,
        /// Cause.
        #[source]
        source: vm_memory::GuestMemoryError,
    },
    /// ACPI.
    #[error(transparent)]
    Acpi(#[from] acpi::AcpiError),
    /// Too many vCPUs for the tables.
    #[error("{0} vCPUs do not fit the MADT / MP table (max 254)")]
    TooManyVcpus(u32),
}

/// A loaded ramdisk.
#[derive(Debug, Clone, Copy)]
pub struct Ramdisk {
    /// Guest address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
}

/// Loads everything for `cfg` into `mem` and returns vCPU 0's entry; `devices` are the DSDT entries
/// of the virtio devices (the device manager's).
///
/// # Errors
/// [`BootError`] naming the file or structure at fault.
pub fn load(
    mem: &GuestMem,
    cfg: &VmConfig,
    devices: &dyn acpi_tables::Aml,
) -> Result<EntryPoint, BootError> {
    let vcpus = u8::try_from(cfg.vcpus)
        .ok()
        .filter(|v| *v < 255)
        .ok_or(BootError::TooManyVcpus(cfg.vcpus))?;
    let possible = u8::try_from(cfg.max_vcpus.max(cfg.vcpus))
        .ok()
        .filter(|v| *v < 255)
        .ok_or(BootError::TooManyVcpus(cfg.max_vcpus))?;
    let bytes = cfg.kernel.read_kernel()?;
    let kind = image::classify(&bytes, &cfg.kernel.path)?;
    let mem_bytes = cfg.memory_mib << 20;
    let low_end = mem_bytes.min(MEM_32BIT_GAP_START);
    let rsdp = acpi::write_tables(mem, vcpus, possible, devices)?;
    mptable::write(mem, vcpus).map_err(|source| BootError::Write {
        what: "MP table",
        source,
    })?;
    let load_err = |source| BootError::Load {
        path: cfg.kernel.path.clone(),
        memory_mib: cfg.memory_mib,
        source,
    };
    match kind {
        KernelKind::Pvh { entry } => {
            let res = load_elf(mem, &bytes).map_err(load_err)?;
            linux::write_gdt(mem, &pvh::PVH_GDT)?;
            write_cmdline(mem, &cfg.cmdline, CMDLINE_MAX_BYTES)?;
            let ramdisk = load_ramdisk(mem, cfg, res.kernel_end, low_end)?;
            let start_info = pvh::write_start_info(mem, mem_bytes, rsdp, ramdisk)?;
            Ok(EntryPoint::Pvh {
                entry: u64::from(entry),
                start_info,
            })
        }
        KernelKind::LinuxElf { entry } => {
            let res = load_elf(mem, &bytes).map_err(load_err)?;
            let hdr = linux::default_setup_header();
            boot_linux(mem, cfg, hdr, entry, res.kernel_end, rsdp)
        }
        KernelKind::BzImage => {
            use linux_loader::loader::KernelLoader;
            let res = linux_loader::loader::bzimage::BzImage::load(
                mem,
                None,
                &mut std::io::Cursor::new(&bytes),
                Some(GuestAddress(HIGH_RAM_START)),
            )
            .map_err(load_err)?;
            let hdr = res.setup_header.unwrap_or_else(linux::default_setup_header);
            if hdr.xloadflags & linux::XLF_KERNEL_64 == 0 {
                return Err(BootError::NotKernel64 {
                    path: cfg.kernel.path.clone(),
                });
            }
            // The 64-bit entry is 0x200 past the protected-mode code (boot.rst "64-bit boot protocol").
            let entry = res.kernel_load.0 + 0x200;
            // The kernel decompresses in place and needs `init_size` bytes from its load address.
            let kernel_end = res
                .kernel_end
                .max(res.kernel_load.0 + u64::from(hdr.init_size));
            boot_linux(mem, cfg, hdr, entry, kernel_end, rsdp)
        }
    }
}

/// Loads an ELF kernel's PT_LOAD segments at their physical addresses (also the fuzz target's entry).
///
/// # Errors
/// linux-loader rejected the image or a segment falls outside guest memory.
pub fn load_elf(
    mem: &GuestMem,
    bytes: &[u8],
) -> Result<linux_loader::loader::KernelLoaderResult, linux_loader::loader::Error> {
    use linux_loader::loader::KernelLoader;
    linux_loader::loader::elf::Elf::load(mem, None, &mut std::io::Cursor::new(bytes), None)
}

fn boot_linux(
    mem: &GuestMem,
    cfg: &VmConfig,
    hdr: linux_loader::loader::bootparam::setup_header,
    entry: u64,
    kernel_end: u64,
    rsdp: u64,
) -> Result<EntryPoint, BootError> {
    let mem_bytes = cfg.memory_mib << 20;
    let max_cmdline = match hdr.cmdline_size {
        0 => 256,
        n => {
            usize::try_from(n)
                .unwrap_or(CMDLINE_MAX_BYTES - 1)
                .min(CMDLINE_MAX_BYTES - 1)
                + 1
        }
    };
    write_cmdline(mem, &cfg.cmdline, max_cmdline)?;
    let initrd_max = match hdr.initrd_addr_max {
        0 => 0x37ff_ffff,
        n => u64::from(n),
    };
    let limit = mem_bytes
        .min(MEM_32BIT_GAP_START)
        .min(initrd_max.saturating_add(1));
    let ramdisk = load_ramdisk(mem, cfg, kernel_end, limit)?;
    let zero_page = linux::write_zero_page(mem, hdr, mem_bytes, &cfg.cmdline, ramdisk, rsdp)?;
    linux::write_page_tables(mem)?;
    linux::write_gdt(mem, &linux::BOOT_GDT)?;
    Ok(EntryPoint::Linux64 { entry, zero_page })
}

fn write_cmdline(mem: &GuestMem, cmdline: &str, max_with_nul: usize) -> Result<(), BootError> {
    if cmdline.as_bytes().contains(&0) {
        return Err(BootError::CmdlineNul);
    }
    if cmdline.len() + 1 > max_with_nul {
        return Err(BootError::CmdlineTooLong {
            len: cmdline.len(),
            max: max_with_nul - 1,
        });
    }
    let mut b = cmdline.as_bytes().to_vec();
    b.push(0);
    mem.write_slice(&b, GuestAddress(CMDLINE_ADDR))
        .map_err(|source| BootError::Write {
            what: "command line",
            source,
        })
}

fn load_ramdisk(
    mem: &GuestMem,
    cfg: &VmConfig,
    kernel_end: u64,
    limit: u64,
) -> Result<Option<Ramdisk>, BootError> {
    let Some(ramdisk) = &cfg.ramdisk else {
        return Ok(None);
    };
    let path = &ramdisk.path;
    let data = ramdisk
        .read_all()
        .map_err(|source| BootError::RamdiskRead {
            path: path.clone(),
            source,
        })?;
    let size = u64::try_from(data.len()).unwrap_or(u64::MAX);
    let too_large = || BootError::RamdiskTooLarge {
        path: path.clone(),
        size,
        kernel_end,
        limit,
    };
    let addr = limit.checked_sub(size).ok_or_else(too_large)? & !0xfff;
    if addr < kernel_end.max(HIGH_RAM_START) {
        return Err(too_large());
    }
    mem.write_slice(&data, GuestAddress(addr))
        .map_err(|source| BootError::Write {
            what: "ramdisk",
            source,
        })?;
    Ok(Some(Ramdisk { addr, size }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Source;
    use linux_loader::loader::elf::start_info::{
        hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
    };

    fn temp_file(tag: &str, bytes: &[u8]) -> PathBuf {
        let p = std::env::temp_dir().join(format!("domus-vmm-boot-{tag}-{}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn pvh_start_info_with_ramdisk_and_cmdline() {
        let elf = image::testing::elf_with_notes(&[(b"Xen", 18, &0x10_0000u32.to_le_bytes())]);
        let kernel = temp_file("pvh", &elf);
        let ramdisk = temp_file("initrd", &[0xabu8; 10_000]);
        let cfg = VmConfig {
            name: "t".into(),
            kernel: Source::path(kernel.clone()),
            ramdisk: Some(Source::path(ramdisk.clone())),
            cmdline: "probe=hello x=1".into(),
            memory_mib: 32,
            vcpus: 2,
            max_vcpus: 2,
            disks: Vec::new(),
            rng: None,
            balloon: None,
            nics: Vec::new(),
            vcpu_affinity: Vec::new(),
            restore: None,
            restore_ready: None,
            lock_disks_at_start: false,
        };
        let mem = crate::vstate::memory::create_guest_memory(32 << 20).unwrap();
        let entry = load(
            &mem,
            &cfg,
            &crate::devices::virtio::manager::dsdt_devices(0),
        )
        .unwrap();
        assert_eq!(
            entry,
            EntryPoint::Pvh {
                entry: 0x10_0000,
                start_info: pvh::START_INFO_ADDR
            }
        );
        let info: hvm_start_info = mem.read_obj(GuestAddress(pvh::START_INFO_ADDR)).unwrap();
        assert_eq!(info.magic, pvh::START_MAGIC);
        assert_eq!(info.rsdp_paddr, acpi::RSDP_ADDR);
        assert_eq!(info.memmap_entries, 3);
        let last: hvm_memmap_table_entry = mem
            .read_obj(GuestAddress(info.memmap_paddr + 2 * 24))
            .unwrap();
        assert_eq!(
            (last.addr, last.size, last.type_),
            (0x10_0000, (32 << 20) - 0x10_0000, 1)
        );
        let mut cl = [0u8; 16];
        mem.read_slice(&mut cl, GuestAddress(info.cmdline_paddr))
            .unwrap();
        assert_eq!(&cl, b"probe=hello x=1\0");
        assert_eq!(info.nr_modules, 1);
        let m: hvm_modlist_entry = mem.read_obj(GuestAddress(info.modlist_paddr)).unwrap();
        assert_eq!(m.size, 10_000);
        assert_eq!(m.paddr % 4096, 0);
        assert!(m.paddr + m.size <= 32 << 20);
        let b: u8 = mem.read_obj(GuestAddress(m.paddr + 9_999)).unwrap();
        assert_eq!(b, 0xab);
        std::fs::remove_file(kernel).unwrap();
        std::fs::remove_file(ramdisk).unwrap();
    }

    #[test]
    fn linux_elf_gets_zero_page_and_errors_are_located() {
        let elf = image::testing::elf_with_notes(&[(b"GNU", 3, b"abcd")]);
        let kernel = temp_file("linuxelf", &elf);
        let mut cfg = VmConfig {
            name: "t".into(),
            kernel: Source::path(kernel.clone()),
            ramdisk: None,
            cmdline: "console=ttyS0".into(),
            memory_mib: 32,
            vcpus: 1,
            max_vcpus: 1,
            disks: Vec::new(),
            rng: None,
            balloon: None,
            nics: Vec::new(),
            vcpu_affinity: Vec::new(),
            restore: None,
            restore_ready: None,
            lock_disks_at_start: false,
        };
        let mem = crate::vstate::memory::create_guest_memory(32 << 20).unwrap();
        let entry = load(
            &mem,
            &cfg,
            &crate::devices::virtio::manager::dsdt_devices(0),
        )
        .unwrap();
        assert_eq!(
            entry,
            EntryPoint::Linux64 {
                entry: 0x100_0000,
                zero_page: linux::ZERO_PAGE_ADDR
            }
        );
        cfg.ramdisk = Some(Source::path(PathBuf::from("/nonexistent/initrd")));
        let err = load(
            &mem,
            &cfg,
            &crate::devices::virtio::manager::dsdt_devices(0),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/initrd"), "{err}");
        cfg.ramdisk = None;
        cfg.cmdline = "x".repeat(5000);
        assert!(matches!(
            load(
                &mem,
                &cfg,
                &crate::devices::virtio::manager::dsdt_devices(0)
            ),
            Err(BootError::CmdlineTooLong { .. })
        ));
        std::fs::remove_file(kernel).unwrap();
    }
}
