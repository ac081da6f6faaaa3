//! `set-vcpus` (xl vcpu-set): vCPUs in and out through ACPI CPU hotplug.
//!
//! Plugging vCPU `k` in: its KVM vCPU is created the first time (the same CPUID and MSR setup as the
//! boot vCPUs, `vstate::vcpu::create`), its thread started pinned like the others (`cpus`); it waits
//! for the guest's INIT-SIPI in KVM_RUN. The register block then marks it enabled and inserting and
//! the GED interrupt tells the guest. Taking it out: the register block marks it removing and the
//! GED interrupt fires; the request completes when the guest ejects it (`CEJ0`), which parks its
//! thread (`vcpu_thread::stay_offline`). KVM cannot destroy a vCPU, so a parked vCPU is reused (its
//! thread resumed) the next time it is plugged in; the guest starts it again with INIT-SIPI.

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use kvm_bindings::CpuId;

use super::shared::Shared;
use super::vcpus::Vcpus;
use crate::boot::EntryPoint;
use crate::devices::Devices;
use crate::vstate::vm::Vm;

/// What creating a vCPU after boot needs.
pub struct VcpuFactory<'a> {
    /// The VM.
    pub vm: &'a Arc<Vm>,
    /// KVM's supported CPUID (normalised per vCPU as at boot).
    pub supported: &'a CpuId,
    /// The boot entry (only vCPU 0 uses it; kept for the shared setup).
    pub entry: EntryPoint,
    /// Possible vCPUs.
    pub possible: u32,
    /// Hard affinity per vCPU (`cpus`).
    pub affinity: &'a [Vec<u32>],
}

/// Makes vCPUs `0..online` the online ones.
///
/// # Errors
/// A message for the control reply: out of range, no hotplug, a vCPU that cannot be created or
/// resumed.
pub fn set_online(
    f: &VcpuFactory<'_>,
    devices: &Arc<Devices>,
    shared: &Arc<Shared>,
    vcpus: &RefCell<Vcpus>,
    online: u32,
) -> Result<(), String> {
    if online == 0 || online > f.possible {
        return Err(format!(
            "cannot set {online} vCPUs online: the domain has 1 to {} (maxvcpus)",
            f.possible
        ));
    }
    let to_insert = devices
        .cpu_hotplug()
        .ok_or("this machine has no CPU hotplug")?
        .to_insert(online);
    let mut news = false;
    for id in to_insert {
        let index = usize::try_from(id).map_err(|_| format!("no vCPU {id}"))?;
        let status = shared
            .vcpus
            .get(index)
            .ok_or_else(|| format!("no vCPU {id}"))?;
        let created = vcpus.borrow().len();
        if index < created {
            status.offline.store(false, Ordering::SeqCst);
            vcpus
                .borrow_mut()
                .unpark(index)
                .map_err(|e| format!("cannot plug vCPU {id} in again: {e}"))?;
        } else {
            let fd = crate::vstate::vcpu::create(f.vm.fd(), f.supported, id, f.possible, f.entry)
                .map_err(|e| format!("cannot create vCPU {id}: {e}"))?;
            // Every vCPU of a VM with the dirty ring has one: a live migration harvests it.
            f.vm.map_dirty_ring(&fd)
                .map_err(|e| format!("cannot map the dirty ring of vCPU {id}: {e}"))?;
            status.offline.store(false, Ordering::SeqCst);
            vcpus
                .borrow_mut()
                .add(index, fd, devices, shared, f.affinity)
                .map_err(|e| format!("cannot start vCPU {id}: {e}"))?;
        }
        if let Some(mut hp) = devices.cpu_hotplug() {
            hp.insert(id);
        }
        tracing::info!(vcpu = id, "vCPU plugged in");
        news = true;
    }
    if let Some(mut hp) = devices.cpu_hotplug() {
        let asked = hp.request_online(online);
        if !asked.is_empty() {
            tracing::info!(vcpus = ?asked, "vCPU removal asked of the guest");
        }
        news |= hp.has_events();
    }
    if news {
        devices.raise_ged();
    }
    Ok(())
}
