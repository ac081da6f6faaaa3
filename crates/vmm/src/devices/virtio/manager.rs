//! The device manager: owns the virtio-mmio window (slots and their interrupt lines), wires each
//! device's irqfd and QueueNotify ioeventfds with KVM, announces the devices in the DSDT, and controls
//! the device threads (pause, resume, stop, save state; see [`crate::threads`]). Devices never pick
//! their own slot or GSI.
//!
//! Slot `i` is the 4 KiB page at [`WINDOW_BASE`] + `i` · [`SLOT_SIZE`] and interrupts on GSI
//! [`FIRST_GSI`] + `i` (edge, active high); each is a `Device (VRnn)` with `_HID "LNRO0005"` in
//! `\_SB_`. [`MAX_DEVICES`] (the GSIs 10..=23 the IOAPIC has left) is what configuration validation
//! checks against.

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use vmm_sys_util::eventfd::EventFd;

use super::device::VirtioDevice;
use super::mmio::{reg, MmioTransport};
use crate::threads::{AckError, ThreadAck, ThreadControl, ThreadEvent};
use crate::vstate::memory::GuestRam;

/// Base of the virtio-mmio window.
pub const WINDOW_BASE: u64 = crate::vstate::memory::VIRTIO_MMIO_BASE;
/// Bytes per slot.
pub const SLOT_SIZE: u64 = 0x1000;
/// First GSI of the window's devices.
pub const FIRST_GSI: u32 = 10;
/// Most virtio devices a machine can have: slots with a GSI of their own (GSIs 10..=23).
pub const MAX_DEVICES: usize = 14;

/// Guest address of slot `i`.
pub fn slot_base(i: usize) -> u64 {
    WINDOW_BASE + SLOT_SIZE * i as u64
}

/// GSI of slot `i`.
pub fn slot_gsi(i: usize) -> u32 {
    FIRST_GSI + u32::try_from(i).unwrap_or(0)
}

/// How the manager registers interrupts and notifications (KVM's VM fd; a recorder in tests).
pub trait EventRegistrar {
    /// Signalling `fd` raises `gsi`.
    ///
    /// # Errors
    /// The hypervisor refused.
    fn register_irqfd(&self, fd: &EventFd, gsi: u32) -> io::Result<()>;
    /// A guest write of `queue` to `addr` (QueueNotify) signals `fd`.
    ///
    /// # Errors
    /// The hypervisor refused.
    fn register_notify(&self, fd: &EventFd, addr: u64, queue: u32) -> io::Result<()>;
}

impl EventRegistrar for VmFd {
    fn register_irqfd(&self, fd: &EventFd, gsi: u32) -> io::Result<()> {
        VmFd::register_irqfd(self, fd, gsi).map_err(|e| io::Error::from_raw_os_error(e.errno()))
    }

    fn register_notify(&self, fd: &EventFd, addr: u64, queue: u32) -> io::Result<()> {
        self.register_ioevent(fd, &IoEventAddress::Mmio(addr), queue)
            .map_err(|e| io::Error::from_raw_os_error(e.errno()))
    }
}

/// A single-queue device's notifications match any written value (as before multi-queue devices).
struct AnyValue<'a>(&'a VmFd);

/// A device cannot be added.
#[derive(Debug, thiserror::Error)]
pub enum DeviceManagerError {
    /// All slots are taken.
    #[error(
        "cannot add {dev}: at most {MAX_DEVICES} virtio devices fit the machine's interrupt lines"
    )]
    TooMany {
        /// Device name.
        dev: String,
    },
    /// A queue size the device asked for is invalid.
    #[error("{dev}: invalid queue size")]
    Queue {
        /// Device name.
        dev: String,
        /// Cause.
        #[source]
        source: virtio_queue::Error,
    },
    /// eventfd, irqfd or ioeventfd.
    #[error("{dev}: {what}")]
    Host {
        /// Device name.
        dev: String,
        /// What failed.
        what: &'static str,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// What [`DeviceManager::add`] hands back to the device's constructor.
pub struct Attached {
    /// The slot's transport (register accesses, queues, interrupts).
    pub transport: Arc<MmioTransport>,
    /// One QueueNotify eventfd per queue, in queue order.
    pub notify: Vec<EventFd>,
    /// The slot number.
    pub slot: usize,
}

struct DeviceThread {
    control: ThreadControl,
    handle: Option<JoinHandle<()>>,
}

/// A device thread's body, waiting for [`DeviceManager::start_threads`].
type Body = Box<dyn FnOnce() + Send>;

/// The machine's virtio devices.
#[derive(Default)]
pub struct DeviceManager {
    slots: Vec<Arc<MmioTransport>>,
    pending: Vec<(crate::threads::ThreadKind, String, ThreadControl, Body)>,
    /// Started by [`DeviceManager::prestart_threads`], waiting for [`DeviceManager::start_threads`]
    /// (dropped unreleased, they end without running their bodies).
    held: Vec<(ThreadControl, crate::threads::Held<()>)>,
    threads: Vec<DeviceThread>,
    disk_stats: Vec<Arc<super::block::BlockStats>>,
    nic_stats: Vec<Arc<super::net::NetStats>>,
    /// Copies of every slot's QueueNotify eventfds (see [`DeviceManager::notify_all`]).
    notifies: Vec<Vec<EventFd>>,
    balloon: Option<super::balloon::BalloonHandle>,
}

/// How long a device thread may take to acknowledge an event (it finishes in-flight I/O first).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);

impl DeviceManager {
    /// An empty window.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts `device` in the next free slot: creates its transport, its irqfd on the slot's GSI and one
    /// QueueNotify ioeventfd per queue.
    ///
    /// # Errors
    /// [`DeviceManagerError`]: no slot left, a bad queue size, or KVM refusing a registration.
    pub fn add(
        &mut self,
        vm: &dyn EventRegistrar,
        ram: &GuestRam,
        name: String,
        device: Box<dyn VirtioDevice>,
    ) -> Result<Attached, DeviceManagerError> {
        let slot = self.slots.len();
        if slot >= MAX_DEVICES {
            return Err(DeviceManagerError::TooMany { dev: name });
        }
        let host = |what: &'static str| {
            let dev = name.clone();
            move |source| DeviceManagerError::Host { dev, what, source }
        };
        let irq = EventFd::new(libc::EFD_NONBLOCK).map_err(host("cannot create an eventfd"))?;
        vm.register_irqfd(&irq, slot_gsi(slot))
            .map_err(host("cannot register the irqfd"))?;
        let queues = device.queue_max_sizes().len();
        let mut notify = Vec::with_capacity(queues);
        for q in 0..queues {
            let fd = EventFd::new(libc::EFD_NONBLOCK).map_err(host("cannot create an eventfd"))?;
            let q = u32::try_from(q).unwrap_or(u32::MAX);
            vm.register_notify(&fd, slot_base(slot) + reg::QUEUE_NOTIFY, q)
                .map_err(host("cannot register the QueueNotify ioeventfd"))?;
            notify.push(fd);
        }
        let copies = notify
            .iter()
            .map(EventFd::try_clone)
            .collect::<io::Result<Vec<_>>>()
            .map_err(host("cannot duplicate an eventfd"))?;
        let transport = Arc::new(
            MmioTransport::new(name.clone(), device, ram.clone(), irq)
                .map_err(|source| DeviceManagerError::Queue { dev: name, source })?,
        );
        self.slots.push(Arc::clone(&transport));
        self.notifies.push(copies);
        Ok(Attached {
            transport,
            notify,
            slot,
        })
    }

    /// Signals every queue once, as a driver's QueueNotify would: after a restore, buffers the driver
    /// made available before the snapshot (whose notifications the old process consumed) get served.
    /// Only live devices (DRIVER_OK) are signalled.
    pub fn notify_all(&self) {
        for (t, fds) in self.slots.iter().zip(&self.notifies) {
            if t.lock().live() {
                for fd in fds {
                    let _ignored = fd.write(1);
                }
            }
        }
    }

    /// Registers the counters of the next disk (in the config's order) for [`DeviceManager::disk_stats`].
    pub fn add_disk_stats(&mut self, stats: Arc<super::block::BlockStats>) {
        self.disk_stats.push(stats);
    }

    /// Registers the counters of the next NIC (in the config's order) for [`DeviceManager::nic_stats`].
    pub fn add_nic_stats(&mut self, stats: Arc<super::net::NetStats>) {
        self.nic_stats.push(stats);
    }

    /// Records the machine's balloon (for `balloon-set` and `state`).
    pub fn set_balloon(&mut self, handle: super::balloon::BalloonHandle) {
        self.balloon = Some(handle);
    }

    /// The machine's balloon, if it has one.
    pub fn balloon(&self) -> Option<&super::balloon::BalloonHandle> {
        self.balloon.as_ref()
    }

    /// Every disk's counters now, in the config's order.
    pub fn disk_stats(&self) -> Vec<domus_vmm_api::DiskStats> {
        self.disk_stats.iter().map(|s| s.snapshot()).collect()
    }

    /// Every NIC's counters now, in the config's order.
    pub fn nic_stats(&self) -> Vec<domus_vmm_api::NicStats> {
        self.nic_stats.iter().map(|s| s.snapshot()).collect()
    }

    /// Hands the body of the device thread serving a slot to the manager, which starts it with
    /// [`DeviceManager::start_threads`] and then pauses, resumes and stops it through `control`.
    pub fn add_thread(&mut self, name: String, control: ThreadControl, body: Body) {
        self.add_thread_of(crate::threads::ThreadKind::Device, name, control, body);
    }

    /// As [`DeviceManager::add_thread`], for a thread of a kind with its own seccomp filter.
    pub fn add_thread_of(
        &mut self,
        kind: crate::threads::ThreadKind,
        name: String,
        control: ThreadControl,
        body: Body,
    ) {
        self.pending.push((kind, name, control, body));
    }

    /// Starts the device threads added so far (releasing those [`DeviceManager::prestart_threads`]
    /// started). The machine does this after its vCPU threads started, so the guest's first
    /// instructions do not wait behind device-thread start-up; notifications that arrive earlier
    /// wait in their eventfds.
    ///
    /// # Errors
    /// The host refused a thread (the threads already started keep running and stop on drop).
    pub fn start_threads(&mut self) -> io::Result<()> {
        for (control, held) in std::mem::take(&mut self.held) {
            let handle = held.release(())?;
            self.threads.push(DeviceThread {
                control,
                handle: Some(handle),
            });
        }
        for (kind, name, control, body) in std::mem::take(&mut self.pending) {
            let handle = crate::threads::spawn(kind, name, body)?;
            self.threads.push(DeviceThread {
                control,
                handle: Some(handle),
            });
        }
        Ok(())
    }

    /// Starts the threads of the devices added so far, each held before its body until
    /// [`DeviceManager::start_threads`] (a restore: thread start-up is then no part of a live
    /// migration's downtime; the bodies still run only after the devices' state was applied).
    ///
    /// # Errors
    /// The host refused a thread (those already started end when the manager is dropped).
    pub fn prestart_threads(&mut self) -> io::Result<()> {
        for (kind, name, control, body) in std::mem::take(&mut self.pending) {
            let held = crate::threads::spawn_held(kind, name, move |()| body())?;
            self.held.push((control, held));
        }
        Ok(())
    }

    /// The transports in slot order (for MMIO dispatch).
    pub fn transports(&self) -> Vec<Arc<MmioTransport>> {
        self.slots.clone()
    }

    /// Number of devices.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The DSDT's `Device (VRnn)` entries, one per slot in use: `_HID "LNRO0005"`, `_UID n`, `_CRS`
    /// with the 4 KiB register window and an edge-triggered, active-high GSI.
    pub fn dsdt_devices(&self) -> RawAml {
        dsdt_devices(self.slots.len())
    }

    /// Sends `event` to every device thread and waits for every acknowledgement.
    ///
    /// # Errors
    /// The first thread that did not acknowledge in time.
    pub fn broadcast(&mut self, event: ThreadEvent) -> Result<Vec<ThreadAck>, AckError> {
        let live = self.threads.iter_mut().filter(|t| !t.control.is_stopped());
        let live: Vec<&mut DeviceThread> = live.collect();
        for t in &live {
            t.control.send(event);
        }
        let deadline = Instant::now() + ACK_TIMEOUT;
        let mut acks = Vec::with_capacity(live.len());
        let mut first_err = None;
        for t in live {
            match t.control.wait_ack(event, deadline) {
                Ok(a) => acks.push(a),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(acks), Err)
    }

    /// Stops every device thread (bounded wait) and joins those that stopped.
    pub fn stop(&mut self) {
        if let Err(e) = self.broadcast(ThreadEvent::Stop) {
            tracing::warn!(error = %e, "a device thread did not stop in time; exiting without it");
        }
        for t in &mut self.threads {
            if t.control.is_stopped() {
                if let Some(h) = t.handle.take() {
                    let _ignored = h.join();
                }
            }
        }
    }
}

impl Drop for DeviceManager {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Already-encoded AML (a list of `Device` objects).
pub struct RawAml(pub Vec<u8>);

impl acpi_tables::Aml for RawAml {
    fn to_aml_bytes(&self, sink: &mut dyn acpi_tables::AmlSink) {
        sink.vec(&self.0);
    }
}

/// The DSDT entries for the first `slots` slots.
pub fn dsdt_devices(slots: usize) -> RawAml {
    use acpi_tables::{aml, Aml};
    let mut bytes = Vec::new();
    for i in 0..slots.min(MAX_DEVICES) {
        let base = u32::try_from(slot_base(i)).unwrap_or(0);
        let mem = aml::Memory32Fixed::new(true, base, u32::try_from(SLOT_SIZE).unwrap_or(0));
        let irq = aml::Interrupt::new(true, true, false, false, slot_gsi(i));
        let crs = aml::ResourceTemplate::new(vec![&mem, &irq]);
        let hid = aml::Name::new("_HID".into(), &"LNRO0005");
        let uid_v = u32::try_from(i).unwrap_or(0);
        let uid = aml::Name::new("_UID".into(), &uid_v);
        let crs = aml::Name::new("_CRS".into(), &crs);
        let name = format!("VR{i:02X}");
        aml::Device::new(name.as_str().into(), vec![&hid, &uid, &crs]).to_aml_bytes(&mut bytes);
    }
    RawAml(bytes)
}

impl EventRegistrar for AnyValue<'_> {
    fn register_irqfd(&self, fd: &EventFd, gsi: u32) -> io::Result<()> {
        EventRegistrar::register_irqfd(self.0, fd, gsi)
    }

    fn register_notify(&self, fd: &EventFd, addr: u64, _queue: u32) -> io::Result<()> {
        self.0
            .register_ioevent(fd, &IoEventAddress::Mmio(addr), NoDatamatch)
            .map_err(|e| io::Error::from_raw_os_error(e.errno()))
    }
}

/// The registrar for a device with `queues` queues on `vm`: a single queue's QueueNotify matches any
/// value written (what the block device always had), several queues match their index.
pub fn registrar_for(vm: &VmFd, queues: usize) -> Box<dyn EventRegistrar + '_> {
    if queues == 1 {
        Box::new(AnyValue(vm))
    } else {
        Box::new(vm)
    }
}

impl EventRegistrar for &VmFd {
    fn register_irqfd(&self, fd: &EventFd, gsi: u32) -> io::Result<()> {
        EventRegistrar::register_irqfd(*self, fd, gsi)
    }

    fn register_notify(&self, fd: &EventFd, addr: u64, queue: u32) -> io::Result<()> {
        EventRegistrar::register_notify(*self, fd, addr, queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::test_utils::{test_ram, RecordingRegistrar, TestDevice};

    #[test]
    fn slots_gsis_and_notify_addresses_are_assigned_in_order() {
        let ram = test_ram(1 << 20);
        let reg = RecordingRegistrar::default();
        let mut m = DeviceManager::new();
        let a = m
            .add(
                &reg,
                &ram,
                "a".into(),
                Box::new(TestDevice::new(2, 0, vec![], &[16])),
            )
            .unwrap();
        let b = m
            .add(
                &reg,
                &ram,
                "b".into(),
                Box::new(TestDevice::new(1, 0, vec![], &[8, 8, 4])),
            )
            .unwrap();
        assert_eq!((a.slot, b.slot), (0, 1));
        assert_eq!(b.notify.len(), 3);
        assert_eq!(*reg.irqfds.lock().unwrap(), [10, 11]);
        assert_eq!(
            *reg.ioevents.lock().unwrap(),
            [
                (0xd000_0050, 0),
                (0xd000_1050, 0),
                (0xd000_1050, 1),
                (0xd000_1050, 2)
            ]
        );
        assert_eq!(m.transports()[1].device_type(), 1);
        for i in 2..MAX_DEVICES {
            m.add(
                &reg,
                &ram,
                format!("d{i}"),
                Box::new(TestDevice::new(4, 0, vec![], &[8])),
            )
            .unwrap();
        }
        assert_eq!(reg.irqfds.lock().unwrap().last(), Some(&23));
        let full = m.add(
            &reg,
            &ram,
            "x".into(),
            Box::new(TestDevice::new(4, 0, vec![], &[8])),
        );
        assert!(matches!(full, Err(DeviceManagerError::TooMany { .. })));
    }

    #[test]
    fn dsdt_entries_name_window_and_gsi_of_each_slot() {
        let ram = test_ram(1 << 20);
        let reg = RecordingRegistrar::default();
        let mut m = DeviceManager::new();
        assert!(m.dsdt_devices().0.is_empty());
        for i in 0..2 {
            m.add(
                &reg,
                &ram,
                format!("d{i}"),
                Box::new(TestDevice::new(4, 0, vec![], &[8])),
            )
            .unwrap();
        }
        let aml = m.dsdt_devices().0;
        let count = |pat: &[u8]| aml.windows(pat.len()).filter(|w| *w == pat).count();
        assert_eq!(count(b"LNRO0005"), 2);
        assert_eq!(count(b"VR00"), 1);
        assert_eq!(count(b"VR01"), 1);
        // Memory32Fixed (0x86): read-write, base, length 4 KiB.
        let mut mem1 = vec![0x86, 9, 0, 1];
        mem1.extend_from_slice(&0xd000_1000u32.to_le_bytes());
        mem1.extend_from_slice(&0x1000u32.to_le_bytes());
        assert_eq!(count(&mem1), 1);
        // Extended Interrupt (0x89): consumer, edge, active high, exclusive; one GSI (11).
        let irq1 = [0x89, 6, 0, 0x03, 1, 11, 0, 0, 0];
        assert_eq!(count(&irq1), 1);
    }
}
