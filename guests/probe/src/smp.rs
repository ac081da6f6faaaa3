//! Application-processor bring-up: INIT-SIPI-SIPI and the real-mode trampoline.
//!
//! The BSP (at CPL3) prepares a TSS + GDT descriptor and stacks for AP `i`, copies the trampoline
//! to `TRAMPOLINE_BASE` (below 1 MiB, SIPI vector = address >> 12), fills its parameter block and
//! sends INIT, SIPI, SIPI through its local APIC. The AP runs real mode -> 32-bit protected mode
//! -> long mode on the shared identity page tables, jumps to `ap_entry64` in the image, loads its
//! TSS and the IDT and `iretq`s to [`ap_main`] at CPL3 on its own stack. APs start one at a time,
//! so one parameter block suffices. Mirrors `smp-acpi/p1_sipi.c`, which shows this works on PVM.

use crate::apic::LocalApic;
use crate::layout::{
    IO_BITMAP_BYTES, KCODE32, KCODE64, KDATA, KSTACK_SIZE, MAX_CPUS, TRAMPOLINE_BASE, TSS_SEL0,
    TSS_STRIDE, UCODE64, UDATA, USTACK_SIZE,
};
use core::sync::atomic::{AtomicUsize, Ordering};

core::arch::global_asm!(
    // ---- the trampoline: data in the image, copied to TRAMPOLINE_BASE before use ----------------
    ".pushsection .rodata.trampoline, \"a\"",
    ".p2align 12",
    ".globl ap_trampoline",
    "ap_trampoline:",
    ".code16",
    "    cli",
    "    cld",
    "    xorw %ax, %ax",
    "    movw %ax, %ds",
    "    lgdtl ({tr} + (tr_gdt_ptr - ap_trampoline))",
    "    movl %cr0, %eax",
    "    orl $1, %eax",
    "    movl %eax, %cr0",
    "    ljmpl ${kcode32}, $({tr} + (tr_pm32 - ap_trampoline))",
    ".code32",
    "tr_pm32:",
    "    movl ${kdata}, %eax",
    "    movw %ax, %ds",
    "    movw %ax, %es",
    "    movw %ax, %ss",
    "    movl %cr4, %eax",
    "    orl $0x620, %eax",
    "    movl %eax, %cr4",
    "    movl ({tr} + (tr_cr3 - ap_trampoline)), %eax",
    "    movl %eax, %cr3",
    "    movl $0xC0000080, %ecx",
    "    rdmsr",
    "    orl $0x100, %eax",
    "    wrmsr",
    "    movl $0x80000033, %eax", // PG | NE | ET | MP | PE; CD/NW from INIT cleared
    "    movl %eax, %cr0",
    "    ljmp ${kcode64}, $({tr} + (tr_lm64 - ap_trampoline))",
    ".code64",
    "tr_lm64:",
    "    movq ({tr} + (tr_entry64 - ap_trampoline)), %rax",
    "    jmpq *%rax",
    ".p2align 3",
    "tr_gdt_ptr:",
    "    .word {gdt_limit}",
    "    .long gdt",
    ".p2align 3",
    "tr_cr3: .quad pml4",
    "tr_entry64: .quad ap_entry64",
    ".globl ap_params",
    "ap_params:", // filled by the BSP per AP: cpu index, kernel stack, user stack, TSS selector
    "    .quad 0, 0, 0, 0",
    ".globl ap_trampoline_end",
    "ap_trampoline_end:",
    ".popsection",
    // ---- 64-bit ring-0 continuation in the image --------------------------------------------------
    ".pushsection .text, \"ax\"",
    ".code64",
    "ap_entry64:",
    "    movl ${kdata}, %eax",
    "    movl %eax, %ds",
    "    movl %eax, %es",
    "    movl %eax, %ss",
    "    xorl %eax, %eax",
    "    movl %eax, %fs",
    "    movl %eax, %gs",
    "    movq ({tr} + (ap_params - ap_trampoline) + 8), %rsp",
    "    movq ({tr} + (ap_params - ap_trampoline) + 24), %rax",
    "    ltr %ax",
    "    lidt idt_ptr",
    "    movq ({tr} + (ap_params - ap_trampoline)), %rdi",
    "    pushq ${udata}",
    "    pushq ({tr} + (ap_params - ap_trampoline) + 16)",
    "    pushq $2",
    "    pushq ${ucode64}",
    "    pushq $ap_cpl3_entry",
    "    iretq",
    "ap_cpl3_entry:",
    "    call {ap_main}",
    "    ud2",
    ".popsection",
    tr = const TRAMPOLINE_BASE,
    gdt_limit = const crate::layout::GDT_SLOTS * 8 - 1,
    kcode32 = const KCODE32,
    kcode64 = const KCODE64,
    kdata = const KDATA,
    udata = const UDATA,
    ucode64 = const UCODE64,
    ap_main = sym ap_main,
    options(att_syntax)
);

extern "C" {
    static ap_trampoline: u8;
    static ap_trampoline_end: u8;
    static ap_params: [u64; 4];
    static mut gdt: [u64; crate::layout::GDT_SLOTS];
    static mut tss_area: [u8; TSS_STRIDE * MAX_CPUS];
    static kstacks: u8;
    static ustacks: u8;
}

/// APs that reached CPL3 (each increments it once, after its job's `announce`).
static APS_UP: AtomicUsize = AtomicUsize::new(0);

/// What each AP does at CPL3: `announce(apic_id)` before the BSP may start the next AP, then
/// `work(apic_id)`; then it halts.
#[derive(Clone, Copy)]
pub struct ApJob {
    /// Runs first; the BSP waits for it (e.g. print "cpu N up").
    pub announce: fn(u32),
    /// Runs after the AP was counted as up (e.g. wait for a start signal, then compute).
    pub work: fn(u32),
}

/// The job APs run; set by the BSP before the first SIPI.
static AP_JOB: crate::sync::SpinLock<Option<ApJob>> = crate::sync::SpinLock::new(None);
/// Local APIC base, for APs reading their own id.
static LAPIC_BASE: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0xfee0_0000);

/// Why an AP could not be started.
#[derive(Debug, Clone, Copy)]
pub enum SmpError {
    /// More CPUs than the probe has TSS/stack slots for.
    TooManyCpus,
    /// The AP with this APIC id did not reach CPL3 in time.
    Timeout(u32),
}

fn addr_of_sym(sym: *const u8) -> usize {
    sym as usize
}

/// Fills TSS `cpu` (RSP0, I/O map base) and its GDT descriptor; returns the selector.
fn prepare_tss(cpu: usize) -> u16 {
    let iomap_offset = TSS_STRIDE * (MAX_CPUS - cpu);
    let limit = (iomap_offset + IO_BITMAP_BYTES - 1) as u64;
    let tss_base = core::ptr::addr_of_mut!(tss_area).cast::<u8>();
    let kstack_top = kstack_top(cpu);
    // `cpu < MAX_CPUS`, so TSS `cpu` lies inside tss_area.
    let tss = tss_base.wrapping_add(cpu * TSS_STRIDE);
    // SAFETY: offset 4..12 (RSP0) is inside this CPU's 0x80-byte TSS slot.
    unsafe {
        tss.wrapping_add(4)
            .cast::<u64>()
            .write_unaligned(kstack_top)
    };
    // SAFETY: offset 0x66..0x68 (I/O map base) is inside the slot.
    unsafe {
        tss.wrapping_add(0x66)
            .cast::<u16>()
            .write_unaligned(iomap_offset as u16)
    };
    let base = tss as u64;
    let low = (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (0x89 << 40)
        | (((limit >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    let selector = TSS_SEL0 as usize + 16 * cpu;
    let gdt_base = core::ptr::addr_of_mut!(gdt).cast::<u64>();
    // SAFETY: selector / 8 + 1 < GDT_SLOTS for cpu < MAX_CPUS; no CPU has loaded this descriptor.
    unsafe { gdt_base.wrapping_add(selector / 8).write_volatile(low) };
    // SAFETY: as above.
    unsafe {
        gdt_base
            .wrapping_add(selector / 8 + 1)
            .write_volatile(base >> 32)
    };
    selector as u16
}

/// Copies the trampoline below 1 MiB and returns a pointer to its parameter block there.
fn install_trampoline() -> *mut u64 {
    let start = core::ptr::addr_of!(ap_trampoline);
    let end = core::ptr::addr_of!(ap_trampoline_end);
    let params = core::ptr::addr_of!(ap_params).cast::<u8>();
    let len = addr_of_sym(end) - addr_of_sym(start);
    // SAFETY: the trampoline page at TRAMPOLINE_BASE is RAM the probe does not otherwise use
    // (checked against the e820 map by the caller); source and destination do not overlap.
    unsafe { core::ptr::copy_nonoverlapping(start, TRAMPOLINE_BASE as *mut u8, len) };
    (TRAMPOLINE_BASE + (addr_of_sym(params) - addr_of_sym(start))) as *mut u64
}

/// Starts the AP with `apic_id` as CPU `cpu` and waits until it reports from CPL3.
fn start_ap(
    lapic: &LocalApic,
    params: *mut u64,
    cpu: usize,
    apic_id: u32,
    wait: &dyn Fn(u64),
) -> Result<(), SmpError> {
    if cpu >= MAX_CPUS {
        return Err(SmpError::TooManyCpus);
    }
    let selector = prepare_tss(cpu);
    let ustack_base = addr_of_sym(core::ptr::addr_of!(ustacks));
    let values = [
        cpu as u64,
        kstack_top(cpu),
        (ustack_base + (cpu + 1) * USTACK_SIZE) as u64,
        u64::from(selector),
    ];
    for (i, value) in values.into_iter().enumerate() {
        // SAFETY: `params` points at the 4-qword block inside the copied trampoline; no AP runs.
        unsafe { params.wrapping_add(i).write_volatile(value) };
    }
    let before = APS_UP.load(Ordering::SeqCst);
    lapic.send_init(apic_id);
    wait(10_000);
    let vector = (TRAMPOLINE_BASE >> 12) as u8;
    for _ in 0..2 {
        lapic.send_startup(apic_id, vector);
        wait(200);
        if APS_UP.load(Ordering::SeqCst) > before {
            return Ok(());
        }
    }
    // Normally ~0.1 ms (KVM) to a few ms (PVM emulates the AP's real-mode and ring-0 start);
    // allow 10 s for a host too busy to schedule the AP's thread.
    for _ in 0..10_000 {
        if APS_UP.load(Ordering::SeqCst) > before {
            return Ok(());
        }
        wait(1000);
    }
    Err(SmpError::Timeout(apic_id))
}

/// Starts (or starts again, after it halted for good) the AP with `apic_id` as CPU slot `cpu`
/// (its TSS and stacks) running `job`: ACPI CPU hotplug. The trampoline page must be RAM (see
/// [`trampoline_is_ram`]).
///
/// # Errors
/// [`SmpError`] as for boot-time bring-up.
pub fn start_one(
    lapic_base: u64,
    cpu: usize,
    apic_id: u32,
    wait: &dyn Fn(u64),
    job: ApJob,
) -> Result<(), SmpError> {
    AP_JOB.with(|slot| *slot = Some(job));
    LAPIC_BASE.store(lapic_base, Ordering::SeqCst);
    let lapic = LocalApic::new(lapic_base);
    lapic.enable();
    let params = install_trampoline();
    start_ap(&lapic, params, cpu, apic_id, wait)
}

/// Whether the AP trampoline page is RAM in the boot memory map.
pub fn trampoline_is_ram(machine: &crate::Machine) -> bool {
    let trampoline = TRAMPOLINE_BASE as u64;
    machine.boot.as_ref().is_some_and(|b| {
        b.memmap.regions().iter().any(|r| {
            r.kind == crate::memmap::E820_RAM
                && r.addr <= trampoline
                && trampoline + 0x1000 <= r.addr.saturating_add(r.size)
        })
    })
}

/// Top of CPU `cpu`'s ring-0 stack (TSS.RSP0).
fn kstack_top(cpu: usize) -> u64 {
    (addr_of_sym(core::ptr::addr_of!(kstacks)) + (cpu + 1) * KSTACK_SIZE) as u64
}

/// Brings up every AP in `apic_ids` (the BSP's own id is skipped); returns how many came up.
/// `wait(us)` delays for about `us` microseconds.
pub fn start_aps(
    lapic_base: u64,
    apic_ids: &[u32],
    wait: &dyn Fn(u64),
    job: ApJob,
) -> (usize, Option<SmpError>) {
    AP_JOB.with(|slot| *slot = Some(job));
    LAPIC_BASE.store(lapic_base, Ordering::SeqCst);
    let lapic = LocalApic::new(lapic_base);
    lapic.enable();
    let own = lapic.id();
    let params = install_trampoline();
    let mut cpu = 0;
    let mut error = None;
    for &apic_id in apic_ids.iter().filter(|&&id| id != own) {
        cpu += 1;
        if let Err(e) = start_ap(&lapic, params, cpu, apic_id, wait) {
            error = Some(e);
            break;
        }
    }
    (APS_UP.load(Ordering::SeqCst), error)
}

/// CPL3 entry of an application processor (from `ap_entry64`).
extern "C" fn ap_main(_cpu: u64) -> ! {
    let apic_id = LocalApic::new(LAPIC_BASE.load(Ordering::SeqCst)).id();
    let job = AP_JOB.with(|slot| *slot);
    if let Some(job) = job {
        (job.announce)(apic_id);
    }
    APS_UP.fetch_add(1, Ordering::SeqCst);
    if let Some(job) = job {
        (job.work)(apic_id);
    }
    crate::syscall::halt_forever()
}

/// Brings up every AP the MADT lists with `job`, reporting problems as `PROBE error <scenario>
/// reason=...` lines. Returns the number of vCPUs running (BSP included), or `None` if SMP
/// bring-up is impossible here.
pub fn bring_up(machine: &crate::Machine, scenario: &str, job: ApJob) -> Option<usize> {
    let Some(madt) = machine.acpi.as_ref().and_then(|a| a.madt) else {
        crate::report!("error {scenario} reason=no-madt");
        return None;
    };
    if !trampoline_is_ram(machine) {
        crate::report!("error {scenario} reason=trampoline-page-not-ram");
        return None;
    }
    let wait = |us: u64| crate::clock::delay_us(machine.acpi.as_ref(), us);
    let (aps, error) = start_aps(madt.lapic_addr, madt.apic_ids(), &wait, job);
    match error {
        Some(SmpError::Timeout(apic_id)) => {
            crate::report!("error {scenario} reason=timeout apic_id={apic_id}")
        }
        Some(SmpError::TooManyCpus) => crate::report!("error {scenario} reason=too-many-cpus"),
        None => {}
    }
    Some(aps + 1)
}
