//! The virtio-mmio register interface (virtio 1.2 §4.2.2), modern (version 2) only, serving any
//! [`VirtioDevice`] with any number of virtqueues.
//!
//! The vCPU threads call [`MmioTransport::read`] / [`MmioTransport::write`] for accesses to the slot;
//! the device thread locks the same state to use its queues. The handshake is checked: FEATURES_OK
//! sticks only if the driver accepted a subset of the offered features including VERSION_1, and
//! DRIVER_OK with an enabled queue that does not fit guest RAM (or with no queue at all) sets
//! DEVICE_NEEDS_RESET, as does a device that refuses activation. Writing 0 to Status resets the
//! transport and the device. Register offsets and status bits come from `virtio-bindings`.

use std::sync::{Mutex, MutexGuard};

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FEATURES_OK,
    VIRTIO_F_VERSION_1,
};
use virtio_bindings::virtio_mmio as mmio;
use virtio_bindings::virtio_ring::VRING_AVAIL_F_NO_INTERRUPT;
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::EventFd;

use super::device::{ConfigWrite, VirtioDevice};
use crate::devices::guest_log::GuestLog;
use crate::vstate::memory::GuestRam;

/// "virt" (VIRTIO_MMIO_MAGIC_VALUE's expected contents, virtio 1.2 §4.2.2).
pub const MAGIC: u32 = 0x7472_6976;
/// Our vendor id ("DOMO"; any value works: QEMU uses 0x554d4551).
pub const VENDOR_ID: u32 = 0x4f4d_4f44;
/// VIRTIO_F_VERSION_1 as a feature mask.
pub const F_VERSION_1: u64 = 1 << VIRTIO_F_VERSION_1;

/// Device status bits (virtio 1.2 §2.1), from virtio-bindings.
pub mod status {
    use virtio_bindings::virtio_config as c;
    /// ACKNOWLEDGE.
    pub const ACKNOWLEDGE: u32 = c::VIRTIO_CONFIG_S_ACKNOWLEDGE;
    /// DRIVER.
    pub const DRIVER: u32 = c::VIRTIO_CONFIG_S_DRIVER;
    /// DRIVER_OK.
    pub const DRIVER_OK: u32 = c::VIRTIO_CONFIG_S_DRIVER_OK;
    /// FEATURES_OK.
    pub const FEATURES_OK: u32 = c::VIRTIO_CONFIG_S_FEATURES_OK;
    /// DEVICE_NEEDS_RESET.
    pub const NEEDS_RESET: u32 = c::VIRTIO_CONFIG_S_NEEDS_RESET;
    /// FAILED.
    pub const FAILED: u32 = c::VIRTIO_CONFIG_S_FAILED;
}

/// Register offsets (virtio-bindings' `VIRTIO_MMIO_*`, widened for address arithmetic).
pub mod reg {
    use virtio_bindings::virtio_mmio as m;
    /// MagicValue.
    pub const MAGIC: u64 = m::VIRTIO_MMIO_MAGIC_VALUE as u64;
    /// Version.
    pub const VERSION: u64 = m::VIRTIO_MMIO_VERSION as u64;
    /// DeviceID.
    pub const DEVICE_ID: u64 = m::VIRTIO_MMIO_DEVICE_ID as u64;
    /// VendorID.
    pub const VENDOR_ID: u64 = m::VIRTIO_MMIO_VENDOR_ID as u64;
    /// DeviceFeatures.
    pub const DEVICE_FEATURES: u64 = m::VIRTIO_MMIO_DEVICE_FEATURES as u64;
    /// DeviceFeaturesSel.
    pub const DEVICE_FEATURES_SEL: u64 = m::VIRTIO_MMIO_DEVICE_FEATURES_SEL as u64;
    /// DriverFeatures.
    pub const DRIVER_FEATURES: u64 = m::VIRTIO_MMIO_DRIVER_FEATURES as u64;
    /// DriverFeaturesSel.
    pub const DRIVER_FEATURES_SEL: u64 = m::VIRTIO_MMIO_DRIVER_FEATURES_SEL as u64;
    /// QueueSel.
    pub const QUEUE_SEL: u64 = m::VIRTIO_MMIO_QUEUE_SEL as u64;
    /// QueueNumMax.
    pub const QUEUE_NUM_MAX: u64 = m::VIRTIO_MMIO_QUEUE_NUM_MAX as u64;
    /// QueueNum.
    pub const QUEUE_NUM: u64 = m::VIRTIO_MMIO_QUEUE_NUM as u64;
    /// QueueReady.
    pub const QUEUE_READY: u64 = m::VIRTIO_MMIO_QUEUE_READY as u64;
    /// QueueNotify (an ioeventfd per queue: writes reach us only if it is missing).
    pub const QUEUE_NOTIFY: u64 = m::VIRTIO_MMIO_QUEUE_NOTIFY as u64;
    /// InterruptStatus.
    pub const INTERRUPT_STATUS: u64 = m::VIRTIO_MMIO_INTERRUPT_STATUS as u64;
    /// InterruptACK.
    pub const INTERRUPT_ACK: u64 = m::VIRTIO_MMIO_INTERRUPT_ACK as u64;
    /// Status.
    pub const STATUS: u64 = m::VIRTIO_MMIO_STATUS as u64;
    /// QueueDescLow.
    pub const QUEUE_DESC_LOW: u64 = m::VIRTIO_MMIO_QUEUE_DESC_LOW as u64;
    /// QueueDescHigh.
    pub const QUEUE_DESC_HIGH: u64 = m::VIRTIO_MMIO_QUEUE_DESC_HIGH as u64;
    /// QueueDriverLow.
    pub const QUEUE_AVAIL_LOW: u64 = m::VIRTIO_MMIO_QUEUE_AVAIL_LOW as u64;
    /// QueueDriverHigh.
    pub const QUEUE_AVAIL_HIGH: u64 = m::VIRTIO_MMIO_QUEUE_AVAIL_HIGH as u64;
    /// QueueDeviceLow.
    pub const QUEUE_USED_LOW: u64 = m::VIRTIO_MMIO_QUEUE_USED_LOW as u64;
    /// QueueDeviceHigh.
    pub const QUEUE_USED_HIGH: u64 = m::VIRTIO_MMIO_QUEUE_USED_HIGH as u64;
    /// ConfigGeneration.
    pub const CONFIG_GENERATION: u64 = m::VIRTIO_MMIO_CONFIG_GENERATION as u64;
    /// Device-specific configuration space.
    pub const CONFIG: u64 = m::VIRTIO_MMIO_CONFIG as u64;
}

/// InterruptStatus bit: used buffer notification.
pub const INT_VRING: u32 = mmio::VIRTIO_MMIO_INT_VRING;
/// InterruptStatus bit: configuration change (also raised with DEVICE_NEEDS_RESET).
pub const INT_CONFIG: u32 = mmio::VIRTIO_MMIO_INT_CONFIG;

/// Mutable transport state (behind the transport's lock).
pub struct TransportState {
    /// Device status register.
    pub status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    /// Features the driver wrote.
    pub driver_features: u64,
    queue_sel: u32,
    /// The virtqueues, in queue order.
    pub queues: Vec<Queue>,
    /// InterruptStatus.
    pub interrupt_status: u32,
    /// Incremented by every reset: completions of requests popped before a reset are dropped.
    pub generation: u64,
    /// ConfigGeneration (bumped on every configuration change).
    config_generation: u32,
    device: Box<dyn VirtioDevice>,
}

impl TransportState {
    /// Whether the device may process its queues.
    pub fn live(&self) -> bool {
        self.status & status::DRIVER_OK != 0 && self.status & status::NEEDS_RESET == 0
    }

    /// The device model.
    pub fn device(&self) -> &dyn VirtioDevice {
        &*self.device
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        let i = usize::try_from(self.queue_sel).ok()?;
        self.queues.get_mut(i)
    }
}

pub use super::transport_state::{QueueSnapshot, TransportSnapshot};

/// One virtio-mmio slot.
pub struct MmioTransport {
    name: String,
    device_type: u32,
    device_features: u64,
    queue_max: Vec<u16>,
    ram: GuestRam,
    irq: EventFd,
    log: GuestLog,
    state: Mutex<TransportState>,
}

impl MmioTransport {
    /// A transport for `device` (VERSION_1 is added to its features), interrupting through `irq`.
    ///
    /// # Errors
    /// A queue's maximum size is not a power of two in 1..=32768.
    pub fn new(
        name: String,
        device: Box<dyn VirtioDevice>,
        ram: GuestRam,
        irq: EventFd,
    ) -> Result<Self, virtio_queue::Error> {
        let queue_max = device.queue_max_sizes().to_vec();
        let queues = queue_max
            .iter()
            .map(|&m| Queue::new(m))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            log: GuestLog::new(&name),
            name,
            device_type: device.device_type(),
            device_features: device.features() | F_VERSION_1,
            queue_max,
            ram,
            irq,
            state: Mutex::new(TransportState {
                status: 0,
                device_features_sel: 0,
                driver_features_sel: 0,
                driver_features: 0,
                queue_sel: 0,
                queues,
                interrupt_status: 0,
                generation: 0,
                config_generation: 0,
                device,
            }),
        })
    }

    /// The device's name in logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device type.
    pub fn device_type(&self) -> u32 {
        self.device_type
    }

    /// Guest RAM.
    pub fn ram(&self) -> &GuestRam {
        &self.ram
    }

    /// The device's rate-limited log.
    pub fn log(&self) -> &GuestLog {
        &self.log
    }

    /// Locks the state.
    pub fn lock(&self) -> MutexGuard<'_, TransportState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Raises `bits` in InterruptStatus and signals the irqfd.
    pub fn interrupt(&self, st: &mut TransportState, bits: u32) {
        st.interrupt_status |= bits;
        if let Err(e) = self.irq.write(1) {
            self.log.host_error("signalling the irqfd", &e);
        }
    }

    /// Marks the device broken (DEVICE_NEEDS_RESET) and tells the driver.
    pub fn needs_reset(&self, st: &mut TransportState, why: &dyn std::fmt::Display) {
        self.log.guest_error(why);
        if st.status & status::NEEDS_RESET == 0 {
            st.status |= status::NEEDS_RESET;
            if st.status & status::DRIVER_OK != 0 {
                self.interrupt(st, INT_CONFIG);
            }
        }
    }

    /// The device changed its configuration space: bump ConfigGeneration and raise a configuration
    /// interrupt (virtio 1.2 §2.5.1, §4.2.2).
    pub fn config_changed(&self, st: &mut TransportState) {
        st.config_generation = st.config_generation.wrapping_add(1);
        if st.live() {
            self.interrupt(st, INT_CONFIG);
        }
    }

    /// Publishes a used entry on queue `queue` (unless the device was reset since the chain was
    /// popped: `generation`), reports the used-ring write to the dirty log, and interrupts unless
    /// the driver asked for none.
    pub fn add_used(&self, queue: usize, head: u16, generation: u64, len: u32) {
        let mut st = self.lock();
        if st.generation != generation || !st.live() {
            return;
        }
        let mem = self.ram.mmap();
        let Some(q) = st.queues.get_mut(queue) else {
            return;
        };
        if let Err(e) = q.add_used(mem, head, len) {
            self.needs_reset(&mut st, &format_args!("used ring unusable: {e}"));
            return;
        }
        let (used, size) = (q.used_ring(), usize::from(q.size()));
        // The used element and the index virtio-queue just wrote (virtio 1.2 §2.7.8).
        self.ram.mark_dirty(GuestAddress(used), 6 + 8 * size);
        // VIRTQ_AVAIL_F_NO_INTERRUPT (virtio-queue leaves this flag to the device).
        let flags: u16 = self.ram.read_obj(GuestAddress(q.avail_ring())).unwrap_or(0);
        let no_interrupt = flags & u16::try_from(VRING_AVAIL_F_NO_INTERRUPT).unwrap_or(1) != 0;
        if !no_interrupt && q.needs_notification(mem).unwrap_or(true) {
            self.interrupt(&mut st, INT_VRING);
        }
    }

    /// The device model's save-state hook.
    pub fn save_state(&self) -> Vec<u8> {
        self.lock().device.save_state()
    }

    /// The whole slot's state: transport registers, queues (virtio-queue's `QueueState`) and the
    /// device's own ([`VirtioDevice::save_state`]). Taken with the device thread paused, i.e. with no
    /// request in flight.
    pub fn snapshot(&self) -> TransportSnapshot {
        let st = self.lock();
        TransportSnapshot {
            device_type: self.device_type,
            status: st.status,
            device_features_sel: st.device_features_sel,
            driver_features_sel: st.driver_features_sel,
            driver_features: st.driver_features,
            queue_sel: st.queue_sel,
            interrupt_status: st.interrupt_status,
            config_generation: st.config_generation,
            queues: st
                .queues
                .iter()
                .map(|q| QueueSnapshot::from(q.state()))
                .collect(),
            device: st.device.save_state(),
        }
    }

    /// Puts the slot into the state `snap` describes (before any vCPU or device thread runs): the
    /// queues, the registers, then a live device is re-activated with its negotiated features and
    /// given its own state. Pending interrupt bits are signalled again.
    ///
    /// # Errors
    /// The snapshot is for another device type or queue layout, or the device refused it.
    pub fn restore(&self, snap: &TransportSnapshot) -> Result<(), String> {
        if snap.device_type != self.device_type || snap.queues.len() != self.queue_max.len() {
            return Err(format!(
                "{}: saved device type {} with {} queues, this machine has type {} with {}",
                self.name,
                snap.device_type,
                snap.queues.len(),
                self.device_type,
                self.queue_max.len()
            ));
        }
        let mut st = self.lock();
        let st = &mut *st;
        st.queues = snap
            .queues
            .iter()
            .map(|q| Queue::try_from(q.to_state()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: saved queue refused: {e}", self.name))?;
        st.status = snap.status;
        st.device_features_sel = snap.device_features_sel;
        st.driver_features_sel = snap.driver_features_sel;
        st.driver_features = snap.driver_features;
        st.queue_sel = snap.queue_sel;
        st.config_generation = snap.config_generation;
        if st.live() {
            st.device
                .activate(st.driver_features)
                .map_err(|e| format!("{}: re-activation refused: {e}", self.name))?;
        }
        let changed = st
            .device
            .restore_state(&snap.device)
            .map_err(|e| format!("{}: {e}", self.name))?;
        if changed {
            st.config_generation = st.config_generation.wrapping_add(1);
        }
        let pending = snap.interrupt_status | if changed { INT_CONFIG } else { 0 };
        if pending != 0 && st.live() {
            self.interrupt(st, pending);
        }
        Ok(())
    }

    /// A guest read of `data.len()` bytes at `offset` into the slot.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        let st = self.lock();
        if offset >= reg::CONFIG {
            st.device.read_config(offset - reg::CONFIG, data);
            return;
        }
        let q = usize::try_from(st.queue_sel)
            .ok()
            .and_then(|i| st.queues.get(i).zip(self.queue_max.get(i)));
        let v: u32 = match offset {
            reg::MAGIC => MAGIC,
            reg::VERSION => 2,
            reg::DEVICE_ID => self.device_type,
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => match st.device_features_sel {
                0 => low32(self.device_features),
                1 => low32(self.device_features >> 32),
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => q.map_or(0, |(_, max)| u32::from(*max)),
            reg::QUEUE_READY => q.map_or(0, |(q, _)| u32::from(q.ready())),
            reg::INTERRUPT_STATUS => st.interrupt_status,
            reg::STATUS => st.status,
            reg::CONFIG_GENERATION => st.config_generation,
            _ => 0,
        };
        fill(data, v);
    }

    /// A guest write at `offset` into the slot.
    pub fn write(&self, offset: u64, data: &[u8]) {
        if offset >= reg::CONFIG {
            let mut st = self.lock();
            match st.device.write_config(offset - reg::CONFIG, data) {
                ConfigWrite::Applied => self.config_changed(&mut st),
                ConfigWrite::Stored => {}
                ConfigWrite::Ignored => self.log.guest_error(&format_args!(
                    "write to read-only config space at {offset:#x}"
                )),
            }
            return;
        }
        let Ok(b) = <[u8; 4]>::try_from(data) else {
            self.log.guest_error(&format_args!(
                "{}-byte register write at {offset:#x} (must be 4)",
                data.len()
            ));
            return;
        };
        let v = u32::from_le_bytes(b);
        let mut st = self.lock();
        let st = &mut *st;
        let configurable =
            st.status & status::FEATURES_OK != 0 && st.status & status::DRIVER_OK == 0;
        let q = configurable && usize::try_from(st.queue_sel).is_ok_and(|i| i < st.queues.len());
        match offset {
            reg::DEVICE_FEATURES_SEL => st.device_features_sel = v,
            reg::DRIVER_FEATURES_SEL => st.driver_features_sel = v,
            reg::DRIVER_FEATURES
                if st.status & VIRTIO_CONFIG_S_DRIVER != 0
                    && st.status & VIRTIO_CONFIG_S_FEATURES_OK == 0 =>
            {
                match st.driver_features_sel {
                    0 => st.driver_features = (st.driver_features & !0xffff_ffff) | u64::from(v),
                    1 => {
                        st.driver_features =
                            (st.driver_features & 0xffff_ffff) | (u64::from(v) << 32);
                    }
                    _ => {}
                }
            }
            reg::QUEUE_SEL => st.queue_sel = v,
            reg::QUEUE_NUM
            | reg::QUEUE_READY
            | reg::QUEUE_DESC_LOW
            | reg::QUEUE_DESC_HIGH
            | reg::QUEUE_AVAIL_LOW
            | reg::QUEUE_AVAIL_HIGH
            | reg::QUEUE_USED_LOW
            | reg::QUEUE_USED_HIGH
                if q =>
            {
                self.write_queue(st, offset, v);
            }
            reg::QUEUE_NOTIFY => {
                // Only without an ioeventfd; the device thread polls on the ioeventfds.
                self.log.guest_error(&"QueueNotify reached userspace");
            }
            reg::INTERRUPT_ACK => st.interrupt_status &= !v,
            reg::STATUS => self.write_status(st, v),
            _ => self.log.guest_error(&format_args!(
                "ignored write {v:#x} to register {offset:#x} (status {:#x})",
                st.status
            )),
        }
    }

    /// A queue register of the selected queue (only between FEATURES_OK and DRIVER_OK).
    fn write_queue(&self, st: &mut TransportState, offset: u64, v: u32) {
        let Some(queue) = st.selected_queue() else {
            return;
        };
        // The try_ setters: virtio-queue's plain setters log every bad value unthrottled.
        let result = match offset {
            reg::QUEUE_NUM => queue.try_set_size(u16::try_from(v).unwrap_or(0)),
            reg::QUEUE_READY => {
                queue.set_ready(v == 1);
                Ok(())
            }
            reg::QUEUE_DESC_LOW | reg::QUEUE_DESC_HIGH => {
                let a = merge(queue.desc_table(), offset == reg::QUEUE_DESC_HIGH, v);
                queue.try_set_desc_table_address(GuestAddress(a))
            }
            reg::QUEUE_AVAIL_LOW | reg::QUEUE_AVAIL_HIGH => {
                let a = merge(queue.avail_ring(), offset == reg::QUEUE_AVAIL_HIGH, v);
                queue.try_set_avail_ring_address(GuestAddress(a))
            }
            _ => {
                let a = merge(queue.used_ring(), offset == reg::QUEUE_USED_HIGH, v);
                queue.try_set_used_ring_address(GuestAddress(a))
            }
        };
        if let Err(e) = result {
            self.log.guest_error(&format_args!(
                "queue {} register {offset:#x} = {v:#x}: {e}",
                st.queue_sel
            ));
        }
    }

    fn write_status(&self, st: &mut TransportState, v: u32) {
        if v == 0 {
            st.status = 0;
            st.driver_features = 0;
            st.device_features_sel = 0;
            st.driver_features_sel = 0;
            st.queue_sel = 0;
            st.interrupt_status = 0;
            st.queues.iter_mut().for_each(QueueT::reset);
            st.generation = st.generation.wrapping_add(1);
            st.device.reset();
            return;
        }
        // Bits only get set, never cleared, except by a reset (§2.1.2).
        if v & st.status != st.status {
            let old = st.status;
            self.needs_reset(st, &format_args!("status {v:#x} clears bits of {old:#x}"));
            return;
        }
        let new = v & !st.status;
        if new & VIRTIO_CONFIG_S_FEATURES_OK != 0 {
            let f = st.driver_features;
            if f & !self.device_features != 0 || f & F_VERSION_1 == 0 {
                self.log.guest_error(&format_args!(
                    "driver features {f:#x} not acceptable (offered {:#x})",
                    self.device_features
                ));
                st.status = v & !VIRTIO_CONFIG_S_FEATURES_OK;
                return;
            }
        }
        if new & VIRTIO_CONFIG_S_DRIVER_OK != 0 {
            self.driver_ok(st, v);
            return;
        }
        st.status = v;
    }

    /// DRIVER_OK: checks the queues, activates the device.
    fn driver_ok(&self, st: &mut TransportState, v: u32) {
        st.status = v;
        if v & VIRTIO_CONFIG_S_FEATURES_OK == 0 {
            self.needs_reset(st, &"DRIVER_OK without FEATURES_OK");
            return;
        }
        let ready = st.queues.iter().filter(|q| q.ready()).count();
        if ready == 0
            || st
                .queues
                .iter()
                .any(|q| q.ready() && !queue_fits(q, &self.ram))
        {
            self.needs_reset(
                st,
                &"DRIVER_OK with no ready queue, or a ready queue not in guest RAM",
            );
            return;
        }
        st.queues.iter_mut().for_each(|q| q.set_event_idx(false));
        let features = st.driver_features;
        if let Err(e) = st.device.activate(features) {
            self.needs_reset(st, &e);
        }
    }
}

/// The low 32 bits.
fn low32(v: u64) -> u32 {
    u32::try_from(v & 0xffff_ffff).unwrap_or(0)
}

/// Replaces the low or high half of `old` with `v`.
fn merge(old: u64, high: bool, v: u32) -> u64 {
    if high {
        (old & 0xffff_ffff) | (u64::from(v) << 32)
    } else {
        (old & !0xffff_ffff) | u64::from(v)
    }
}

/// The queue's three areas lie in guest RAM (each inside one region); this is virtio-queue's
/// `is_valid` without its unthrottled error log.
fn queue_fits(q: &Queue, ram: &GuestRam) -> bool {
    let n = usize::from(q.size());
    let fits = |a: u64, len: usize| ram.is_ram(GuestAddress(a), len);
    n > 0
        && fits(q.desc_table(), 16 * n)
        && fits(q.avail_ring(), 6 + 2 * n)
        && fits(q.used_ring(), 6 + 8 * n)
}

fn fill(data: &mut [u8], v: u32) {
    let bytes = v.to_le_bytes();
    for (i, b) in data.iter_mut().enumerate() {
        *b = bytes.get(i).copied().unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::devices::virtio::test_utils::{test_ram, TestDevice};

    fn transport() -> MmioTransport {
        transport_with(TestDevice::new(2, 1 << 9, vec![1, 2, 3, 4], &[16]))
    }

    fn transport_with(dev: TestDevice) -> MmioTransport {
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        MmioTransport::new("t".into(), Box::new(dev), test_ram(1 << 20), irq).unwrap()
    }

    fn rd(t: &MmioTransport, off: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn wr(t: &MmioTransport, off: u64, v: u32) {
        t.write(off, &v.to_le_bytes());
    }

    #[test]
    fn identity_and_config() {
        let t = transport();
        assert_eq!(rd(&t, reg::MAGIC), MAGIC);
        assert_eq!(rd(&t, reg::VERSION), 2);
        assert_eq!(rd(&t, reg::DEVICE_ID), 2);
        assert_eq!(rd(&t, reg::CONFIG), 0x0403_0201);
        assert_eq!(rd(&t, reg::CONFIG + 4), 0);
        wr(&t, reg::DEVICE_FEATURES_SEL, 1);
        assert_eq!(rd(&t, reg::DEVICE_FEATURES), 1);
    }

    #[test]
    fn handshake_rules() {
        let t = transport();
        wr(&t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        // No VERSION_1: FEATURES_OK does not stick.
        wr(&t, reg::DRIVER_FEATURES, 1 << 9);
        wr(
            &t,
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
        assert_eq!(rd(&t, reg::STATUS) & status::FEATURES_OK, 0);
        // An unoffered feature: refused too.
        wr(&t, reg::DRIVER_FEATURES_SEL, 1);
        wr(&t, reg::DRIVER_FEATURES, 1 | 2);
        wr(
            &t,
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
        assert_eq!(rd(&t, reg::STATUS) & status::FEATURES_OK, 0);
        wr(&t, reg::DRIVER_FEATURES, 1);
        let ok = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        wr(&t, reg::STATUS, ok);
        assert_eq!(rd(&t, reg::STATUS), ok);
        // DRIVER_OK with a queue outside RAM: NEEDS_RESET and a config interrupt.
        wr(&t, reg::QUEUE_NUM, 16);
        wr(&t, reg::QUEUE_DESC_LOW, 0x7000_0000);
        wr(&t, reg::QUEUE_AVAIL_LOW, 0x2000);
        wr(&t, reg::QUEUE_USED_LOW, 0x3000);
        wr(&t, reg::QUEUE_READY, 1);
        wr(&t, reg::STATUS, ok | status::DRIVER_OK);
        assert_ne!(rd(&t, reg::STATUS) & status::NEEDS_RESET, 0);
        assert!(!t.lock().live());
        // Reset clears everything; a valid queue then goes live.
        wr(&t, reg::STATUS, 0);
        assert_eq!(rd(&t, reg::STATUS), 0);
        assert_eq!(t.lock().generation, 1);
        wr(&t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        wr(&t, reg::DRIVER_FEATURES_SEL, 1);
        wr(&t, reg::DRIVER_FEATURES, 1);
        wr(&t, reg::STATUS, ok);
        wr(&t, reg::QUEUE_NUM, 16);
        wr(&t, reg::QUEUE_DESC_LOW, 0x1000);
        wr(&t, reg::QUEUE_AVAIL_LOW, 0x2000);
        wr(&t, reg::QUEUE_USED_LOW, 0x3000);
        wr(&t, reg::QUEUE_READY, 1);
        wr(&t, reg::STATUS, ok | status::DRIVER_OK);
        assert!(t.lock().live());
        // Queue registers are frozen after DRIVER_OK; clearing status bits needs a reset.
        wr(&t, reg::QUEUE_DESC_LOW, 0x7000_0000);
        assert_eq!(t.lock().queues[0].desc_table(), 0x1000);
        wr(&t, reg::STATUS, status::ACKNOWLEDGE);
        assert_ne!(rd(&t, reg::STATUS) & status::NEEDS_RESET, 0);
        // Narrow writes and config writes are ignored.
        t.write(reg::STATUS, &[0]);
        t.write(reg::CONFIG, &[9, 9, 9, 9]);
        assert_eq!(rd(&t, reg::CONFIG), 0x0403_0201);
    }

    fn handshake(t: &MmioTransport, queues: &[(u32, u64)]) {
        let ok = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        wr(t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        wr(t, reg::DRIVER_FEATURES_SEL, 1);
        wr(t, reg::DRIVER_FEATURES, 1);
        wr(t, reg::STATUS, ok);
        for &(q, base) in queues {
            wr(t, reg::QUEUE_SEL, q);
            wr(t, reg::QUEUE_NUM, 8);
            wr(t, reg::QUEUE_DESC_LOW, u32::try_from(base).unwrap());
            wr(
                t,
                reg::QUEUE_AVAIL_LOW,
                u32::try_from(base + 0x400).unwrap(),
            );
            wr(t, reg::QUEUE_USED_LOW, u32::try_from(base + 0x800).unwrap());
            wr(t, reg::QUEUE_READY, 1);
        }
        wr(t, reg::STATUS, ok | status::DRIVER_OK);
    }

    #[test]
    fn serves_every_queue_of_the_device() {
        let t = transport_with(TestDevice::new(4, 0, Vec::new(), &[64, 16, 8]));
        for (q, max) in [(0, 64), (1, 16), (2, 8), (3, 0)] {
            wr(&t, reg::QUEUE_SEL, q);
            assert_eq!(rd(&t, reg::QUEUE_NUM_MAX), max, "queue {q}");
        }
        // Queues 0 and 2 enabled, 1 left off (allowed), then a write to a queue that does not exist.
        handshake(&t, &[(0, 0x1000), (2, 0x2000)]);
        let st = t.lock();
        assert!(st.live());
        assert_eq!(st.queues[2].desc_table(), 0x2000);
        assert!(!st.queues[1].ready());
        assert_eq!(st.queues.len(), 3);
        drop(st);
        assert_eq!(t.log().guest_errors(), 0);
        wr(&t, reg::QUEUE_SEL, 3);
        wr(&t, reg::QUEUE_READY, 1);
        assert_eq!(t.lock().device().device_type(), 4);
    }

    #[test]
    fn activation_reset_and_config_generation_reach_the_device() {
        let dev = TestDevice::new(4, 0, vec![5; 8], &[8]).with_writable_config();
        let probe = dev.probe();
        let t = transport_with(dev);
        handshake(&t, &[(0, 0x1000)]);
        assert_eq!(probe.activated(), Some(F_VERSION_1));
        assert_eq!(rd(&t, reg::CONFIG_GENERATION), 0);
        // The test device accepts config writes: the generation moves and a config interrupt is raised.
        t.write(reg::CONFIG, &[1]);
        assert_eq!(rd(&t, reg::CONFIG_GENERATION), 1);
        assert_ne!(rd(&t, reg::INTERRUPT_STATUS) & INT_CONFIG, 0);
        assert_eq!(rd(&t, reg::CONFIG) & 0xff, 1);
        wr(&t, reg::STATUS, 0);
        assert_eq!(probe.resets(), 1);
        assert_eq!(probe.activated(), None);
        // A device refusing activation leaves NEEDS_RESET.
        probe.refuse_activation();
        handshake(&t, &[(0, 0x1000)]);
        assert_ne!(rd(&t, reg::STATUS) & status::NEEDS_RESET, 0);
    }
}
