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
use zerocopy::{Immutable, IntoBytes};

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

/// What a freshly created vCPU holds of the parts of [`VcpuState`] a guest seldom changes (read
/// before a restore's stream arrives, off a live migration's guest-visible downtime): where the
/// image holds the very same bytes, [`restore_vcpu`] leaves that part alone. Each KVM state ioctl
/// costs 5-10 µs on the PVM development host, mostly the ioctl itself, whatever it carries.
pub struct FreshVcpu {
    mp_state: kvm_mp_state,
    xcrs: Option<kvm_xcrs>,
    debugregs: kvm_debugregs,
    events: kvm_vcpu_events,
}

/// Reads [`FreshVcpu`] of vCPU `id` (created and configured, not yet run, nothing else set).
///
/// # Errors
/// [`StateError`] naming the ioctl.
pub fn read_fresh(fd: &VcpuFd, id: u32) -> Result<FreshVcpu, StateError> {
    let s = Some(id);
    Ok(FreshVcpu {
        mp_state: fd.get_mp_state().map_err(err(s, "KVM_GET_MP_STATE"))?,
        xcrs: fd.get_xcrs().ok(),
        debugregs: fd.get_debug_regs().map_err(err(s, "KVM_GET_DEBUGREGS"))?,
        events: fd
            .get_vcpu_events()
            .map_err(err(s, "KVM_GET_VCPU_EVENTS"))?,
    })
}

/// Whether writing `saved` into a vCPU that holds `fresh` changes nothing: the same bytes (the
/// kvm-bindings structs have no padding, so equal bytes are equal values).
fn same<T: IntoBytes + Immutable>(saved: &T, fresh: Option<&T>) -> bool {
    fresh.is_some_and(|f| f.as_bytes() == saved.as_bytes())
}

/// Writes `st` into a freshly created (CPUID set, not yet run) vCPU. With `fresh` (what that vCPU
/// held before: [`read_fresh`], nothing written to it since), the MP state, XCRs, debug registers
/// and events are written only where they differ from it. None of the writes before them changes
/// them when they equal a fresh vCPU's: KVM_SET_REGS drops a pending exception (a fresh vCPU has
/// none), KVM_SET_SREGS queues the interrupt its bitmap names (the events then name it too, so they
/// differ and are written), and the other writes touch none of the four. Returns how many writes
/// were left out.
///
/// # Errors
/// [`StateError`] naming the ioctl.
pub fn restore_vcpu(
    fd: &VcpuFd,
    st: &VcpuState,
    fresh: Option<&FreshVcpu>,
) -> Result<u32, StateError> {
    let s = Some(st.id);
    let mut skipped = 0;
    if same(&st.mp_state, fresh.map(|f| &f.mp_state)) {
        skipped += 1;
    } else {
        fd.set_mp_state(st.mp_state)
            .map_err(err(s, "KVM_SET_MP_STATE"))?;
    }
    fd.set_regs(&st.regs).map_err(err(s, "KVM_SET_REGS"))?;
    fd.set_sregs(&st.sregs).map_err(err(s, "KVM_SET_SREGS"))?;
    // SAFETY: KVM_CAP_XSAVE2 is never enabled on this VM, so KVM copies exactly the 4 KiB
    // `kvm_xsave` we pass (the case the function's contract is about).
    unsafe { fd.set_xsave(&st.xsave) }.map_err(err(s, "KVM_SET_XSAVE"))?;
    if let Some(x) = &st.xcrs {
        if same(x, fresh.and_then(|f| f.xcrs.as_ref())) {
            skipped += 1;
        } else {
            fd.set_xcrs(x).map_err(err(s, "KVM_SET_XCRS"))?;
        }
    }
    if same(&st.debugregs, fresh.map(|f| &f.debugregs)) {
        skipped += 1;
    } else {
        fd.set_debug_regs(&st.debugregs)
            .map_err(err(s, "KVM_SET_DEBUGREGS"))?;
    }
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
    if same(&st.events, fresh.map(|f| &f.events)) {
        skipped += 1;
    } else {
        fd.set_vcpu_events(&st.events)
            .map_err(err(s, "KVM_SET_VCPU_EVENTS"))?;
    }
    Ok(skipped)
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

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::{KVM_MAX_CPUID_ENTRIES, KVM_MP_STATE_HALTED};
    use kvm_ioctls::Kvm;

    #[test]
    fn a_restore_leaves_out_only_the_writes_that_change_nothing() {
        let kvm = Kvm::new().unwrap();
        let vm = kvm.create_vm().unwrap();
        vm.create_irq_chip().unwrap();
        let fd = vm.create_vcpu(0).unwrap();
        let cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).unwrap();
        fd.set_cpuid2(&cpuid).unwrap();
        let st = save_vcpu(&fd, 0, &[]).unwrap();
        let xcrs = u32::from(st.xcrs.is_some());

        // The vCPU's own state: MP state, XCRs, debug registers and events are left out.
        let fresh = read_fresh(&fd, 0).unwrap();
        assert_eq!(restore_vcpu(&fd, &st, Some(&fresh)).unwrap(), 3 + xcrs);
        // Without what it held, everything is written.
        assert_eq!(restore_vcpu(&fd, &st, None).unwrap(), 0);

        // What differs is written, and reads back.
        let mut changed = save_vcpu(&fd, 0, &[]).unwrap();
        changed.debugregs.db[0] = 0x1000;
        changed.mp_state.mp_state = KVM_MP_STATE_HALTED;
        // Off the reset vector: KVM_SET_SREGS makes a BSP at its reset vector runnable.
        changed.regs.rip = 0x2000;
        let fresh = read_fresh(&fd, 0).unwrap();
        assert_eq!(restore_vcpu(&fd, &changed, Some(&fresh)).unwrap(), 1 + xcrs);
        assert_eq!(fd.get_debug_regs().unwrap().db[0], 0x1000);
        assert_eq!(fd.get_mp_state().unwrap().mp_state, KVM_MP_STATE_HALTED);
        let mut events = changed.events;
        events.nmi.pending = 1;
        changed.events = events;
        assert_eq!(restore_vcpu(&fd, &changed, Some(&fresh)).unwrap(), xcrs);
        assert_eq!(fd.get_vcpu_events().unwrap().nmi.pending, 1);
    }

    /// A vCPU of a new VM (irqchip, CPUID set), not yet run.
    fn fresh_vcpu(kvm: &Kvm) -> (kvm_ioctls::VmFd, VcpuFd) {
        let vm = kvm.create_vm().unwrap();
        vm.create_irq_chip().unwrap();
        let fd = vm.create_vcpu(0).unwrap();
        let cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).unwrap();
        fd.set_cpuid2(&cpuid).unwrap();
        (vm, fd)
    }

    #[test]
    fn a_vcpu_given_its_own_state_back_restores_an_image_as_a_fresh_one_does() {
        let kvm = Kvm::new().unwrap();
        let msrs: Vec<u32> = kvm.get_msr_index_list().unwrap().as_slice().to_vec();
        // The image: another vCPU's state, changed where a guest would have changed it.
        let (_vm_src, src) = fresh_vcpu(&kvm);
        let mut image = save_vcpu(&src, 0, &msrs).unwrap();
        image.regs.rip = 0x2000;
        image.regs.rax = 0x1234_5678;
        image.mp_state.mp_state = KVM_MP_STATE_HALTED;
        image.debugregs.db[1] = 0x3000;
        image.events.nmi.masked = 1;
        for (index, value) in &mut image.msrs {
            // IA32_SYSENTER_CS/ESP/EIP
            if (0x174..=0x176).contains(index) {
                *value = 0x10 + u64::from(*index);
            }
        }

        // A: the image written into a fresh vCPU (what a restore did before the rehearsal).
        let (_vm_a, a) = fresh_vcpu(&kvm);
        let fresh_a = read_fresh(&a, 0).unwrap();
        let skipped_a = restore_vcpu(&a, &image, Some(&fresh_a)).unwrap();
        // B: its own state read and written back first (the rehearsal), then the image.
        let (_vm_b, b) = fresh_vcpu(&kvm);
        let own = save_vcpu(&b, 0, &msrs).unwrap();
        assert_eq!(restore_vcpu(&b, &own, None).unwrap(), 0);
        let fresh_b = read_fresh(&b, 0).unwrap();
        let skipped_b = restore_vcpu(&b, &image, Some(&fresh_b)).unwrap();
        assert_eq!(skipped_a, skipped_b);

        let (sa, sb) = (
            save_vcpu(&a, 0, &msrs).unwrap(),
            save_vcpu(&b, 0, &msrs).unwrap(),
        );
        assert_eq!(sa.mp_state.as_bytes(), sb.mp_state.as_bytes());
        assert_eq!(sa.mp_state.mp_state, KVM_MP_STATE_HALTED);
        assert_eq!(sa.regs.as_bytes(), sb.regs.as_bytes());
        assert_eq!(sb.regs.rip, 0x2000);
        assert_eq!(sa.sregs.as_bytes(), sb.sregs.as_bytes());
        assert_eq!(sa.xsave.as_bytes(), sb.xsave.as_bytes());
        assert_eq!(
            sa.xcrs.as_ref().map(IntoBytes::as_bytes),
            sb.xcrs.as_ref().map(IntoBytes::as_bytes)
        );
        assert_eq!(sa.debugregs.as_bytes(), sb.debugregs.as_bytes());
        assert_eq!(sb.debugregs.db[1], 0x3000);
        assert_eq!(sa.events.as_bytes(), sb.events.as_bytes());
        // The LAPIC but its timer's current count (APIC register 0x390), which runs on.
        let mut la = sa.lapic.regs;
        let mut lb = sb.lapic.regs;
        la[0x390..0x394].fill(0);
        lb[0x390..0x394].fill(0);
        assert_eq!(la, lb);
        // The MSRs but the TSC, which runs on.
        let no_tsc = |s: &VcpuState| -> Vec<(u32, u64)> {
            s.msrs.iter().copied().filter(|&(i, _)| i != 0x10).collect()
        };
        assert_eq!(no_tsc(&sa), no_tsc(&sb));
        assert!(sb.msrs.contains(&(0x175, 0x185)), "{:x?}", sb.msrs);
    }
}
