//! Building a machine from a snapshot instead of a kernel: the image is read (and its checksum
//! checked) into fresh guest RAM before anything runs, then KVM's, the devices' and the console's
//! state is applied to the machine built from the same configuration.

use std::cell::Cell;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use kvm_ioctls::VcpuFd;

use super::MachineError;
use crate::config::VmConfig;
use crate::console::ConsoleHub;
use crate::devices::Devices;
use crate::snapshot::{self, MachineSnapshot};
use crate::vstate::memory::GuestRam;
use crate::vstate::state;
use crate::vstate::vm::Vm;

/// Tells whoever waits on `ready` (`migrate-receive`, through domusd: `restore_ready_fd`) that the
/// stream is being read now: one byte. A reader that went away is no reason to fail the restore.
pub fn reading(ready: &File) {
    if let Err(e) = std::io::Write::write_all(&mut &*ready, b"R") {
        tracing::warn!(error = %e, "cannot say that the restore stream is being read");
    }
}

/// The image's reader and RAM buffer, kept by the caller until the guest runs: freeing them is
/// no work for the guest-visible downtime of a live migration ([`snapshot::read_with`]).
pub struct ImageReader<'a> {
    input: Box<dyn std::io::Read + 'a>,
    buf: Vec<u8>,
    spin: Rc<Cell<Option<Instant>>>,
}

impl<'a> ImageReader<'a> {
    /// A reader of the image on `f`: a saved image (a regular file) past the page cache
    /// ([`snapshot::direct_read`]), a stream (a live migration's pipe) through a buffer.
    pub fn new(f: &'a File) -> Self {
        let spin = Rc::new(Cell::new(None));
        let input: Box<dyn std::io::Read + 'a> = match snapshot::direct_read::DirectReader::new(f) {
            Some(r) => Box::new(r),
            None => Box::new(BufReader::with_capacity(
                1 << 20,
                SpinRead {
                    f,
                    spin: Rc::clone(&spin),
                },
            )),
        };
        Self {
            input,
            buf: Vec::new(),
            spin,
        }
    }
}

/// Longest busy wait for the stop-and-copy after the source's pause mark.
pub const SPIN_LIMIT: Duration = Duration::from_millis(5);

/// Reads the image; once the source marked its pause ([`snapshot::read_marked`]), waits for the
/// rest busily (non-blocking reads, yielding the CPU between them) for up to [`SPIN_LIMIT`]
/// instead of sleeping in a blocking read: waking a sleeping thread took 30-370 µs on the
/// development host, all of it guest-visible downtime.
struct SpinRead<'a> {
    f: &'a File,
    /// Until when to spin (set by the pause mark).
    spin: Rc<Cell<Option<Instant>>>,
}

impl Read for SpinRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(until) = self.spin.get() else {
            return (&mut &*self.f).read(buf);
        };
        let fd = self.f.as_raw_fd();
        loop {
            // SAFETY: `buf` is valid for `buf.len()` bytes of writes; RWF_NOWAIT makes this one
            // read return EAGAIN instead of blocking on an empty pipe.
            let n = unsafe {
                let iov = libc::iovec {
                    iov_base: buf.as_mut_ptr().cast(),
                    iov_len: buf.len(),
                };
                libc::preadv2(fd, &iov, 1, -1, libc::RWF_NOWAIT)
            };
            if let Ok(n) = usize::try_from(n) {
                return Ok(n);
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) if Instant::now() < until => std::thread::yield_now(),
                // Past the limit, or a descriptor without RWF_NOWAIT: a plain blocking read.
                Some(libc::EAGAIN | libc::EOPNOTSUPP | libc::EINVAL | libc::ESPIPE) => {
                    self.spin.set(None);
                    return (&mut &*self.f).read(buf);
                }
                Some(libc::EINTR) => {}
                _ => return Err(e),
            }
        }
    }
}

/// Reads the image of `image` into `ram` and checks that it describes this machine (memory size,
/// vCPU count within `maxvcpus`, virtio slots). `on_pause` runs when the source marks its pause
/// (a live migration's stop-and-copy comes next).
///
/// # Errors
/// [`MachineError::Restore`] naming what is wrong.
pub fn read_image(
    image: &mut ImageReader<'_>,
    cfg: &VmConfig,
    ram: &GuestRam,
    virtio_slots: usize,
    on_pause: &dyn Fn(),
) -> Result<MachineSnapshot, MachineError> {
    let started = std::time::Instant::now();
    tracing::info!("restore: reading the snapshot stream");
    let spin = Rc::clone(&image.spin);
    let mut on_pause = || {
        tracing::debug!("restore: the source pauses the guest now");
        spin.set(Some(Instant::now() + SPIN_LIMIT));
        on_pause();
    };
    let snap = snapshot::read_marked(&mut image.input, ram.mmap(), &mut image.buf, &mut on_pause)
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
    // Every vCPU KVM had is recreated (CPU hotplug may have made more than `vcpus`, up to
    // `maxvcpus`; which are online comes from the image, not from `vcpus`).
    let possible = cfg.max_vcpus.max(cfg.vcpus);
    if snap.vcpus.is_empty() || snap.vcpus.len() > usize::try_from(possible).unwrap_or(usize::MAX) {
        return Err(mismatch(format!(
            "it has {} vCPUs, the configuration 1 to {possible} (maxvcpus)",
            snap.vcpus.len(),
        )));
    }
    // The configuration's vCPUs were created before the stream was read.
    if snap.vcpus.len() < usize::try_from(cfg.vcpus).unwrap_or(usize::MAX) {
        return Err(mismatch(format!(
            "it has {} vCPUs, fewer than the configuration's vcpus = {}",
            snap.vcpus.len(),
            cfg.vcpus
        )));
    }
    if !snap.vcpu_offline.is_empty() && snap.vcpu_offline.len() != snap.vcpus.len() {
        return Err(mismatch(format!(
            "it has {} vCPU states but {} online flags",
            snap.vcpus.len(),
            snap.vcpu_offline.len()
        )));
    }
    if snap.vcpu_offline.first() == Some(&true) {
        return Err(mismatch("its vCPU 0 is offline".into()));
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

/// What the vCPUs created before the stream hold before anything is written into them
/// ([`state::read_fresh`]), read while the stream has not arrived: [`apply`] leaves out the state
/// writes that would not change them.
///
/// # Errors
/// [`MachineError::Restore`] naming the ioctl KVM refused.
pub fn read_fresh(vcpus: &[VcpuFd]) -> Result<Vec<state::FreshVcpu>, MachineError> {
    vcpus
        .iter()
        .zip(0u32..)
        .map(|(fd, id)| state::read_fresh(fd, id).map_err(|e| MachineError::Restore(e.to_string())))
        .collect()
}

/// Runs the state writes of a restore once before the stream arrives, on the freshly built machine
/// with its own state: each created vCPU's state is read and written back (the vCPU has not run:
/// it then holds what it held), the VM-wide state likewise, and the machine's snapshot is encoded
/// and decoded once. The writes of the real state then run code, heap and KVM paths that have run
/// before (on the development host a vCPU's first restore took 58-78 µs, later ones 47-50 µs; the
/// first decode 7-18 µs, later ones 1 µs): a live migration's downtime pays less for them. Call it
/// before [`read_fresh`] (which must see what the vCPUs hold afterwards).
///
/// # Errors
/// [`MachineError::Restore`] naming the ioctl KVM refused.
pub fn rehearse(
    vm: &Vm,
    vcpus: &[VcpuFd],
    msr_list: &[u32],
    devices: &Devices,
    hub: &ConsoleHub,
    memory_mib: u64,
) -> Result<(), MachineError> {
    let fail = |e: &dyn std::fmt::Display| MachineError::Restore(e.to_string());
    let t0 = Instant::now();
    let mut states = Vec::with_capacity(vcpus.len());
    for (fd, id) in vcpus.iter().zip(0u32..) {
        let st = state::save_vcpu(fd, id, msr_list).map_err(|e| fail(&e))?;
        state::restore_vcpu(fd, &st, None).map_err(|e| fail(&e))?;
        states.push(st);
    }
    let vm_state = state::save_vm(vm.fd()).map_err(|e| fail(&e))?;
    state::restore_vm(vm.fd(), &vm_state).map_err(|e| fail(&e))?;
    let own = MachineSnapshot {
        memory_mib,
        vcpu_offline: vec![false; states.len()],
        vcpus: states,
        vm: vm_state,
        legacy: devices.snapshot(),
        virtio: devices.virtio().iter().map(|t| t.snapshot()).collect(),
        console: hub.backlog(),
        paused: false,
    };
    let bytes = snapshot::encode_state(&own).map_err(|e| fail(&e))?;
    let back: MachineSnapshot = snapshot::decode(&bytes).map_err(|e| fail(&e))?;
    tracing::debug!(
        us = t0.elapsed().as_micros(),
        state_bytes = bytes.len(),
        vcpus = back.vcpus.len(),
        "restore: state writes rehearsed"
    );
    Ok(())
}

/// Applies `snap` to the freshly built machine (before any vCPU or device thread runs). `fresh`
/// is [`read_fresh`] of the first vCPUs (none written to since); vCPUs beyond it get every write.
///
/// # Errors
/// [`MachineError::Restore`] naming the part KVM or a device refused.
pub fn apply(
    snap: &MachineSnapshot,
    vm: &Vm,
    vcpus: &[VcpuFd],
    fresh: &[state::FreshVcpu],
    devices: &Devices,
    hub: &ConsoleHub,
) -> Result<(), MachineError> {
    let fail = |e: &dyn std::fmt::Display| MachineError::Restore(e.to_string());
    let t0 = std::time::Instant::now();
    state::restore_vm(vm.fd(), &snap.vm).map_err(|e| fail(&e))?;
    let t_vm = t0.elapsed();
    let mut skipped = 0;
    for (i, (fd, st)) in vcpus.iter().zip(&snap.vcpus).enumerate() {
        skipped += state::restore_vcpu(fd, st, fresh.get(i)).map_err(|e| fail(&e))?;
    }
    let t_vcpus = t0.elapsed();
    devices
        .restore(&snap.legacy)
        .map_err(|e| MachineError::Restore(format!("the image does not match this domain: {e}")))?;
    for (t, s) in devices.virtio().iter().zip(&snap.virtio) {
        t.restore(s).map_err(|e| fail(&e))?;
    }
    let t_devices = t0.elapsed();
    hub.restore_backlog(&snap.console);
    tracing::debug!(
        vm_us = t_vm.as_micros(),
        vcpus_us = t_vcpus.as_micros(),
        devices_us = t_devices.as_micros(),
        all_us = t0.elapsed().as_micros(),
        skipped,
        "restore: machine state applied"
    );
    Ok(())
}

/// Whether vCPU `id` starts offline: as recorded in the image for the vCPUs it has (online when
/// the image predates CPU hotplug), offline beyond them.
pub fn starts_offline(snap: &MachineSnapshot, id: usize) -> bool {
    if id >= snap.vcpus.len() {
        return true;
    }
    snap.vcpu_offline.get(id).copied().unwrap_or(false)
}
