//! One vCPU: CPUID, boot MSRs, LAPIC LINT pins and, for vCPU 0, the entry register state of the boot
//! protocol. Application processors stay in the reset state KVM gives them (wait-for-SIPI under the
//! in-kernel LAPIC); the guest starts them with INIT-SIPI-SIPI.
//!
//! Kicks ([`KickableVcpu`]): the kick signal's handler sets `immediate_exit` in the running thread's
//! `kvm_run` (as Firecracker does), so a kick that lands just before KVM_RUN still makes it return
//! at once instead of being lost while the guest sleeps in `hlt`.

use std::cell::Cell;

use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, kvm_run, kvm_segment, CpuId, Msrs};
use kvm_ioctls::{VcpuFd, VmFd};

thread_local! {
    /// The `kvm_run` of the vCPU this thread runs (null on other threads).
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

/// Signal used to kick a vCPU thread out of KVM_RUN.
pub fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let run = KVM_RUN.with(Cell::get);
    if !run.is_null() {
        // SAFETY: `run` is this thread's vCPU `kvm_run` mapping, registered by `KickableVcpu::new`
        // on this thread and cleared before the vCPU fd (which owns the mapping) is dropped; a
        // one-byte volatile store is what KVM expects of `immediate_exit`.
        let flag = unsafe { std::ptr::addr_of_mut!((*run).immediate_exit) };
        // SAFETY: `flag` points at the `immediate_exit` byte of that live mapping (above).
        unsafe { flag.write_volatile(1) };
    }
}

/// Installs the kick handler so the signal interrupts KVM_RUN instead of killing us.
///
/// # Errors
/// sigaction failed.
pub fn install_kick_handler() -> Result<(), vmm_sys_util::errno::Error> {
    vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick)
}

/// A vCPU fd owned by the thread that runs it, reachable by the kick signal.
pub struct KickableVcpu {
    fd: VcpuFd,
}

impl KickableVcpu {
    /// Takes `fd` on the calling thread (which must be the one that runs it).
    pub fn new(mut fd: VcpuFd) -> Self {
        let run: *mut kvm_run = fd.get_kvm_run();
        KVM_RUN.with(|c| c.set(run));
        Self { fd }
    }

    /// The vCPU fd.
    pub fn fd(&mut self) -> &mut VcpuFd {
        &mut self.fd
    }

    /// Clears `immediate_exit` after a kick made KVM_RUN return.
    pub fn clear_kick(&mut self) {
        self.fd.set_kvm_immediate_exit(0);
    }
}

impl Drop for KickableVcpu {
    fn drop(&mut self) {
        KVM_RUN.with(|c| c.set(std::ptr::null_mut()));
    }
}

use crate::boot::linux::{BOOT_GDT, PML4_ADDR};
use crate::boot::pvh::PVH_GDT;
use crate::boot::{EntryPoint, BOOT_GDT_ADDR, BOOT_IDT_ADDR, BOOT_STACK_TOP};

/// vCPU setup failed.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// A KVM ioctl failed.
    #[error("vCPU {id}: {op} failed")]
    Ioctl {
        /// vCPU index.
        id: u32,
        /// The ioctl.
        op: &'static str,
        /// Cause.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// Building the MSR list failed.
    #[error("vCPU {id}: cannot build the MSR list")]
    Msrs {
        /// vCPU index.
        id: u32,
    },
}

// MSR numbers (Intel SDM vol. 4).
const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
const MISC_ENABLE_FAST_STRING: u64 = 1;
const MTRR_ENABLE_WB: u64 = (1 << 11) | 6;

// LAPIC register offsets and delivery modes (Intel SDM vol. 3 §11.5.1).
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

const X86_CR0_PE: u64 = 1;
const X86_CR0_PG: u64 = 1 << 31;
const X86_CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

fn ioctl_err(id: u32, op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VcpuError {
    move |source| VcpuError::Ioctl { id, op, source }
}

/// Creates vCPU `id` of `count` and configures it; vCPU 0 also gets the entry state for `entry`.
///
/// # Errors
/// [`VcpuError`] naming the ioctl.
pub fn create(
    vm: &VmFd,
    supported: &CpuId,
    id: u32,
    count: u32,
    entry: EntryPoint,
) -> Result<VcpuFd, VcpuError> {
    let fd = vm
        .create_vcpu(u64::from(id))
        .map_err(ioctl_err(id, "KVM_CREATE_VCPU"))?;
    let mut cpuid = supported.clone();
    super::cpuid::normalize(&mut cpuid, id, count);
    fd.set_cpuid2(&cpuid)
        .map_err(ioctl_err(id, "KVM_SET_CPUID2"))?;
    set_msrs(&fd, id)?;
    set_lint(&fd, id)?;
    if id == 0 {
        set_entry_state(&fd, id, entry)?;
    }
    Ok(fd)
}

fn set_msrs(fd: &VcpuFd, id: u32) -> Result<(), VcpuError> {
    let entry = |index, data| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    };
    let list = [
        entry(MSR_IA32_SYSENTER_CS, 0),
        entry(MSR_IA32_SYSENTER_ESP, 0),
        entry(MSR_IA32_SYSENTER_EIP, 0),
        entry(MSR_STAR, 0),
        entry(MSR_CSTAR, 0),
        entry(MSR_KERNEL_GS_BASE, 0),
        entry(MSR_SYSCALL_MASK, 0),
        entry(MSR_LSTAR, 0),
        entry(MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        entry(MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WB),
    ];
    let msrs = Msrs::from_entries(&list).map_err(|_fam| VcpuError::Msrs { id })?;
    let set = fd.set_msrs(&msrs).map_err(ioctl_err(id, "KVM_SET_MSRS"))?;
    if set != list.len() {
        // KVM stops at the first MSR it refuses; the rest are boot niceties, not requirements.
        tracing::debug!(
            vcpu = id,
            set,
            wanted = list.len(),
            "KVM accepted only some boot MSRs"
        );
    }
    Ok(())
}

fn set_lint(fd: &VcpuFd, id: u32) -> Result<(), VcpuError> {
    let mut lapic = fd.get_lapic().map_err(ioctl_err(id, "KVM_GET_LAPIC"))?;
    let mut rw = |off: usize, mode: u32| {
        let mut b = [0u8; 4];
        for (i, x) in b.iter_mut().enumerate() {
            *x = lapic.regs.get(off + i).map_or(0, |v| v.to_ne_bytes()[0]);
        }
        let v = (u32::from_le_bytes(b) & !0x700) | (mode << 8);
        for (i, x) in v.to_le_bytes().iter().enumerate() {
            if let Some(r) = lapic.regs.get_mut(off + i) {
                *r = i8::from_ne_bytes([*x]);
            }
        }
    };
    rw(APIC_LVT0, APIC_MODE_EXTINT);
    rw(APIC_LVT1, APIC_MODE_NMI);
    fd.set_lapic(&lapic).map_err(ioctl_err(id, "KVM_SET_LAPIC"))
}

/// A flat segment from a GDT descriptor (the register form of what the GDT says).
fn segment(selector: u16, desc: u64) -> kvm_segment {
    let base = ((desc >> 16) & 0xff_ffff) | (((desc >> 56) & 0xff) << 24);
    let mut limit = u32::try_from((desc & 0xffff) | ((desc >> 32) & 0xf_0000)).unwrap_or(0);
    let g = (desc >> 55) & 1;
    if g == 1 {
        limit = (limit << 12) | 0xfff;
    }
    let bit = |n: u32| u8::try_from((desc >> n) & 1).unwrap_or(0);
    kvm_segment {
        base,
        limit,
        selector,
        type_: u8::try_from((desc >> 40) & 0xf).unwrap_or(0),
        present: bit(47),
        dpl: u8::try_from((desc >> 45) & 0x3).unwrap_or(0),
        db: bit(54),
        s: bit(44),
        l: bit(53),
        g: bit(55),
        avl: bit(52),
        unusable: u8::from(bit(47) == 0),
        padding: 0,
    }
}

fn set_entry_state(fd: &VcpuFd, id: u32, entry: EntryPoint) -> Result<(), VcpuError> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    fd.set_fpu(&fpu).map_err(ioctl_err(id, "KVM_SET_FPU"))?;
    let mut sregs = fd.get_sregs().map_err(ioctl_err(id, "KVM_GET_SREGS"))?;
    let mut regs = kvm_regs {
        rflags: 0x2,
        ..Default::default()
    };
    let (gdt, code, data, tss): (&[u64], usize, usize, usize) = match entry {
        EntryPoint::Pvh { entry, start_info } => {
            // PVH ABI: 32-bit protected mode, paging off, flat segments, ebx = start_info.
            regs.rip = entry;
            regs.rbx = start_info;
            sregs.cr0 = (sregs.cr0 | X86_CR0_PE) & !X86_CR0_PG;
            sregs.cr4 = 0;
            sregs.efer = 0;
            (&PVH_GDT, 1, 2, 3)
        }
        EntryPoint::Linux64 { entry, zero_page } => {
            // boot.rst 64-bit protocol: long mode, identity-mapped, rsi = boot_params.
            regs.rip = entry;
            regs.rsi = zero_page;
            regs.rsp = BOOT_STACK_TOP;
            regs.rbp = BOOT_STACK_TOP;
            sregs.cr3 = PML4_ADDR;
            sregs.cr4 |= X86_CR4_PAE;
            sregs.cr0 |= X86_CR0_PE | X86_CR0_PG;
            sregs.efer |= EFER_LME | EFER_LMA;
            (&BOOT_GDT, 2, 3, 4)
        }
    };
    let sel = |i: usize| u16::try_from(i * 8).unwrap_or(0);
    let desc = |i: usize| gdt.get(i).copied().unwrap_or(0);
    sregs.cs = segment(sel(code), desc(code));
    let ds = segment(sel(data), desc(data));
    sregs.ds = ds;
    sregs.es = ds;
    sregs.fs = ds;
    sregs.gs = ds;
    sregs.ss = ds;
    sregs.tr = segment(sel(tss), desc(tss));
    sregs.gdt.base = BOOT_GDT_ADDR;
    sregs.gdt.limit = u16::try_from(gdt.len() * 8 - 1).unwrap_or(0);
    sregs.idt.base = BOOT_IDT_ADDR;
    sregs.idt.limit = 7;
    fd.set_sregs(&sregs)
        .map_err(ioctl_err(id, "KVM_SET_SREGS"))?;
    fd.set_regs(&regs).map_err(ioctl_err(id, "KVM_SET_REGS"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_from_descriptors() {
        let cs = segment(0x10, BOOT_GDT[2]);
        assert_eq!(
            (cs.l, cs.db, cs.present, cs.type_, cs.s, cs.g),
            (1, 0, 1, 0xb, 1, 1)
        );
        assert_eq!(cs.limit, 0xffff_ffff);
        let pvh_cs = segment(0x08, PVH_GDT[1]);
        assert_eq!((pvh_cs.l, pvh_cs.db, pvh_cs.base), (0, 1, 0));
        assert_eq!(pvh_cs.limit, 0xffff_ffff);
        let tr = segment(0x18, PVH_GDT[3]);
        assert_eq!((tr.type_, tr.s, tr.limit), (0xb, 0, 0x67));
        assert_eq!(segment(0, 0).unusable, 1);
    }
}
