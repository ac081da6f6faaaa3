//! The vCPU thread: KVM_RUN in a loop, exits dispatched to the devices, fatal exits turned into
//! outcomes, control events (pause, resume, stop, save state) served between runs and acknowledged.
//!
//! Application processors block inside KVM_RUN until the guest's INIT-SIPI-SIPI; under PVM their first
//! KVM_RUN after INIT returns EAGAIN once (`smp-acpi/p1_sipi`), so EAGAIN is retried. EINTR is our own
//! kick signal (an event is waiting) or a spurious one; either way the loop looks at its events.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use kvm_bindings::{
    KVM_EXIT_DIRTY_RING_FULL, KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET,
    KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::{VcpuExit, VcpuFd};

use super::shared::Shared;
use crate::devices::{Devices, PioAction};
use crate::outcome::{Outcome, Reason};
use crate::threads::{ThreadAck, ThreadEvent, ThreadMailbox};
use crate::vstate::vcpu::KickableVcpu;

/// Saves the registers of a vCPU about to park, for `dump-core` (a failure leaves none: the dump says so).
fn save_regs(id: usize, fd: &VcpuFd, shared: &Shared) {
    let Some(s) = shared.vcpus.get(id) else {
        return;
    };
    let regs = match (fd.get_regs(), fd.get_sregs()) {
        (Ok(regs), Ok(sregs)) => Some(super::coredump::CpuRegs { regs, sregs }),
        _ => None,
    };
    *s.parked_regs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = regs;
}

/// Runs vCPU `id` until a `Stop` event or the machine stopping; acknowledges `Stopped` last.
pub fn run(
    id: usize,
    fd: VcpuFd,
    devices: Arc<Devices>,
    shared: Arc<Shared>,
    events: ThreadMailbox,
) {
    let status = shared.vcpus.get(id);
    if let Some(s) = status {
        s.tid.store(crate::sys::current_tid(), Ordering::SeqCst);
    }
    let _span = tracing::info_span!("vcpu", vcpu = id).entered();
    let mut vcpu = KickableVcpu::new(fd);
    while !shared.should_stop() {
        if status.is_some_and(|s| s.offline.load(Ordering::SeqCst))
            && !stay_offline(&events, status, || save_state(id, vcpu.fd(), &shared))
        {
            break;
        }
        match events.try_recv() {
            Some(ThreadEvent::Pause) => {
                save_regs(id, vcpu.fd(), &shared);
                if let Some(s) = status {
                    s.parked.store(true, Ordering::SeqCst);
                }
                events.ack(ThreadAck::Paused);
                let resumed = events.stay_paused(|| save_state(id, vcpu.fd(), &shared));
                if let Some(s) = status {
                    s.parked.store(false, Ordering::SeqCst);
                }
                if !resumed {
                    break;
                }
                continue;
            }
            Some(ThreadEvent::Resume) => events.ack(ThreadAck::Resumed),
            Some(ThreadEvent::SaveState) => {
                events.ack(ThreadAck::State(save_state(id, vcpu.fd(), &shared)));
            }
            Some(ThreadEvent::Stop) => break,
            None => {}
        }
        if status.is_some_and(|s| s.nmi_pending.swap(false, Ordering::SeqCst)) {
            if let Err(e) = vcpu.fd().nmi() {
                tracing::warn!(error = %e, "KVM_NMI failed");
            }
        }
        let stop = match vcpu.fd().run() {
            Ok(exit) => handle_exit(id, exit, &devices),
            Err(e) => match e.errno() {
                libc::EINTR => {
                    vcpu.clear_kick();
                    None
                }
                libc::EAGAIN => None,
                _ => Some(Outcome::new(
                    Reason::Crash,
                    format!("KVM_RUN failed on vCPU {id}: {e}"),
                )),
            },
        };
        if let Some(outcome) = stop {
            let outcome = if outcome.reason == Reason::Crash {
                describe_crash(id, vcpu.fd(), outcome, shared.host_is_pvm)
            } else {
                outcome
            };
            shared.finish(outcome);
        }
    }
    drop(vcpu);
    if let Some(s) = status {
        s.exited.store(true, Ordering::SeqCst);
    }
    events.ack(ThreadAck::Stopped);
}

/// Parks an offline vCPU (ejected by the guest; KVM cannot destroy a vCPU, so its thread waits here
/// to be plugged in again): serves events without running the guest until a `Resume` finds it
/// online again (returns `true`) or `Stop` (returns `false`). A domain-wide pause and resume are
/// acknowledged and leave it parked.
fn stay_offline(
    events: &ThreadMailbox,
    status: Option<&super::shared::VcpuStatus>,
    mut save: impl FnMut() -> Vec<u8>,
) -> bool {
    tracing::debug!("vCPU offline: parked");
    loop {
        match events.next() {
            ThreadEvent::Resume => {
                events.ack(ThreadAck::Resumed);
                if !status.is_some_and(|s| s.offline.load(Ordering::SeqCst)) {
                    tracing::debug!("vCPU online again");
                    return true;
                }
            }
            ThreadEvent::Pause => events.ack(ThreadAck::Paused),
            ThreadEvent::SaveState => events.ack(ThreadAck::State(save())),
            ThreadEvent::Stop => return false,
        }
    }
}

/// The save-state hook: the whole architectural state ([`crate::vstate::state::VcpuState`]) as JSON;
/// empty when an ioctl failed (the caller refuses the snapshot then).
fn save_state(id: usize, fd: &VcpuFd, shared: &Shared) -> Vec<u8> {
    let id = u32::try_from(id).unwrap_or(u32::MAX);
    match crate::vstate::state::save_vcpu(fd, id, &shared.msr_list) {
        Ok(st) => crate::snapshot::encode(&st).unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the vCPU state");
            Vec::new()
        }
    }
}

fn handle_exit(id: usize, exit: VcpuExit<'_>, devices: &Devices) -> Option<Outcome> {
    match exit {
        VcpuExit::IoIn(port, data) => {
            devices.pio_read(port, data);
            None
        }
        VcpuExit::IoOut(port, data) => match devices.pio_write(port, data) {
            PioAction::Continue => None,
            PioAction::Stop(o) => Some(o),
        },
        VcpuExit::MmioRead(addr, data) => {
            // Outside RAM and the in-kernel LAPIC/IOAPIC: the virtio-mmio window, else open bus.
            devices.mmio_read(addr, data);
            None
        }
        VcpuExit::MmioWrite(addr, data) => {
            devices.mmio_write(addr, data);
            None
        }
        VcpuExit::IrqWindowOpen | VcpuExit::Intr => None,
        // The dirty ring is full: a live migration harvests it between its rounds; wait a little.
        VcpuExit::Unsupported(KVM_EXIT_DIRTY_RING_FULL) => {
            std::thread::sleep(std::time::Duration::from_millis(1));
            None
        }
        VcpuExit::Shutdown => Some(Outcome::new(
            Reason::Reboot,
            format!("triple fault on vCPU {id} (KVM_EXIT_SHUTDOWN)"),
        )),
        VcpuExit::SystemEvent(ty, _) => Some(match ty {
            KVM_SYSTEM_EVENT_SHUTDOWN => {
                Outcome::new(Reason::Poweroff, "KVM system event: shutdown")
            }
            KVM_SYSTEM_EVENT_RESET => Outcome::new(Reason::Reboot, "KVM system event: reset"),
            KVM_SYSTEM_EVENT_CRASH => Outcome::new(Reason::Crash, "KVM system event: crash"),
            other => Outcome::new(Reason::Crash, format!("KVM system event {other}")),
        }),
        VcpuExit::Hlt => Some(Outcome::new(
            Reason::Crash,
            format!("vCPU {id} halted outside the in-kernel irqchip"),
        )),
        VcpuExit::InternalError => Some(Outcome::new(
            Reason::Crash,
            format!("KVM internal error on vCPU {id} (instruction emulation failed)"),
        )),
        VcpuExit::FailEntry(reason, cpu) => Some(Outcome::new(
            Reason::Crash,
            format!(
                "vCPU {id} failed to enter the guest (hardware reason {reason:#x}, host cpu {cpu})"
            ),
        )),
        other => Some(Outcome::new(
            Reason::Crash,
            format!("unexpected exit on vCPU {id}: {other:?}"),
        )),
    }
}

/// Adds the guest's instruction pointer to a crash detail (helps tell a guest bug from a PVM limit).
fn describe_crash(id: usize, fd: &VcpuFd, mut outcome: Outcome, pvm: bool) -> Outcome {
    if let (Ok(regs), Ok(sregs)) = (fd.get_regs(), fd.get_sregs()) {
        let cpl = sregs.cs.dpl;
        outcome.detail = format!("{} at rip {:#x} (cpl {cpl})", outcome.detail, regs.rip);
        if cpl == 0 && pvm {
            outcome.detail.push_str(
                "; note: this host's KVM is PVM, which cannot emulate some ring-0 instructions",
            );
        }
    }
    tracing::debug!(vcpu = id, detail = %outcome.detail, "vCPU crash");
    outcome
}
