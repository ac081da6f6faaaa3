//! The probe guest's fixed machine layout: GDT selectors, vectors, per-CPU limits, syscall numbers.
//!
//! These constants are shared by the ring-0 assembly (passed in as `const` operands) and the CPL3
//! Rust code, so both sides agree on one definition. Nothing here touches hardware.

/// Most vCPUs the probe brings up (TSS, stacks and GDT slots are reserved for this many; the
/// MADT parser keeps as many APIC ids).
pub const MAX_CPUS: usize = domus_probe::madt::MAX_CPUS;

/// GDT: 64-bit ring-0 code.
pub const KCODE64: u16 = 0x08;
/// GDT: ring-0 data.
pub const KDATA: u16 = 0x10;
/// GDT: ring-3 data (selector with RPL 3).
pub const UDATA: u16 = 0x18 | 3;
/// GDT: 64-bit ring-3 code (selector with RPL 3).
pub const UCODE64: u16 = 0x20 | 3;
/// GDT: 32-bit ring-0 code (used by the AP trampoline on its way to long mode).
pub const KCODE32: u16 = 0x28;
/// GDT: first TSS descriptor (16 bytes each, one per CPU).
pub const TSS_SEL0: u16 = 0x30;
/// Number of 8-byte GDT slots: 6 segments + 2 per TSS.
pub const GDT_SLOTS: usize = 6 + 2 * MAX_CPUS;

/// Spacing of the per-CPU TSSes (each is 0x68 bytes; the shared I/O bitmap follows the last one).
pub const TSS_STRIDE: usize = 0x80;
/// Size of the I/O permission bitmap (one bit per port) plus its terminating 0xff byte.
pub const IO_BITMAP_BYTES: usize = 8192 + 1;

/// Ring-0 stack per CPU (exception and interrupt frames land here through TSS.RSP0).
pub const KSTACK_SIZE: usize = 16 * 1024;
/// CPL3 stack per CPU.
pub const USTACK_SIZE: usize = 64 * 1024;
/// CPL3 stack the fatal-trap reporter runs on.
pub const FATAL_STACK_SIZE: usize = 32 * 1024;

/// Interrupt vector of the ACPI SCI (IOAPIC pin SCI_INT). In a priority class above the timer's and
/// COM1's: a busy event loop opens its interrupt window with a timer tick always pending, and a window
/// may deliver only the highest pending vector, so a lower-priority SCI could wait forever (seen under
/// load as a lost power button in `net-echo`).
pub const VECTOR_SCI: u8 = 0x40;
/// Vector of the COM1 receive interrupt (`echo`).
pub const VECTOR_COM1: u8 = 0x31;
/// Vector of the local APIC timer (a periodic safety-net wake-up while waiting).
pub const VECTOR_TIMER: u8 = 0x32;
/// Vector of the virtio-balloon's configuration interrupt (wakes the event loop; the driver reads
/// the new target in its hook).
pub const VECTOR_BALLOON: u8 = 0x33;
/// Spurious-interrupt vector of the local APIC.
pub const VECTOR_SPURIOUS: u8 = 0xff;

/// Physical address the AP real-mode trampoline is copied to (SIPI vector = address >> 12).
pub const TRAMPOLINE_BASE: usize = 0x8000;

/// Syscall numbers (RAX at the `ud2`); see `syscall.rs`.
pub mod sys {
    /// Does nothing; measures the round trip.
    pub const NOP: u64 = 0;
    /// `sti; hlt; cli`: returns after one interrupt was handled.
    pub const WAIT_IRQ: u64 = 1;
    /// `cli; hlt` forever.
    pub const HALT: u64 = 2;
    /// Loads an empty IDT and faults: the CPU shuts down (triple fault).
    pub const TRIPLE_FAULT: u64 = 3;
    /// CPUID as ring 0 sees it (only CPL0 sees the VMM's CPUID under PVM).
    pub const CPUID: u64 = 4;
    /// How many syscalls exist.
    pub const COUNT: u64 = 5;
}
