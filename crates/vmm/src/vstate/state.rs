//! KVM's side of a snapshot: every vCPU's architectural state and the VM-wide in-kernel devices
//! (PIC ×2, IOAPIC, PIT2, KVM clock), in the serialisable forms kvm-bindings' `serde` feature gives.
//!
//! Measured on the PVM development host (`pvm-experiments/e13_dirty_move`): every ioctl used here
//! reads and writes back, 40 of 40 MSRs of KVM_GET_MSR_INDEX_LIST included, and a vCPU stopped mid-loop
//! continues correctly in a new VM. Restore order follows Firecracker's: MP state, registers, special
//! registers, XSAVE (which includes the FPU; KVM_GET_FPU's form has no serde support and is not needed), XCRs, debug registers, LAPIC, MSRs, events.

use kvm_bindings::{
    kvm_clock_data, kvm_debugregs, kvm_irqchip, kvm_lapic_state, kvm_mp_state, kvm_msr_entry,
    kvm_pit_state2, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave, Msrs,
    KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::{VcpuFd, VmFd};
use serde::{Deserialize, Serialize};

/// A state ioctl failed.
#[derive(Debug, thiserror::Error)]
#[error("{op} failed{}", vcpu.map(|v| format!(" on vCPU {v}")).unwrap_or_default())]
pub struct StateError {
    /// The vCPU (None: VM-wide).
    pub vcpu: Option<u32>,
    /// The ioctl.
    pub op: &'static str,
    /// Cause.
    #[source]
    pub source: kvm_ioctls::Error,
}

/// One vCPU's state.
#[derive(Serialize, Deserialize)]
pub struct VcpuState {
    /// vCPU index.
    pub id: u32,
    /// KVM_GET_MP_STATE.
    pub mp_state: kvm_mp_state,
    /// General-purpose registers.
    pub regs: kvm_regs,
    /// Segment and control registers.
    pub sregs: kvm_sregs,
    /// XSAVE area (x87, SSE and the extended states).
    pub xsave: kvm_xsave,
    /// Extended control registers.
    pub xcrs: Option<kvm_xcrs>,
    /// Debug registers.
    pub debugregs: kvm_debugregs,
    /// Local APIC registers.
    pub lapic: kvm_lapic_state,
    /// MSRs (index, value) that KVM could read.
    pub msrs: Vec<(u32, u64)>,
    /// Pending exceptions, interrupts, NMIs.
    pub events: kvm_vcpu_events,
}

/// The VM-wide in-kernel devices.
#[derive(Serialize, Deserialize)]
pub struct VmState {
    /// PIC master, PIC slave, IOAPIC.
    pub irqchips: Vec<kvm_irqchip>,
    /// The i8254.
    pub pit: kvm_pit_state2,
    /// The KVM clock.
    pub clock: kvm_clock_data,
}

fn err(vcpu: Option<u32>, op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> StateError {
    move |source| StateError { vcpu, op, source }
}

/// Reads the MSRs of `list` that KVM lets us read (KVM stops at the first refusal: the rest are
/// retried one by one, so one odd MSR does not lose the others).
fn read_msrs(fd: &VcpuFd, id: u32, list: &[u32]) -> Result<Vec<(u32, u64)>, StateError> {
    let entries: Vec<kvm_msr_entry> = list
        .iter()
        .map(|&index| kvm_msr_entry {
            index,
            ..Default::default()
        })
        .collect();
    let mut out = Vec::with_capacity(list.len());
    let mut rest = entries.as_slice();
    while !rest.is_empty() {
        let mut msrs = Msrs::from_entries(rest).map_err(|_fam| StateError {
            vcpu: Some(id),
            op: "building the MSR list",
            source: kvm_ioctls::Error::new(libc::E2BIG),
        })?;
        let n = fd
            .get_msrs(&mut msrs)
            .map_err(err(Some(id), "KVM_GET_MSRS"))?;
        out.extend(msrs.as_slice().iter().take(n).map(|e| (e.index, e.data)));
        // Skip the one KVM refused.
        rest = rest.get(n + 1..).unwrap_or_default();
    }
    Ok(out)
}

/// Reads vCPU `id`'s whole state (the vCPU must be outside KVM_RUN: its own thread calls this).
///
/// # Errors
/// [`StateError`] naming the ioctl.
pub fn save_vcpu(fd: &VcpuFd, id: u32, msr_list: &[u32]) -> Result<VcpuState, StateError> {
    let s = Some(id);
    Ok(VcpuState {
        id,
        mp_state: fd.get_mp_state().map_err(err(s, "KVM_GET_MP_STATE"))?,
        regs: fd.get_regs().map_err(err(s, "KVM_GET_REGS"))?,
        sregs: fd.get_sregs().map_err(err(s, "KVM_GET_SREGS"))?,
        xsave: fd.get_xsave().map_err(err(s, "KVM_GET_XSAVE"))?,
        xcrs: fd.get_xcrs().ok(),
        debugregs: fd.get_debug_regs().map_err(err(s, "KVM_GET_DEBUGREGS"))?,
        lapic: fd.get_lapic().map_err(err(s, "KVM_GET_LAPIC"))?,
        msrs: read_msrs(fd, id, msr_list)?,
        events: fd
            .get_vcpu_events()
            .map_err(err(s, "KVM_GET_VCPU_EVENTS"))?,
    })
}

/// Writes `st` into a freshly created (CPUID set, not yet run) vCPU.
///
/// # Errors
/// [`StateError`] naming the ioctl.
pub fn restore_vcpu(fd: &VcpuFd, st: &VcpuState) -> Result<(), StateError> {
    let s = Some(st.id);
    fd.set_mp_state(st.mp_state)
        .map_err(err(s, "KVM_SET_MP_STATE"))?;
    fd.set_regs(&st.regs).map_err(err(s, "KVM_SET_REGS"))?;
    fd.set_sregs(&st.sregs).map_err(err(s, "KVM_SET_SREGS"))?;
    // SAFETY: KVM_CAP_XSAVE2 is never enabled on this VM, so KVM copies exactly the 4 KiB
    // `kvm_xsave` we pass (the case the function's contract is about).
    unsafe { fd.set_xsave(&st.xsave) }.map_err(err(s, "KVM_SET_XSAVE"))?;
    if let Some(x) = &st.xcrs {
        fd.set_xcrs(x).map_err(err(s, "KVM_SET_XCRS"))?;
    }
    fd.set_debug_regs(&st.debugregs)
        .map_err(err(s, "KVM_SET_DEBUGREGS"))?;
    fd.set_lapic(&st.lapic).map_err(err(s, "KVM_SET_LAPIC"))?;
    let entries: Vec<kvm_msr_entry> = st
        .msrs
        .iter()
        .map(|&(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
    let msrs = Msrs::from_entries(&entries).map_err(|_fam| StateError {
        vcpu: s,
        op: "building the MSR list",
        source: kvm_ioctls::Error::new(libc::E2BIG),
    })?;
    let n = fd.set_msrs(&msrs).map_err(err(s, "KVM_SET_MSRS"))?;
    if n != entries.len() {
        let index = entries.get(n).map_or(0, |e| e.index);
        tracing::warn!(vcpu = st.id, index, "KVM refused to restore MSR {index:#x}");
    }
    fd.set_vcpu_events(&st.events)
        .map_err(err(s, "KVM_SET_VCPU_EVENTS"))
}

/// Reads the VM-wide in-kernel device state.
///
/// # Errors
/// [`StateError`] naming the ioctl.
pub fn save_vm(vm: &VmFd) -> Result<VmState, StateError> {
    let mut irqchips = Vec::new();
    for chip_id in [
        KVM_IRQCHIP_PIC_MASTER,
        KVM_IRQCHIP_PIC_SLAVE,
        KVM_IRQCHIP_IOAPIC,
    ] {
        let mut c = kvm_irqchip {
            chip_id,
            ..Default::default()
        };
        vm.get_irqchip(&mut c)
            .map_err(err(None, "KVM_GET_IRQCHIP"))?;
        irqchips.push(c);
    }
    Ok(VmState {
        irqchips,
        pit: vm.get_pit2().map_err(err(None, "KVM_GET_PIT2"))?,
        clock: vm.get_clock().map_err(err(None, "KVM_GET_CLOCK"))?,
    })
}

/// Writes `st` into a VM whose irqchip and PIT exist.
///
/// # Errors
/// [`StateError`] naming the ioctl.
pub fn restore_vm(vm: &VmFd, st: &VmState) -> Result<(), StateError> {
    for c in &st.irqchips {
        vm.set_irqchip(c).map_err(err(None, "KVM_SET_IRQCHIP"))?;
    }
    vm.set_pit2(&st.pit).map_err(err(None, "KVM_SET_PIT2"))?;
    // Only the clock value; the flags KVM_GET_CLOCK reports are not settable.
    let clock = kvm_clock_data {
        clock: st.clock.clock,
        ..Default::default()
    };
    vm.set_clock(&clock).map_err(err(None, "KVM_SET_CLOCK"))
}
