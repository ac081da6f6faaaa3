//! The machine: builds KVM, memory, devices and vCPUs from a [`VmConfig`], runs the guest until it stops,
//! serves the console and control sockets from the main thread, and returns the [`Outcome`].
//!
//! Order matters for "nothing left behind": everything that can fail on bad input (config limits, KVM
//! access, memory, kernel) is checked before any socket is created or thread started.

mod control_target;
pub mod coredump;
mod event_loop;
pub mod shared;
pub mod sockets;
pub mod vcpu_thread;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use vmm_sys_util::eventfd::EventFd;

use crate::boot::{self, BootError};
use crate::config::{host_memory_mib, ConfigError, VmConfig};
use crate::console::{ConsoleHub, ConsoleMode, ConsoleSink};
use crate::devices::acpi_pm::SCI_IRQ;
use crate::devices::legacy::serial::{IrqTrigger, SerialDevice, COM1_IRQ};
use crate::devices::Devices;
use crate::outcome::Outcome;
use crate::vstate::kvm::{KvmError, KvmSystem};
use crate::vstate::memory::create_guest_memory;
use crate::vstate::vcpu::VcpuError;
use crate::vstate::vm::{Vm, VmError};
use shared::Shared;
use sockets::{OwnedSocket, SocketError};

/// How to run (everything except the guest's own configuration).
#[derive(Debug, Clone)]
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
        source: vm_memory::mmap::FromRangesError,
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

/// Builds the machine for `cfg` and runs it to its outcome.
///
/// # Errors
/// [`MachineError`] for anything that prevents the guest from starting; once it runs, every stop is an
/// [`Outcome`].
pub fn run(cfg: &VmConfig, opts: &MachineOptions) -> Result<Outcome, MachineError> {
    let kvm = KvmSystem::open(&opts.kvm_path)?;
    cfg.validate(host_memory_mib(), kvm.max_vcpus)?;
    let mem = create_guest_memory(cfg.memory_mib << 20).map_err(|source| MachineError::Memory {
        memory_mib: cfg.memory_mib,
        source,
    })?;
    let vm = Arc::new(Vm::new(&kvm, &mem)?);
    let entry = boot::load(&mem, cfg)?;
    let disks = crate::devices::virtio::block::DiskSet::create(&vm, &mem, &cfg.disks)?;
    let supported = kvm.supported_cpuid()?;

    let serial_irq =
        EventFd::new(libc::EFD_NONBLOCK).map_err(host("cannot create the UART eventfd"))?;
    vm.fd()
        .register_irqfd(&serial_irq, COM1_IRQ)
        .map_err(|e| MachineError::Host {
            what: "cannot register the UART irqfd",
            source: std::io::Error::from_raw_os_error(e.errno()),
        })?;
    let hub = ConsoleHub::new(opts.console == ConsoleMode::Stdio);
    let serial = SerialDevice::new(IrqTrigger(serial_irq), ConsoleSink(hub.clone()));
    let sci_vm = Arc::clone(&vm);
    let devices = Arc::new(
        Devices::new(
            serial,
            Box::new(move || sci_vm.pulse_irq_line(u32::from(SCI_IRQ))),
        )
        .with_virtio(disks.transports()),
    );

    let mut vcpu_fds = Vec::new();
    for id in 0..cfg.vcpus {
        vcpu_fds.push(crate::vstate::vcpu::create(
            vm.fd(),
            &supported,
            id,
            cfg.vcpus,
            entry,
        )?);
    }

    // From here on, resources outside the process exist: sockets (removed on drop) and threads.
    let console_sock = match &opts.console {
        ConsoleMode::Unix(p) => Some(OwnedSocket::bind(p, "console")?),
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
    let control_sock = match &opts.control {
        Some(p) => Some(OwnedSocket::bind(p, "control")?),
        None => None,
    };

    let shared = Arc::new(Shared::new(cfg.vcpus).map_err(host("cannot create an eventfd"))?);
    // Set before any vCPU thread exists, so no guest instruction runs until `resume`.
    shared.set_paused(opts.start_paused);
    // Before any thread starts, so every thread inherits the blocked mask.
    let signals =
        crate::sys::termination_signalfd().map_err(host("cannot set up signal handling"))?;
    vcpu_thread::install_kick_handler().map_err(|e| MachineError::Host {
        what: "cannot install the vCPU kick signal handler",
        source: std::io::Error::from_raw_os_error(e.errno()),
    })?;
    let mut handles = Vec::new();
    for (id, fd) in vcpu_fds.into_iter().enumerate() {
        let (d, s) = (Arc::clone(&devices), Arc::clone(&shared));
        let h = std::thread::Builder::new()
            .name(format!("vcpu{id}"))
            .spawn(move || vcpu_thread::run(id, fd, d, s))
            .map_err(host("cannot start a vCPU thread"))?;
        handles.push(h);
    }

    let ctx = event_loop::LoopContext {
        shared: &shared,
        devices: &devices,
        hub: &hub,
        handles: &handles,
        memory_mib: cfg.memory_mib,
        mem: &mem,
        console_listener: console_sock
            .as_ref()
            .map(OwnedSocket::listener)
            .transpose()
            .map_err(host("cannot duplicate the console socket"))?,
        control_listener: control_sock
            .as_ref()
            .map(OwnedSocket::listener)
            .transpose()
            .map_err(host("cannot duplicate the control socket"))?,
        pty,
        stdin: opts.console == ConsoleMode::Stdio,
        signals,
        linger: opts.outcome_linger,
    };
    let outcome = event_loop::run(ctx).map_err(host("main event loop failed"))?;
    event_loop::stop_vcpus(&shared, handles);
    drop(console_sock);
    drop(control_sock);
    // `vm` (and with it the vCPU and VM fds) is dropped before `mem`, which backs its memory slots.
    drop(devices);
    drop(disks);
    drop(vm);
    drop(mem);
    Ok(outcome)
}
