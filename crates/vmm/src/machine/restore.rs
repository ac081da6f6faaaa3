//! Building a machine from a snapshot instead of a kernel: the image is read (and its checksum
//! checked) into fresh guest RAM before anything runs, then KVM's, the devices' and the console's
//! state is applied to the machine built from the same configuration.

use std::fs::File;
use std::io::BufReader;

use kvm_ioctls::VcpuFd;

use super::MachineError;
use crate::config::VmConfig;
use crate::console::ConsoleHub;
use crate::devices::Devices;
use crate::snapshot::{self, MachineSnapshot};
use crate::vstate::memory::GuestRam;
use crate::vstate::vm::Vm;

/// Reads the image on `f` into `ram` and checks that it describes this machine (memory size,
/// vCPU count, virtio slots).
///
/// # Errors
/// [`MachineError::Restore`] naming what is wrong.
pub fn read_image(
    f: &File,
    cfg: &VmConfig,
    ram: &GuestRam,
    virtio_slots: usize,
) -> Result<MachineSnapshot, MachineError> {
    let started = std::time::Instant::now();
    let snap = snapshot::read(BufReader::with_capacity(1 << 20, f), ram.mmap())
        .map_err(|e| MachineError::Restore(e.to_string()))?;
    let mismatch = |what: String| {
        MachineError::Restore(format!("the image does not match this domain: {what}"))
    };
    if snap.memory_mib != cfg.memory_mib {
        return Err(mismatch(format!(
            "it has {} MiB of RAM, the configuration {} MiB",
            snap.memory_mib, cfg.memory_mib
        )));
    }
    if snap.vcpus.len() != usize::try_from(cfg.vcpus).unwrap_or(usize::MAX) {
        return Err(mismatch(format!(
            "it has {} vCPUs, the configuration {}",
            snap.vcpus.len(),
            cfg.vcpus
        )));
    }
    if snap.virtio.len() != virtio_slots {
        return Err(mismatch(format!(
            "it has {} virtio devices, the configuration {virtio_slots}",
            snap.virtio.len()
        )));
    }
    tracing::info!(ms = started.elapsed().as_millis(), "snapshot read");
    Ok(snap)
}

/// Applies `snap` to the freshly built machine (before any vCPU or device thread starts).
///
/// # Errors
/// [`MachineError::Restore`] naming the part KVM or a device refused.
pub fn apply(
    snap: &MachineSnapshot,
    vm: &Vm,
    vcpus: &[VcpuFd],
    devices: &Devices,
    hub: &ConsoleHub,
) -> Result<(), MachineError> {
    let fail = |e: &dyn std::fmt::Display| MachineError::Restore(e.to_string());
    crate::vstate::state::restore_vm(vm.fd(), &snap.vm).map_err(|e| fail(&e))?;
    for (fd, st) in vcpus.iter().zip(&snap.vcpus) {
        crate::vstate::state::restore_vcpu(fd, st).map_err(|e| fail(&e))?;
    }
    devices.restore(&snap.legacy);
    for (t, s) in devices.virtio().iter().zip(&snap.virtio) {
        t.restore(s).map_err(|e| fail(&e))?;
    }
    hub.restore_backlog(&snap.console);
    Ok(())
}
