//! Port and MMIO access from CPL3, and the TSS I/O permission bitmap that allows it.
//!
//! Under PVM, RFLAGS.IOPL is ignored at CPL3: a port is usable only if its bit in the TSS I/O
//! bitmap is clear. The bitmap (shared by all CPUs' TSSes) starts with every port denied; CPL3
//! allows the ports it uses (`allow_port`) before touching them. The bitmap is ordinary memory,
//! read by the CPU on every access, so no ring-0 call is needed to change it.

use crate::layout::IO_BITMAP_BYTES;

extern "C" {
    static mut io_bitmap: [u8; IO_BITMAP_BYTES];
}

/// Allows CPL3 access to `count` ports starting at `port`.
pub fn allow_ports(port: u16, count: u16) {
    // SAFETY: only the address of the bitmap (boot.rs) is taken.
    let bitmap = core::ptr::addr_of_mut!(io_bitmap).cast::<u8>();
    for p in u32::from(port)..(u32::from(port) + u32::from(count)).min(0x1_0000) {
        let byte = (p / 8) as usize;
        // SAFETY: `byte < 8192`, inside the bitmap; the CPU only reads it.
        let cell = unsafe { bitmap.add(byte) };
        // SAFETY: `cell` points into the bitmap (above).
        let old = unsafe { cell.read_volatile() };
        // SAFETY: as above.
        unsafe { cell.write_volatile(old & !(1 << (p % 8))) };
    }
}

/// Reads a byte from an allowed port.
pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: port input has no memory effects; a denied port raises #GP (a reported fatal trap).
    unsafe {
        core::arch::asm!("inb %dx, %al", in("dx") port, out("al") value, options(att_syntax, nostack, nomem))
    };
    value
}

/// Writes a byte to an allowed port.
pub fn outb(port: u16, value: u8) {
    // SAFETY: as for `inb`.
    unsafe {
        core::arch::asm!("outb %al, %dx", in("dx") port, in("al") value, options(att_syntax, nostack, nomem))
    };
}

/// Writes `bytes` to an allowed port with one `rep outsb` (KVM hands a string PIO to the VMM
/// as one exit carrying all the bytes, instead of one exit per byte).
pub fn outsb(port: u16, bytes: &[u8]) {
    // SAFETY: `rep outsb` reads exactly `bytes.len()` bytes from `bytes` (DF is clear per the
    // ABI) and writes them to the port; no other memory is touched.
    unsafe {
        core::arch::asm!(
            "rep outsb",
            in("dx") port,
            inout("rsi") bytes.as_ptr() => _,
            inout("rcx") bytes.len() => _,
            options(att_syntax, nostack, readonly)
        )
    };
}

/// Reads 16 bits from an allowed port.
pub fn inw(port: u16) -> u16 {
    let value: u16;
    // SAFETY: as for `inb`.
    unsafe {
        core::arch::asm!("inw %dx, %ax", in("dx") port, out("ax") value, options(att_syntax, nostack, nomem))
    };
    value
}

/// Writes 16 bits to an allowed port.
pub fn outw(port: u16, value: u16) {
    // SAFETY: as for `inb`.
    unsafe {
        core::arch::asm!("outw %ax, %dx", in("dx") port, in("ax") value, options(att_syntax, nostack, nomem))
    };
}

/// Reads 32 bits from an allowed port.
pub fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: as for `inb`.
    unsafe {
        core::arch::asm!("inl %dx, %eax", in("dx") port, out("eax") value, options(att_syntax, nostack, nomem))
    };
    value
}

/// Reads a 32-bit device register at physical address `addr` (identity mapped, uncached).
pub fn mmio_read32(addr: u64) -> u32 {
    // SAFETY: the whole 0-4 GiB range is identity mapped user-accessible; callers pass device
    // register addresses taken from ACPI tables or fixed by the platform.
    unsafe { (addr as usize as *const u32).read_volatile() }
}

/// Writes a 32-bit device register at physical address `addr`.
pub fn mmio_write32(addr: u64, value: u32) {
    // SAFETY: as for `mmio_read32`.
    unsafe { (addr as usize as *mut u32).write_volatile(value) };
}

/// Writes an 8-bit device register at physical address `addr`.
pub fn mmio_write8(addr: u64, value: u8) {
    // SAFETY: as for `mmio_read32`.
    unsafe { (addr as usize as *mut u8).write_volatile(value) };
}

/// Reads a byte of physical memory (firmware tables; identity mapped below 4 GiB).
pub fn phys_read8(addr: u64) -> u8 {
    // SAFETY: as for `mmio_read32`; callers bound `addr` below 4 GiB.
    unsafe { (addr as usize as *const u8).read_volatile() }
}

/// A view of `len` bytes of physical memory below 4 GiB, or `None` if the range leaves it.
pub fn phys_slice(addr: u64, len: usize) -> Option<&'static [u8]> {
    let end = addr.checked_add(len as u64)?;
    if addr == 0 || end > 0x1_0000_0000 {
        return None;
    }
    // SAFETY: the range lies in the identity map below 4 GiB and is only read; firmware tables
    // and boot data are not modified while the probe runs.
    Some(unsafe { core::slice::from_raw_parts(addr as usize as *const u8, len) })
}

/// The time stamp counter (native at CPL3 under PVM).
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc only reads the TSC.
    unsafe { core::arch::asm!("rdtsc", out("eax") lo, out("edx") hi, options(nostack, nomem)) };
    (u64::from(hi) << 32) | u64::from(lo)
}
