//! The `save` control request: pauses the machine, collects every part's state (vCPU threads through
//! their save-state event, KVM's VM-wide devices, the port devices, each virtio slot, the console
//! backlog) and writes the snapshot stream ([`crate::snapshot`]) to the descriptor the client sent
//! (a regular file with `O_DIRECT`: [`crate::snapshot::direct`]).

use std::cell::RefCell;
use std::fs::File;
use std::io::BufWriter;

use super::vcpus::Vcpus;
use crate::console::ConsoleHub;
use crate::devices::Devices;
use crate::snapshot::{self, MachineSnapshot};
use crate::threads::{ThreadAck, ThreadEvent};
use crate::vstate::memory::GuestMem;
use crate::vstate::state::VcpuState;
use crate::vstate::vm::Vm;

/// What a snapshot is taken from.
pub struct SaveSources<'a> {
    /// The VM (irqchip, PIT, clock).
    pub vm: &'a Vm,
    /// Console backlog.
    pub hub: &'a ConsoleHub,
    /// Guest RAM (dirty tracking of device writes, for live migration).
    pub ram: &'a crate::vstate::memory::GuestRam,
    /// Which vCPUs are offline.
    pub shared: &'a super::shared::Shared,
    /// The disks (their locks are handed over in a live migration: [`super::disk_locks`]).
    pub disks: &'a [crate::config::VmDisk],
}

/// Collects the machine's state; the vCPUs and device threads must be paused.
///
/// # Errors
/// A message naming the part whose state could not be read.
pub fn collect(
    src: &SaveSources<'_>,
    vcpus: &RefCell<Vcpus>,
    devices: &Devices,
    memory_mib: u64,
    paused: bool,
) -> Result<MachineSnapshot, String> {
    let acks = vcpus
        .borrow_mut()
        .broadcast(ThreadEvent::SaveState)
        .map_err(|e| format!("save: a vCPU did not report its state: {e}"))?;
    assemble(src, acks, devices, memory_mib, paused)
}

/// [`collect`] once the vCPUs answered `SaveState` (`acks`, vCPU order): the rest of the state.
///
/// # Errors
/// A message naming the part whose state could not be read.
pub fn assemble(
    src: &SaveSources<'_>,
    acks: Vec<ThreadAck>,
    devices: &Devices,
    memory_mib: u64,
    paused: bool,
) -> Result<MachineSnapshot, String> {
    let mut snap = without_vcpus(src, devices, memory_mib, paused)?;
    add_vcpus(&mut snap, src, acks)?;
    Ok(snap)
}

/// The machine's state except the vCPUs' (a live migration reads it while the vCPU threads
/// report theirs); [`add_vcpus`] completes it.
///
/// # Errors
/// A message naming the part whose state could not be read.
pub fn without_vcpus(
    src: &SaveSources<'_>,
    devices: &Devices,
    memory_mib: u64,
    paused: bool,
) -> Result<MachineSnapshot, String> {
    let vm = crate::vstate::state::save_vm(src.vm.fd()).map_err(|e| format!("save: {e}"))?;
    Ok(MachineSnapshot {
        memory_mib,
        vcpus: Vec::new(),
        vcpu_offline: Vec::new(),
        vm,
        legacy: devices.snapshot(),
        virtio: devices.virtio().iter().map(|t| t.snapshot()).collect(),
        console: src.hub.backlog(),
        paused,
    })
}

/// Adds the vCPUs' answers to `SaveState` (`acks`, vCPU order) and their online flags to `snap`.
///
/// # Errors
/// A vCPU answered something else, or a state that cannot be read.
pub fn add_vcpus(
    snap: &mut MachineSnapshot,
    src: &SaveSources<'_>,
    acks: Vec<ThreadAck>,
) -> Result<(), String> {
    let mut states = Vec::with_capacity(acks.len());
    for (i, ack) in acks.into_iter().enumerate() {
        let ThreadAck::State(bytes) = ack else {
            return Err(format!("save: vCPU {i} answered {ack:?}"));
        };
        let st: VcpuState = crate::snapshot::decode(&bytes)
            .map_err(|e| format!("save: the state of vCPU {i} could not be read ({e})"))?;
        states.push(st);
    }
    snap.vcpu_offline = (0..states.len())
        .map(|i| {
            src.shared
                .vcpus
                .get(i)
                .is_some_and(|s| s.offline.load(std::sync::atomic::Ordering::SeqCst))
        })
        .collect();
    snap.vcpus = states;
    Ok(())
}

/// Writes `snap` and guest RAM to `out`; returns the bytes written. `progress` hears of the bytes.
///
/// # Errors
/// A message with the stream error.
pub fn write(
    out: File,
    snap: &MachineSnapshot,
    mem: &GuestMem,
    progress: &super::progress::Reporter<'_>,
) -> Result<u64, String> {
    let started = std::time::Instant::now();
    progress.stage(
        domus_vmm_api::Phase::Snapshot,
        1,
        0,
        super::progress::ram_pages(mem),
    );
    let regular = out.metadata().is_ok_and(|m| m.file_type().is_file());
    let bytes = if regular {
        // An image file: written past the page cache, a disk thread taking each buffer
        // ([`snapshot::direct`]).
        snapshot::direct::run(&out, |d| {
            snapshot::write(super::progress::Counting::new(d, progress), snap, mem)
        })
    } else {
        let out = super::progress::Counting::new(out, progress);
        snapshot::write(BufWriter::with_capacity(1 << 20, out), snap, mem)
    }
    .map_err(|e| format!("save: {e}"))?;
    tracing::info!(
        bytes,
        direct = regular,
        ms = started.elapsed().as_millis(),
        "snapshot written"
    );
    Ok(bytes)
}
