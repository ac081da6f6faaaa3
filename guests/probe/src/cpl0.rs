//! Ring-0 trap and interrupt handlers, and the CPL3 code that installs them.
//!
//! CPL3 reaches ring 0 only through exceptions (`syscall` stays at CPL3 and `int $n` raises #UD
//! under PVM): a `ud2` at CPL3 with a request number in RAX is a "system call" (see `syscall.rs`
//! for the convention). The handlers are a few emulated instructions each:
//! - `#UD` from CPL3 on a `ud2`: dispatch RAX through `syscall_table`, resume after the `ud2`.
//! - any other exception (or a bad syscall): record vector/error/RIP/CS/RSP/CR2 in `trap_record`
//!   and `iretq` into the CPL3 reporter `fatal_trap` on its own stack; a second fatal trap shuts
//!   the CPU down (triple fault).
//! - the SCI vector: read PM1_STS, remember it (`sci_pm1_status`), write the bits back to clear
//!   them (which lowers a level-triggered SCI); on hardware-reduced machines read the Generic
//!   Event Device's selector instead (`sci_ged_events`); EOI the local APIC.
//! - other vectors: EOI and count; the spurious vector: nothing.
//! - NMI (vector 2): count it (`take_nmi_count`); if it interrupted the wait syscall's `hlt`, return
//!   past it so the waiting loop reports it at once.
//!
//! The IDT itself is plain memory (mapped user-accessible), so CPL3 fills the 256 gates natively
//! (`install_idt`) instead of spending emulated ring-0 instructions on it.

use crate::layout::{sys, KCODE64, KDATA, UCODE64, UDATA, VECTOR_SCI, VECTOR_SPURIOUS};
use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};

core::arch::global_asm!(
    ".pushsection .text, \"ax\"",
    ".code64",
    // ---- #UD: syscall dispatch -------------------------------------------------------------------
    ".globl trap_ud",
    "trap_ud:",
    "    testb $3, 8(%rsp)", // from CPL3?
    "    jz 9f",
    "    pushq %rcx",
    "    movq 8(%rsp), %rcx", // faulting RIP
    "    cmpw $0x0b0f, (%rcx)", // ud2
    "    jne 8f",
    "    cmpq ${sys_count}, %rax",
    "    jae 8f",
    "    addq $2, 8(%rsp)",
    "    movq syscall_table(,%rax,8), %rcx",
    "    xchgq %rcx, (%rsp)", // restore RCX, leave the handler address on the stack
    "    ret",                // ... and jump to it with the iret frame on top
    "8:  popq %rcx",
    "9:  pushq $0",
    "    pushq $6",
    "    jmp trap_fatal_common",
    // ---- syscalls: entered with the iret frame on top of the stack --------------------------------
    "sys_nop:",
    "    iretq",
    "sys_wait_irq:",
    "    sti",
    "wait_irq_hlt:",
    "    hlt",
    "    cli",
    "    iretq",
    "sys_halt:",
    "    cli",
    "1:  hlt",
    "    jmp 1b",
    "sys_triple_fault:",
    "    lidt empty_idt_ptr",
    "    ud2",
    "sys_cpuid:", // in: EDI leaf, ESI subleaf; out: RAX=EAX RDI=EBX RSI=ECX RDX=EDX
    "    pushq %rbx",
    "    pushq %rcx",
    "    movl %edi, %eax",
    "    movl %esi, %ecx",
    "    cpuid",
    "    movl %ebx, %edi",
    "    movl %ecx, %esi",
    "    popq %rcx",
    "    popq %rbx",
    "    iretq",
    // ---- fatal exceptions ------------------------------------------------------------------------
    ".macro trap_noerr vec",
    "trap_stub_\\vec:",
    "    pushq $0",
    "    pushq $\\vec",
    "    jmp trap_fatal_common",
    ".endm",
    ".macro trap_err vec",
    "trap_stub_\\vec:",
    "    pushq $\\vec",
    "    jmp trap_fatal_common",
    ".endm",
    "trap_noerr 0",
    "trap_noerr 1",
    "trap_noerr 2",
    "trap_noerr 3",
    "trap_noerr 4",
    "trap_noerr 5",
    "trap_noerr 6",
    "trap_noerr 7",
    "trap_err 8",
    "trap_noerr 9",
    "trap_err 10",
    "trap_err 11",
    "trap_err 12",
    "trap_err 13",
    "trap_err 14",
    "trap_noerr 15",
    "trap_noerr 16",
    "trap_err 17",
    "trap_noerr 18",
    "trap_noerr 19",
    "trap_noerr 20",
    "trap_err 21",
    "trap_noerr 22",
    "trap_noerr 23",
    "trap_noerr 24",
    "trap_noerr 25",
    "trap_noerr 26",
    "trap_noerr 27",
    "trap_noerr 28",
    "trap_err 29",
    "trap_err 30",
    "trap_noerr 31",
    // stack: vector, error, RIP, CS, RFLAGS, RSP, SS
    "trap_fatal_common:",
    "    incq trap_record + 48",
    "    cmpq $1, trap_record + 48",
    "    jne sys_triple_fault", // the reporter itself faulted
    "    popq trap_record",      // vector
    "    popq trap_record + 8",  // error code
    "    movq %rax, trap_rax",
    "    movq (%rsp), %rax",
    "    movq %rax, trap_record + 16", // RIP
    "    movq 8(%rsp), %rax",
    "    movq %rax, trap_record + 24", // CS
    "    movq 24(%rsp), %rax",
    "    movq %rax, trap_record + 32", // RSP
    "    movq %cr2, %rax",
    "    movq %rax, trap_record + 40",
    "    movq $fatal_trap_cpl3, (%rsp)",
    "    movq ${ucode64}, 8(%rsp)",
    "    movq $2, 16(%rsp)",
    "    movq $(fatal_stack + {fatal_stack_size}), 24(%rsp)",
    "    movq ${udata}, 32(%rsp)",
    "    iretq",
    "fatal_trap_cpl3:",
    "    call {fatal_trap}",
    "    ud2",
    // ---- interrupts ------------------------------------------------------------------------------
    ".globl irq_sci",
    "irq_sci:",
    "    pushq %rax",
    "    pushq %rdx",
    "    movzwl pm1a_evt_port, %edx",
    "    testl %edx, %edx",
    "    jz 1f",
    "    inw %dx, %ax",
    "    orw %ax, sci_pm1_status",
    "    outw %ax, %dx", // write the set bits back: clears them, lowers the SCI
    "1:  movq ged_esel_addr, %rdx",
    "    testq %rdx, %rdx",
    "    jz 2f",
    "    movl (%rdx), %eax", // reading QEMU's GED event selector also clears it
    "    orl %eax, sci_ged_events",
    "2:  incq sci_count",
    "    movq lapic_base, %rdx",
    "    movl $0, 0xb0(%rdx)", // EOI
    "    popq %rdx",
    "    popq %rax",
    "    iretq",
    ".globl irq_other",
    "irq_other:",
    "    pushq %rdx",
    "    incq irq_other_count",
    "    movq lapic_base, %rdx",
    "    movl $0, 0xb0(%rdx)",
    "    popq %rdx",
    "    iretq",
    ".globl irq_spurious",
    "irq_spurious:",
    "    iretq",
    // NMI: count it; an NMI that woke `sys_wait_irq`'s hlt (or came between its sti and hlt)
    // returns past the hlt, so the waiting CPL3 loop sees the count at once.
    ".globl irq_nmi",
    "irq_nmi:",
    "    incq nmi_count",
    "    cmpq $wait_irq_hlt, (%rsp)",
    "    jne 1f",
    "    incq (%rsp)", // hlt is one byte
    "1:  iretq",
    ".popsection",
    // ---- data ------------------------------------------------------------------------------------
    ".pushsection .rodata",
    ".p2align 3",
    "syscall_table:",
    "    .quad sys_nop, sys_wait_irq, sys_halt, sys_triple_fault, sys_cpuid",
    ".globl trap_stub_table",
    "trap_stub_table:",
    ".irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    "    .quad trap_stub_\\v",
    ".endr",
    ".popsection",
    ".pushsection .data.boot, \"aw\"",
    ".p2align 3",
    "empty_idt_ptr: .word 0",
    "    .quad 0",
    ".p2align 3",
    ".globl trap_record",
    "trap_record: .fill 7, 8, 0", // vector, error, rip, cs, rsp, cr2, count
    "trap_rax: .quad 0",
    ".globl sci_count",
    "sci_count: .quad 0",
    ".globl irq_other_count",
    "irq_other_count: .quad 0",
    ".globl nmi_count",
    "nmi_count: .quad 0",
    ".globl lapic_base",
    "lapic_base: .quad 0xfee00000",
    ".globl sci_pm1_status",
    "sci_pm1_status: .word 0",
    ".p2align 3",
    ".globl ged_esel_addr",
    "ged_esel_addr: .quad 0",
    ".globl sci_ged_events",
    "sci_ged_events: .long 0",
    ".globl pm1a_evt_port",
    "pm1a_evt_port: .word 0",
    ".popsection",
    ".pushsection .stacks, \"aw\", @nobits",
    ".p2align 4",
    "fatal_stack: .skip {fatal_stack_size}",
    ".popsection",
    sys_count = const sys::COUNT,
    ucode64 = const UCODE64,
    udata = const UDATA,
    fatal_stack_size = const crate::layout::FATAL_STACK_SIZE,
    fatal_trap = sym fatal_trap,
    options(att_syntax)
);

extern "C" {
    static mut idt: [u64; 512];
    static trap_stub_table: [u64; 32];
    static trap_record: [u64; 7];
    static sci_pm1_status: AtomicU16;
    static pm1a_evt_port: AtomicU16;
    static ged_esel_addr: AtomicU64;
    static sci_ged_events: AtomicU32;
    static lapic_base: AtomicU64;
    static nmi_count: AtomicU64;
    fn trap_ud();
    fn irq_nmi();
    fn irq_sci();
    fn irq_other();
    fn irq_spurious();
}

const _: () = assert!(KDATA == 0x10);

/// Writes one 64-bit interrupt gate (type 0xE, present, DPL 0, no IST) for `vector`.
fn set_gate(vector: usize, handler: u64) {
    let lo = (handler & 0xffff)
        | (u64::from(KCODE64) << 16)
        | (0x8e << 40)
        | (((handler >> 16) & 0xffff) << 48);
    let hi = handler >> 32;
    // SAFETY: `idt` is the 4 KiB gate table defined in boot.rs; only its address is taken here.
    let base = core::ptr::addr_of_mut!(idt).cast::<u64>();
    // SAFETY: `vector < 256`, so both slots lie inside the 512-qword table; nothing else writes
    // the IDT concurrently (APs start only after this ran on the BSP).
    unsafe { base.wrapping_add(vector * 2).write_volatile(lo) };
    // SAFETY: as above.
    unsafe { base.wrapping_add(vector * 2 + 1).write_volatile(hi) };
}

/// Fills all 256 IDT gates (runs at CPL3: the IDT is ordinary memory).
pub fn install_idt() {
    // SAFETY: `trap_stub_table` is an immutable table of 32 code addresses (asm above).
    let stubs = unsafe { trap_stub_table };
    for (vector, stub) in stubs.into_iter().enumerate() {
        set_gate(vector, stub);
    }
    set_gate(6, trap_ud as *const () as usize as u64);
    set_gate(2, irq_nmi as *const () as usize as u64);
    for vector in 32..256 {
        set_gate(vector, irq_other as *const () as usize as u64);
    }
    set_gate(
        usize::from(VECTOR_SCI),
        irq_sci as *const () as usize as u64,
    );
    set_gate(
        usize::from(VECTOR_SPURIOUS),
        irq_spurious as *const () as usize as u64,
    );
}

/// NMIs taken since the last call; resets the count.
pub fn take_nmi_count() -> u64 {
    // SAFETY: a static AtomicU64 defined in the asm block above.
    unsafe { &nmi_count }.swap(0, Ordering::SeqCst)
}

/// Tells the SCI handler where PM1_STS lives (0: SCI handler only EOIs).
pub fn set_pm1a_evt_port(port: u16) {
    // SAFETY: a static AtomicU16 defined in the asm block above; shared access is atomic.
    unsafe { &pm1a_evt_port }.store(port, Ordering::SeqCst);
}

/// Tells the SCI handler where a Generic Event Device's event selector is (0: none).
pub fn set_ged_esel_addr(addr: u64) {
    // SAFETY: a static AtomicU64 defined in the asm block above.
    unsafe { &ged_esel_addr }.store(addr, Ordering::SeqCst);
}

/// GED event bits the SCI handler has read since the last call; resets them.
pub fn take_sci_ged_events() -> u32 {
    // SAFETY: a static AtomicU32 defined in the asm block above.
    unsafe { &sci_ged_events }.swap(0, Ordering::SeqCst)
}

/// Tells the interrupt handlers where the local APIC's registers are.
pub fn set_lapic_base(base: u64) {
    // SAFETY: a static AtomicU64 defined in the asm block above.
    unsafe { &lapic_base }.store(base, Ordering::SeqCst);
}

/// PM1_STS bits the SCI handler has seen (and cleared) since the last call; resets them.
pub fn take_sci_pm1_status() -> u16 {
    // SAFETY: a static AtomicU16 defined in the asm block above.
    unsafe { &sci_pm1_status }.swap(0, Ordering::SeqCst)
}

/// Where CPL3 lands after a fatal exception (see the module docs): reports it and stops.
extern "C" fn fatal_trap() -> ! {
    // SAFETY: ring 0 wrote the record before iretq-ing here; nothing writes it afterwards.
    let rec = unsafe { core::ptr::addr_of!(trap_record).read_volatile() };
    crate::serial::force_unlock();
    crate::report!(
        "fatal vector={} error={:#x} rip={:#x} cs={:#x} rsp={:#x} cr2={:#x}",
        rec[0],
        rec[1],
        rec[2],
        rec[3],
        rec[4],
        rec[5]
    );
    crate::power::crash()
}
