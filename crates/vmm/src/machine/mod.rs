//! The machine: builds KVM, memory, devices and vCPUs from a [`VmConfig`], runs the guest until it stops,
//! serves the console and control sockets from the main thread, and returns the [`Outcome`].
//!
//! Order matters for "nothing left behind": everything that can fail on bad input (config limits, KVM
//! access, memory, kernel) is checked before any socket is created or thread started.

mod control_target;
pub mod coredump;
pub mod disk_locks;
mod event_loop;
pub mod hotplug;
pub mod migrate;
pub mod migrate_paused;
pub mod migrate_ready;
pub mod progress;
mod restore;
pub mod save;
pub mod shared;
pub mod sockets;
pub mod vcpu_thread;
pub mod vcpus;

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use vmm_sys_util::eventfd::EventFd;

use crate::boot::{self, BootError};
use crate::config::{ConfigError, VmConfig};
use crate::console::{ConsoleHub, ConsoleMode, ConsoleSink};
use crate::devices::acpi_pm::SCI_IRQ;
use crate::devices::cpu_hotplug::{CpuHotplug, GED_GSI};
use crate::devices::legacy::serial::{IrqTrigger, SerialDevice, COM1_IRQ};
use crate::devices::virtio::manager::DeviceManager;
use crate::devices::Devices;
use crate::outcome::Outcome;
use crate::vstate::kvm::{KvmError, KvmSystem};
use crate::vstate::memory::{GuestRam, RamBacking, RamError};
use crate::vstate::vcpu::VcpuError;
use crate::vstate::vm::{Vm, VmError};
use shared::Shared;
use sockets::{OwnedSocket, SocketError};

/// How to run (everything except the guest's own configuration).
#[derive(Debug)]
pub struct MachineOptions {
    /// Console destination.
    pub console: ConsoleMode,
    /// Control socket path.
    pub control: Option<PathBuf>,
    /// KVM device node (normally `/dev/kvm`).
    pub kvm_path: PathBuf,
    /// How long to keep the control socket open after the guest stopped, waiting for `ack-outcome`.
    pub outcome_linger: Duration,
    /// Start with every vCPU paused before its first instruction (`xl create -p`); `resume` starts them.
    pub start_paused: bool,
    /// Where to keep the outcome (JSON) once the guest stopped, for a supervisor that was away.
    pub outcome_file: Option<PathBuf>,
    /// Dirty tracking for live migration through KVM's dirty ring where KVM offers it (false: the
    /// dirty bitmap; the binary maps `DOMUS_VMM_DIRTY_BITMAP=1` to false).
    pub dirty_ring: bool,
    /// Disk I/O through io_uring where the host allows it (false: the thread pool; the binary maps
    /// `DOMUS_VMM_NO_IO_URING` to false).
    pub io_uring: bool,
    /// Host resources opened before the VMM was sandboxed (by its supervisor, or by `main` before it
    /// locked itself in); each replaces opening or binding the matching path.
    pub opened: Opened,
}

/// Host resources a sandboxed VMM gets already open (it can open nothing itself).
#[derive(Debug, Default)]
pub struct Opened {
    /// The KVM device (instead of opening [`MachineOptions::kvm_path`]).
    pub kvm: Option<std::fs::File>,
    /// The listening control socket (instead of binding [`MachineOptions::control`], which then only
    /// names it in messages).
    pub control: Option<std::os::unix::net::UnixListener>,
    /// The listening console socket for `ConsoleMode::Unix` (instead of binding its path).
    pub console: Option<std::os::unix::net::UnixListener>,
    /// Where to keep the outcome (instead of [`MachineOptions::outcome_file`]): written from offset 0
    /// and synced.
    pub outcome: Option<std::fs::File>,
    /// Whether the host's KVM is PVM (a sandboxed VMM cannot look at /sys).
    pub host_is_pvm: Option<bool>,
}
/// The domain could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// Configuration out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// KVM unavailable.
    #[error(transparent)]
    Kvm(#[from] KvmError),
    /// Guest memory could not be allocated.
    #[error("cannot allocate {memory_mib} MiB of guest memory")]
    Memory {
        /// Size.
        memory_mib: u64,
        /// Cause.
        #[source]
        source: RamError,
    },
    /// VM creation.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// Kernel loading.
    #[error(transparent)]
    Boot(#[from] BootError),
    /// vCPU creation.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    /// Sockets.
    #[error(transparent)]
    Socket(#[from] SocketError),
    /// Disks.
    #[error(transparent)]
    Disk(#[from] crate::devices::virtio::block::DiskError),
    /// The entropy device.
    #[error(transparent)]
    Rng(#[from] crate::devices::virtio::rng::RngError),
    /// A NIC.
    #[error(transparent)]
    Net(#[from] crate::devices::virtio::net::NetError),
    /// The snapshot to restore from is unusable (nothing ran).
    #[error("cannot restore the domain: {0}")]
    Restore(String),
    /// The balloon.
    #[error(transparent)]
    Balloon(#[from] crate::devices::virtio::balloon::BalloonError),
    /// Host resources (eventfd, epoll, pty, threads).
    #[error("{what}")]
    Host {
        /// What failed.
        what: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

fn host(what: &'static str) -> impl FnOnce(std::io::Error) -> MachineError {
    move |source| MachineError::Host { what, source }
}

/// The guest ejected vCPU `id`: its thread leaves KVM_RUN (a kick) and parks until plugged in again.
fn park_ejected(shared: &Shared, id: u32) {
    let Some(s) = usize::try_from(id).ok().and_then(|i| shared.vcpus.get(i)) else {
        return;
    };
    s.offline.store(true, std::sync::atomic::Ordering::SeqCst);
    crate::sys::signal_thread(
        s.tid.load(std::sync::atomic::Ordering::SeqCst),
        crate::vstate::vcpu::kick_signal(),
    );
    tracing::info!(vcpu = id, "vCPU ejected by the guest: parked");
}

/// How many vCPUs the machine can have (`maxvcpus`, at least `vcpus`).
fn possible_vcpus(cfg: &VmConfig) -> u32 {
    cfg.max_vcpus.max(cfg.vcpus)
}

/// Builds the machine for `cfg` and runs it to its outcome.
///
/// # Errors
/// [`MachineError`] for anything that prevents the guest from starting; once it runs, every stop is an
/// [`Outcome`].
pub fn run(cfg: &VmConfig, mut opts: MachineOptions) -> Result<Outcome, MachineError> {
    let kvm = match opts.opened.kvm.take() {
        Some(f) => KvmSystem::from_file(f)?,
        None => KvmSystem::open(&opts.kvm_path)?,
    };
    cfg.validate(crate::sys::host_memory_mib(), kvm.max_vcpus)?;
    let host_is_pvm = opts
        .opened
        .host_is_pvm
        .unwrap_or_else(crate::vstate::kvm::is_pvm);
    // TAPs first: a missing one is a configuration error before any KVM resource exists.
    let mut taps = Vec::with_capacity(cfg.nics.len());
    for n in &cfg.nics {
        taps.push(crate::devices::virtio::net::open_tap(n)?);
    }
    let ram = GuestRam::new(cfg.memory_mib << 20, RamBacking::Anonymous).map_err(|source| {
        MachineError::Memory {
            memory_mib: cfg.memory_mib,
            source,
        }
    })?;
    let mut vm = Vm::new(&kvm, ram.mmap())?;
    if opts.dirty_ring {
        vm.enable_dirty_ring(&kvm);
    }
    let vm = Arc::new(vm);
    // Before any thread starts (device threads come next), so every thread inherits the blocked mask
    // and SIGTERM/SIGINT/SIGHUP reach only the signalfd.
    let signals =
        crate::sys::termination_signalfd().map_err(host("cannot set up signal handling"))?;
    let mut virtio = DeviceManager::new();
    if !cfg.disks.is_empty() {
        ram.advise_huge_pages();
    }
    for d in &cfg.disks {
        crate::devices::virtio::block::attach(&mut virtio, vm.fd(), &ram, d, opts.io_uring)?;
    }
    if let Some(rng) = &cfg.rng {
        crate::devices::virtio::rng::attach(&mut virtio, vm.fd(), &ram, rng)?;
    }
    for (n, tap) in cfg.nics.iter().zip(taps) {
        crate::devices::virtio::net::attach(&mut virtio, vm.fd(), &ram, &n.spec, tap)?;
    }
    if let Some(target_mib) = cfg.balloon {
        let b = crate::devices::virtio::balloon::attach(
            &mut virtio,
            vm.fd(),
            &ram,
            cfg.memory_mib,
            target_mib,
        )?;
        virtio.set_balloon(b);
    }
    let supported = kvm.supported_cpuid()?;
    // The boot vCPUs exist before a restore reads its stream: during a live migration the rest
    // of the stream arrives with the source guest paused, and creating vCPUs is no longer on
    // that path. (An image has at least the configuration's `vcpus`: KVM never destroys one.)
    let mut vcpu_fds = Vec::new();
    if cfg.restore.is_some() {
        let entry = boot::EntryPoint::Pvh {
            entry: 0,
            start_info: 0,
        };
        for id in 0..cfg.vcpus {
            let fd =
                crate::vstate::vcpu::create(vm.fd(), &supported, id, possible_vcpus(cfg), entry)?;
            vm.map_dirty_ring(&fd)
                .map_err(host("cannot map a vCPU's dirty ring"))?;
            vcpu_fds.push(fd);
        }
    }
    let serial_irq =
        EventFd::new(libc::EFD_NONBLOCK).map_err(host("cannot create the UART eventfd"))?;
    vm.fd()
        .register_irqfd(&serial_irq, COM1_IRQ)
        .map_err(|e| MachineError::Host {
            what: "cannot register the UART irqfd",
            source: std::io::Error::from_raw_os_error(e.errno()),
        })?;
    let hub = ConsoleHub::new(opts.console == ConsoleMode::Stdio);
    // A restore's UART gets the image's state once it is read (`Devices::restore_serial`).
    let serial = SerialDevice::new(IrqTrigger(serial_irq), ConsoleSink(hub.clone()));
    let possible = possible_vcpus(cfg);
    let mut shared =
        Shared::new(possible, host_is_pvm).map_err(host("cannot create an eventfd"))?;
    shared.msr_list = kvm.msr_index_list();
    let shared = Arc::new(shared);
    let sci_vm = Arc::clone(&vm);
    let ged_vm = Arc::clone(&vm);
    let eject_shared = Arc::clone(&shared);
    let devices = Arc::new(
        Devices::new(
            serial,
            Box::new(move || sci_vm.pulse_irq_line(u32::from(SCI_IRQ))),
        )
        .with_virtio(virtio.transports())
        .with_cpu_hotplug(
            CpuHotplug::new(cfg.vcpus, possible),
            Box::new(move || ged_vm.pulse_irq_line(GED_GSI)),
            Box::new(move |id| park_ejected(&eject_shared, id)),
        ),
    );
    crate::vstate::vcpu::install_kick_handler().map_err(|e| MachineError::Host {
        what: "cannot install the vCPU kick signal handler",
        source: std::io::Error::from_raw_os_error(e.errno()),
    })?;
    // A restore's vCPU and device threads start now, held before their first instruction (the
    // vCPUs') or their body (the devices'), and are released once the image's state is applied:
    // during a live migration the rest of the stream arrives with the source guest paused, and
    // starting threads is no longer on that path. A restore that fails drops them unreleased:
    // they end without running anything.
    let held = match &cfg.restore {
        Some(_) => {
            let h = vcpus::Vcpus::start_held(vcpu_fds.len(), &devices, &shared, &cfg.vcpu_affinity)
                .map_err(host("cannot start the vCPU threads"))?;
            virtio
                .prestart_threads()
                .map_err(host("cannot start a device thread"))?;
            Some(h)
        }
        None => None,
    };

    // A restore reads the image now (RAM straight into guest memory; refused as a whole on any
    // damage), instead of loading a kernel; its state is applied below, before anything runs.
    let mut fresh = Vec::new();
    let mut image = cfg.restore.as_ref().map(restore::ImageReader::new);
    let restored = match image.as_mut() {
        Some(reader) => {
            if let Some(ready) = &cfg.restore_ready {
                restore::reading(ready);
                // A live migration: the code that applies the state is mapped now, while the
                // source still sends its pre-copy (`crate::warm`), not in the downtime.
                crate::warm::map_code_logged("restore");
            }
            restore::rehearse(
                &vm,
                &vcpu_fds,
                &shared.msr_list,
                &devices,
                &hub,
                cfg.memory_mib,
            )?;
            fresh = restore::read_fresh(&vcpu_fds)?;
            // The held vCPU threads wait busily once the source pauses: their wake-up on the
            // release took 30-1300 µs of guest-visible downtime when they slept.
            let spin = || {
                if let Some(h) = &held {
                    h.spin(restore::SPIN_LIMIT);
                }
            };
            Some(restore::read_image(reader, cfg, &ram, virtio.len(), &spin)?)
        }
        None => None,
    };
    let entry = match &restored {
        Some(_) => boot::EntryPoint::Pvh {
            entry: 0,
            start_info: 0,
        },
        None => boot::load(ram.mmap(), cfg, &virtio.dsdt_devices())?,
    };
    if let Some(snap) = &restored {
        devices
            .restore_serial(&snap.legacy.serial)
            .map_err(MachineError::Restore)?;
    }
    // vCPUs beyond `vcpus` start offline (plugged in later by `set-vcpus`); a restore recreates
    // every vCPU the image has, each online or offline as it was.
    let created = match &restored {
        Some(snap) => u32::try_from(snap.vcpus.len()).unwrap_or(u32::MAX),
        None => cfg.vcpus,
    };
    for (i, s) in shared.vcpus.iter().enumerate() {
        let offline = match &restored {
            Some(snap) => restore::starts_offline(snap, i),
            None => i >= usize::try_from(cfg.vcpus).unwrap_or(usize::MAX),
        };
        s.offline
            .store(offline, std::sync::atomic::Ordering::SeqCst);
    }

    for id in u32::try_from(vcpu_fds.len()).unwrap_or(u32::MAX)..created {
        let fd = crate::vstate::vcpu::create(vm.fd(), &supported, id, possible, entry)?;
        vm.map_dirty_ring(&fd)
            .map_err(host("cannot map a vCPU's dirty ring"))?;
        vcpu_fds.push(fd);
    }

    if let Some(snap) = &restored {
        tracing::debug!("restore: vCPUs created");
        restore::apply(snap, &vm, &vcpu_fds, &fresh, &devices, &hub)?;
        if cfg.lock_disks_at_start {
            disk_locks::take(&cfg.disks).map_err(MachineError::Restore)?;
        }
    }

    // From here on, resources outside the process exist: sockets (removed on drop) and threads.
    let console_given = opts.opened.console.take();
    let console_sock = match (&opts.console, &console_given) {
        (ConsoleMode::Unix(p), None) => Some(OwnedSocket::bind(p, "console")?),
        _ => None,
    };
    let pty = match &opts.console {
        ConsoleMode::Pty => {
            let (master, path) =
                crate::sys::open_pty().map_err(host("cannot open a pseudo-terminal"))?;
            eprintln!("domus-vmm: console pty: {}", path.display());
            Some(master)
        }
        _ => None,
    };
    if let Some(m) = &pty {
        hub.set_pty(m.try_clone().map_err(host("cannot duplicate the pty"))?);
    }
    let control_given = opts.opened.control.take();
    let control_sock = match (&opts.control, &control_given) {
        (Some(p), None) => Some(OwnedSocket::bind(p, "control")?),
        _ => None,
    };

    // A restore releases its (held, so quickly released) device threads before its vCPUs: a vCPU
    // woken on this CPU may run the guest at once, and nothing else should wait behind it.
    let devices_first = restored.is_some().then(|| {
        let s = virtio.start_threads();
        virtio.notify_all();
        s
    });
    // With `start_paused`, every vCPU acknowledged its pause before running a guest instruction.
    let vcpus = match held {
        Some(h) => h.release(
            vcpu_fds,
            &devices,
            &shared,
            opts.start_paused,
            &cfg.vcpu_affinity,
        ),
        None => vcpus::Vcpus::start(
            vcpu_fds,
            &devices,
            &shared,
            opts.start_paused,
            &cfg.vcpu_affinity,
        ),
    }
    .map_err(host("cannot start the vCPU threads"))?;
    shared.set_paused(opts.start_paused);
    let started = match devices_first {
        Some(s) => {
            tracing::info!(paused = opts.start_paused, "restored guest running");
            s
        }
        None => virtio.start_threads(),
    };
    // Freed only now: no part of the downtime (see `restore::ImageReader`).
    drop(image);
    let vcpus = RefCell::new(vcpus);
    let virtio = RefCell::new(virtio);

    let factory = hotplug::VcpuFactory {
        vm: &vm,
        supported: &supported,
        entry,
        possible,
        affinity: &cfg.vcpu_affinity,
    };
    let ctx = event_loop::LoopContext {
        hotplug: &factory,
        shared: &shared,
        devices: &devices,
        hub: &hub,
        vcpus: &vcpus,
        virtio: &virtio,
        memory_mib: cfg.memory_mib,
        vm: &vm,
        ram: &ram,
        disks: &cfg.disks,
        mem: ram.mmap(),
        console_listener: match console_given {
            Some(l) => Some(l),
            None => console_sock
                .as_ref()
                .map(OwnedSocket::listener)
                .transpose()
                .map_err(host("cannot duplicate the console socket"))?,
        },
        control_listener: match control_given {
            Some(l) => Some(l),
            None => control_sock
                .as_ref()
                .map(OwnedSocket::listener)
                .transpose()
                .map_err(host("cannot duplicate the control socket"))?,
        },
        pty,
        stdin: opts.console == ConsoleMode::Stdio,
        signals,
        linger: opts.outcome_linger,
        outcome_file: match opts.opened.outcome.take() {
            Some(f) => Some(event_loop::OutcomeFile::Open(f)),
            None => opts.outcome_file.clone().map(event_loop::OutcomeFile::Path),
        },
    };
    // The main thread's own filter from here on (event loop, console and control, later vCPU threads).
    crate::seccomp::enter(crate::seccomp::FilterKind::Main);
    let outcome = match started {
        Ok(()) => event_loop::run(ctx),
        Err(e) => Err(e),
    };
    vcpus.borrow_mut().stop();
    virtio.borrow_mut().stop();
    let outcome = outcome.map_err(host(
        "cannot start a device thread, or the main loop failed",
    ))?;
    drop(console_sock);
    drop(control_sock);
    // The VM (and with it the vCPU and VM fds) is dropped before the RAM that backs its memory slots.
    drop(devices);
    drop(virtio);
    drop(vm);
    drop(ram);
    Ok(outcome)
}
