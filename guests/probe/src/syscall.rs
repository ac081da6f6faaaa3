//! CPL3 side of the probe's "system calls".
//!
//! Convention: RAX = request number (`layout::sys`), arguments in RDI, RSI (RDX), then `ud2`.
//! The ring-0 #UD handler checks that the faulting instruction is a `ud2` at CPL3, dispatches,
//! and resumes after it; results come back in RAX (CPUID also uses RDI, RSI, RDX). Every other
//! register is preserved. `syscall`/`sysret` and `int $n` cannot be used under PVM (ENVIRONMENT.md),
//! and a #UD round trip costs ~20 µs there, so CPL3 code calls ring 0 only for what it cannot do
//! itself: `hlt` (with interrupts enabled), CPUID as the VMM presents it, and shutting the CPU down.

use crate::layout::sys;

/// One ring-0 round trip that does nothing.
pub fn nop() {
    // SAFETY: the NOP syscall changes no state; RAX is declared clobbered by the call.
    unsafe { core::arch::asm!("ud2", inout("rax") sys::NOP => _, options(nostack)) };
}

/// Enables interrupts, halts until one was handled, disables them again (`sti; hlt; cli`).
pub fn wait_for_interrupt() {
    // SAFETY: ring 0 runs the handlers of whatever interrupt arrives and returns here with
    // interrupts disabled; handlers preserve all registers.
    unsafe { core::arch::asm!("ud2", inout("rax") sys::WAIT_IRQ => _, options(nostack)) };
}

/// Halts this CPU for good (interrupts disabled).
pub fn halt_forever() -> ! {
    // SAFETY: the HALT syscall never returns.
    unsafe { core::arch::asm!("ud2", in("rax") sys::HALT, options(noreturn, nostack)) }
}

/// Loads an empty IDT in ring 0 and faults there: the vCPU shuts down (triple fault).
pub fn triple_fault() -> ! {
    // SAFETY: the TRIPLE_FAULT syscall never returns.
    unsafe { core::arch::asm!("ud2", in("rax") sys::TRIPLE_FAULT, options(noreturn, nostack)) }
}

/// CPUID as ring 0 sees it: `[eax, ebx, ecx, edx]` of `leaf`/`subleaf`.
pub fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let (eax, ebx, ecx, edx): (u64, u64, u64, u64);
    // SAFETY: the CPUID syscall only returns values in RAX, RDI, RSI and RDX.
    unsafe {
        core::arch::asm!(
            "ud2",
            inout("rax") sys::CPUID => eax,
            inout("rdi") u64::from(leaf) => ebx,
            inout("rsi") u64::from(subleaf) => ecx,
            out("rdx") edx,
            options(nostack)
        )
    };
    // Ring 0 returned 32-bit register values zero-extended.
    [eax as u32, ebx as u32, ecx as u32, edx as u32]
}
