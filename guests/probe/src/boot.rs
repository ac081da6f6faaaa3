//! Ring-0 boot path: the PVH entry, long mode, descriptor tables and the drop to CPL3.
//!
//! Everything here runs through KVM's instruction emulator under PVM (~2 M instructions/s), so it
//! is short, straight assembly with no SSE, `int3`, `int $n`, xsave, cmpxchg16b or popcnt
//! (ENVIRONMENT.md lists what kills the guest). What can be static is static: the identity page
//! tables, the GDT, TSS 0 and the I/O permission bitmap are assembled data, not built at run time.
//! Ring 0 only fills the BSP's TSS descriptor base, loads GDT/IDT/TR and `iretq`s to CPL3; the IDT
//! gates are written by CPL3 Rust (`cpl0::install_idt`) before anything can fault.
//!
//! Memory map (identity, 2 MiB pages, all user-accessible: the probe is not a security boundary;
//! the ring split exists because CPL3 runs natively under PVM): 0-3 GiB write-back,
//! 3-4 GiB uncached (LAPIC, IOAPIC, virtio-mmio window at 0xd000_0000, ...).
//!
//! PVH entry state (Xen's `docs/misc/pvh.pandoc`): 32-bit protected mode, paging off, flat
//! segments, `%ebx` = physical address of `hvm_start_info`.

use crate::layout::{
    IO_BITMAP_BYTES, KCODE32, KCODE64, KDATA, KSTACK_SIZE, MAX_CPUS, TSS_SEL0, TSS_STRIDE, UCODE64,
    UDATA, USTACK_SIZE,
};

/// Limit of TSS 0 (its I/O bitmap follows all `MAX_CPUS` TSS slots).
const TSS0_LIMIT: usize = TSS_STRIDE * MAX_CPUS + IO_BITMAP_BYTES - 1;
/// The constant part of TSS 0's descriptor (limit, type 0x89 = present 64-bit TSS); ring 0 ORs in
/// the base address at boot.
const TSS0_DESC_CONST: u64 =
    (TSS0_LIMIT as u64 & 0xffff) | (0x89 << 40) | (((TSS0_LIMIT as u64 >> 16) & 0xf) << 48);

core::arch::global_asm!(
    // ---- Xen ELF note: XEN_ELFNOTE_PHYS32_ENTRY (18) = the 32-bit entry point --------------------
    // The descriptor is 8 bytes (as Linux writes it): QEMU reads a 64-bit value, linux-loader the
    // first 4 bytes.
    ".pushsection .note.Xen, \"a\", @note",
    ".p2align 2",
    ".long 4",
    ".long 8",
    ".long 18",
    ".asciz \"Xen\"",
    ".p2align 2",
    ".quad pvh_start32",
    ".popsection",
    // ---- 32-bit entry ----------------------------------------------------------------------------
    ".pushsection .text.boot, \"ax\"",
    ".code32",
    ".globl pvh_start32",
    "pvh_start32:",
    "    cli",
    "    cld",
    "    movl %ebx, start_info_paddr",
    // First console bytes as early as possible (the boot-latency benchmark measures them):
    // poll LSR.THRE before each byte, no stack needed.
    "    movl $boot_greeting, %esi",
    "1:  movzbl (%esi), %ecx",
    "    testl %ecx, %ecx",
    "    jz 3f",
    "    movw $0x3fd, %dx",
    "2:  inb %dx, %al",
    "    testb $0x20, %al",
    "    jz 2b",
    "    movw $0x3f8, %dx",
    "    movb %cl, %al",
    "    outb %al, %dx",
    "    incl %esi",
    "    jmp 1b",
    "3:  lgdt gdt_ptr",
    "    movl %cr4, %eax",
    "    orl $0x620, %eax", // PAE | OSFXSR | OSXMMEXCPT (CPL3 Rust code uses SSE natively)
    "    movl %eax, %cr4",
    "    movl $pml4, %eax",
    "    movl %eax, %cr3",
    "    movl $0xC0000080, %ecx", // EFER
    "    rdmsr",
    "    orl $0x100, %eax", // LME
    "    wrmsr",
    // An explicit CR0, not read-modify-write: PG | NE | ET | MP | PE; EM, TS, CD, NW clear (an
    // AP leaves INIT with CD/NW set; caches stay off if those bits are carried over).
    "    movl $0x80000033, %eax",
    "    movl %eax, %cr0",
    "    ljmp ${kcode64}, $long_mode_bsp",
    // ---- 64-bit, ring 0 --------------------------------------------------------------------------
    ".code64",
    "long_mode_bsp:",
    "    movl ${kdata}, %eax",
    "    movl %eax, %ds",
    "    movl %eax, %es",
    "    movl %eax, %ss",
    "    xorl %eax, %eax",
    "    movl %eax, %fs",
    "    movl %eax, %gs",
    "    movq $(kstacks + {kstack_size}), %rsp",
    // TSS 0 descriptor: OR the base address of tss_area into the constant part.
    "    movq $tss_area, %rax",
    "    movq %rax, %rdx",
    "    andl $0xffffff, %edx",
    "    shlq $16, %rdx",
    "    shrq $24, %rax",
    "    shlq $56, %rax",
    "    orq %rdx, %rax",
    "    movabsq ${tss0_desc}, %rdx",
    "    orq %rdx, %rax",
    "    movq %rax, gdt + {tss_sel0}",
    "    movw ${tss_sel0}, %ax",
    "    ltr %ax",
    "    lidt idt_ptr",
    "    pushq ${udata}",
    "    pushq $(ustacks + {ustack_size})",
    "    pushq $2", // IF=0, IOPL=0: CPL3 port access goes through the TSS I/O bitmap
    "    pushq ${ucode64}",
    "    pushq $cpl3_bsp_entry",
    "    iretq",
    // ---- CPL3 from here on (native speed) --------------------------------------------------------
    "cpl3_bsp_entry:",
    "    movq $__bss_start, %rdi",
    "    movq $__bss_end, %rcx",
    "    subq %rdi, %rcx",
    "    xorl %eax, %eax",
    "    rep stosb",
    "    movl start_info_paddr, %edi",
    "    call {probe_main}",
    "    ud2",
    // mem* functions the compiler may call: rep-string versions, CPL3 only.
    // Referenced by libcore's unwind tables only; never called (panic = "abort").
    ".globl rust_eh_personality",
    "rust_eh_personality:",
    "    ud2",
    ".globl memcpy",
    "memcpy:",
    "    movq %rdi, %rax",
    "    movq %rdx, %rcx",
    "    rep movsb",
    "    ret",
    ".globl memset",
    "memset:",
    "    movq %rdi, %r9",
    "    movl %esi, %eax",
    "    movq %rdx, %rcx",
    "    rep stosb",
    "    movq %r9, %rax",
    "    ret",
    ".globl memmove",
    "memmove:",
    "    movq %rdi, %rax",
    "    movq %rdx, %rcx",
    "    cmpq %rsi, %rdi",
    "    jbe 1f",
    "    leaq -1(%rsi,%rdx), %rsi",
    "    leaq -1(%rdi,%rdx), %rdi",
    "    std",
    "    rep movsb",
    "    cld",
    "    ret",
    "1:  rep movsb",
    "    ret",
    ".globl memcmp",
    ".globl bcmp",
    "memcmp:",
    "bcmp:",
    "    xorl %eax, %eax",
    "    testq %rdx, %rdx",
    "    jz 2f",
    "1:  movzbl (%rdi), %eax",
    "    movzbl (%rsi), %ecx",
    "    subl %ecx, %eax",
    "    jnz 2f",
    "    incq %rdi",
    "    incq %rsi",
    "    decq %rdx",
    "    jnz 1b",
    "2:  ret",
    ".popsection",
    // ---- static data -----------------------------------------------------------------------------
    ".pushsection .rodata",
    "boot_greeting: .asciz \"PROBE boot\\r\\n\"",
    ".popsection",
    ".pushsection .data.boot, \"aw\"",
    ".p2align 12",
    // Identity map of 0-4 GiB with 2 MiB pages: P|RW|US|PS, the top GiB also PCD|PWT.
    ".globl pml4",
    "pml4:",
    "    .quad pdpt + 7",
    "    .fill 511, 8, 0",
    "pdpt:",
    "    .quad pd0 + 7",
    "    .quad pd1 + 7",
    "    .quad pd2 + 7",
    "    .quad pd3 + 7",
    "    .fill 508, 8, 0",
    "pd0:",
    ".set i, 0",
    ".rept 512",
    "    .quad (i << 21) | 0x87",
    ".set i, i + 1",
    ".endr",
    "pd1:",
    ".rept 512",
    "    .quad (i << 21) | 0x87",
    ".set i, i + 1",
    ".endr",
    "pd2:",
    ".rept 512",
    "    .quad (i << 21) | 0x87",
    ".set i, i + 1",
    ".endr",
    "pd3:",
    ".rept 512",
    "    .quad (i << 21) | 0x9f",
    ".set i, i + 1",
    ".endr",
    // IDT: 256 empty gates, filled by CPL3 Rust before anything can fault.
    ".globl idt",
    "idt:",
    "    .fill 256 * 16, 1, 0",
    // TSS 0 .. MAX_CPUS-1, then the shared I/O permission bitmap (all ports denied until CPL3
    // allows the ones it uses: io::allow_port).
    ".globl tss_area",
    "tss_area:",
    "    .long 0",
    "    .quad kstacks + {kstack_size}", // RSP0 of CPU 0
    "    .fill 0x66 - 12, 1, 0",
    "    .word {tss_stride} * {max_cpus}", // I/O map base of TSS 0
    "    .fill {tss_stride} - 0x68, 1, 0",
    "    .fill {tss_stride} * ({max_cpus} - 1), 1, 0",
    ".globl io_bitmap",
    "io_bitmap:",
    "    .fill {io_bitmap_bytes}, 1, 0xff",
    ".p2align 3",
    // GDT: null, kernel code64, kernel data, user data, user code64, kernel code32, TSS slots.
    ".globl gdt",
    "gdt:",
    "    .quad 0",
    "    .quad 0x00af9b000000ffff",
    "    .quad 0x00cf93000000ffff",
    "    .quad 0x00cff3000000ffff",
    "    .quad 0x00affb000000ffff",
    "    .quad 0x00cf9b000000ffff",
    "    .fill 2 * {max_cpus}, 8, 0",
    "gdt_end:",
    ".p2align 3",
    ".globl gdt_ptr",
    "gdt_ptr:",
    "    .word gdt_end - gdt - 1",
    "    .quad gdt",
    ".p2align 3",
    ".globl idt_ptr",
    "idt_ptr:",
    "    .word 256 * 16 - 1",
    "    .quad idt",
    ".p2align 3",
    ".globl start_info_paddr",
    "start_info_paddr: .quad 0",
    ".popsection",
    // ---- stacks (not loaded, not zeroed) ---------------------------------------------------------
    ".pushsection .stacks, \"aw\", @nobits",
    ".p2align 12",
    ".globl kstacks",
    "kstacks: .skip {kstack_size} * {max_cpus}",
    ".globl ustacks",
    "ustacks: .skip {ustack_size} * {max_cpus}",
    ".popsection",
    kcode64 = const KCODE64,
    kdata = const KDATA,
    udata = const UDATA,
    ucode64 = const UCODE64,
    tss_sel0 = const TSS_SEL0,
    tss0_desc = const TSS0_DESC_CONST,
    tss_stride = const TSS_STRIDE,
    max_cpus = const MAX_CPUS,
    io_bitmap_bytes = const IO_BITMAP_BYTES,
    kstack_size = const KSTACK_SIZE,
    ustack_size = const USTACK_SIZE,
    probe_main = sym crate::probe_main,
    options(att_syntax)
);

/// `KCODE32` is only used by the AP trampoline (smp.rs); keep the GDT layout documented here.
const _: () = assert!(KCODE32 == 0x28 && TSS_SEL0 == 0x30);
