//! The virtio-mmio register interface (virtio 1.2 §4.2.2), modern (version 2) only, one virtqueue.
//!
//! The vCPU threads call [`MmioTransport::read`] / [`MmioTransport::write`] for accesses to the slot;
//! the device thread locks the same state to use the queue. The handshake is checked: FEATURES_OK
//! sticks only if the driver accepted a subset of the offered features including VERSION_1, and
//! DRIVER_OK with a queue that does not fit guest RAM sets DEVICE_NEEDS_RESET. Writing 0 to Status
//! resets the device.

use std::sync::{Mutex, MutexGuard};

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::EventFd;

use super::guest_error;
use crate::vstate::memory::GuestMem;

/// "virt".
pub const MAGIC: u32 = 0x7472_6976;
/// Our vendor id ("DOMU" would not fit the spirit; any value works: QEMU uses 0x554d4551).
pub const VENDOR_ID: u32 = 0x4f4d_4f44;
/// VIRTIO_F_VERSION_1.
pub const F_VERSION_1: u64 = 1 << 32;

/// Device status bits (virtio 1.2 §2.1).
pub mod status {
    /// ACKNOWLEDGE.
    pub const ACKNOWLEDGE: u32 = 1;
    /// DRIVER.
    pub const DRIVER: u32 = 2;
    /// DRIVER_OK.
    pub const DRIVER_OK: u32 = 4;
    /// FEATURES_OK.
    pub const FEATURES_OK: u32 = 8;
    /// DEVICE_NEEDS_RESET.
    pub const NEEDS_RESET: u32 = 64;
    /// FAILED.
    pub const FAILED: u32 = 128;
}

/// Register offsets.
pub mod reg {
    /// MagicValue.
    pub const MAGIC: u64 = 0x000;
    /// Version.
    pub const VERSION: u64 = 0x004;
    /// DeviceID.
    pub const DEVICE_ID: u64 = 0x008;
    /// VendorID.
    pub const VENDOR_ID: u64 = 0x00c;
    /// DeviceFeatures.
    pub const DEVICE_FEATURES: u64 = 0x010;
    /// DeviceFeaturesSel.
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    /// DriverFeatures.
    pub const DRIVER_FEATURES: u64 = 0x020;
    /// DriverFeaturesSel.
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    /// QueueSel.
    pub const QUEUE_SEL: u64 = 0x030;
    /// QueueNumMax.
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    /// QueueNum.
    pub const QUEUE_NUM: u64 = 0x038;
    /// QueueReady.
    pub const QUEUE_READY: u64 = 0x044;
    /// QueueNotify (an ioeventfd: writes reach us only if the ioeventfd is missing).
    pub const QUEUE_NOTIFY: u64 = 0x050;
    /// InterruptStatus.
    pub const INTERRUPT_STATUS: u64 = 0x060;
    /// InterruptACK.
    pub const INTERRUPT_ACK: u64 = 0x064;
    /// Status.
    pub const STATUS: u64 = 0x070;
    /// QueueDescLow.
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    /// QueueDescHigh.
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    /// QueueDriverLow.
    pub const QUEUE_AVAIL_LOW: u64 = 0x090;
    /// QueueDriverHigh.
    pub const QUEUE_AVAIL_HIGH: u64 = 0x094;
    /// QueueDeviceLow.
    pub const QUEUE_USED_LOW: u64 = 0x0a0;
    /// QueueDeviceHigh.
    pub const QUEUE_USED_HIGH: u64 = 0x0a4;
    /// ConfigGeneration.
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    /// Device-specific configuration space.
    pub const CONFIG: u64 = 0x100;
}

/// InterruptStatus bit: used buffer notification.
pub const INT_VRING: u32 = 1;
/// InterruptStatus bit: configuration change (also raised with DEVICE_NEEDS_RESET).
pub const INT_CONFIG: u32 = 2;

/// Mutable transport state (behind the transport's lock).
pub struct TransportState {
    /// Device status register.
    pub status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    /// Features the driver wrote.
    pub driver_features: u64,
    queue_sel: u32,
    /// The one virtqueue.
    pub queue: Queue,
    /// InterruptStatus.
    pub interrupt_status: u32,
    /// Incremented by every reset: completions of requests popped before a reset are dropped.
    pub generation: u64,
}

impl TransportState {
    /// Whether the device may process its queue.
    pub fn live(&self) -> bool {
        self.status & status::DRIVER_OK != 0 && self.status & status::NEEDS_RESET == 0
    }
}

/// One virtio-mmio slot.
pub struct MmioTransport {
    name: String,
    device_id: u32,
    device_features: u64,
    config: Vec<u8>,
    queue_max: u16,
    mem: GuestMem,
    irq: EventFd,
    state: Mutex<TransportState>,
}

impl MmioTransport {
    /// A transport for a device of type `device_id` offering `device_features` (VERSION_1 is added)
    /// with the read-only configuration space `config`, interrupting through `irq`.
    ///
    /// # Errors
    /// `queue_max` is not a power of two in 1..=32768.
    pub fn new(
        name: String,
        device_id: u32,
        device_features: u64,
        config: Vec<u8>,
        queue_max: u16,
        mem: GuestMem,
        irq: EventFd,
    ) -> Result<Self, virtio_queue::Error> {
        Ok(Self {
            name,
            device_id,
            device_features: device_features | F_VERSION_1,
            config,
            queue_max,
            mem,
            irq,
            state: Mutex::new(TransportState {
                status: 0,
                device_features_sel: 0,
                driver_features_sel: 0,
                driver_features: 0,
                queue_sel: 0,
                queue: Queue::new(queue_max)?,
                interrupt_status: 0,
                generation: 0,
            }),
        })
    }

    /// The device's name in logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Guest memory.
    pub fn mem(&self) -> &GuestMem {
        &self.mem
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
            tracing::warn!(device = %self.name, error = %e, "cannot signal the irqfd");
        }
    }

    /// Marks the device broken (DEVICE_NEEDS_RESET) and tells the driver.
    pub fn needs_reset(&self, st: &mut TransportState, why: &dyn std::fmt::Display) {
        guest_error(&self.name, why);
        if st.status & status::NEEDS_RESET == 0 {
            st.status |= status::NEEDS_RESET;
            if st.status & status::DRIVER_OK != 0 {
                self.interrupt(st, INT_CONFIG);
            }
        }
    }

    /// A guest read of `data.len()` bytes at `offset` into the slot.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        if offset >= reg::CONFIG {
            let start = usize::try_from(offset - reg::CONFIG).unwrap_or(usize::MAX);
            for (i, b) in data.iter_mut().enumerate() {
                *b = start
                    .checked_add(i)
                    .and_then(|j| self.config.get(j))
                    .copied()
                    .unwrap_or(0);
            }
            return;
        }
        let st = self.lock();
        let sel_q = st.queue_sel == 0;
        let v: u32 = match offset {
            reg::MAGIC => MAGIC,
            reg::VERSION => 2,
            reg::DEVICE_ID => self.device_id,
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => match st.device_features_sel {
                0 => self.device_features as u32,
                1 => (self.device_features >> 32) as u32,
                _ => 0,
            },
            reg::QUEUE_NUM_MAX if sel_q => u32::from(self.queue_max),
            reg::QUEUE_READY if sel_q => u32::from(st.queue.ready()),
            reg::INTERRUPT_STATUS => st.interrupt_status,
            reg::STATUS => st.status,
            reg::CONFIG_GENERATION => 0,
            _ => 0,
        };
        fill(data, v);
    }

    /// A guest write at `offset` into the slot.
    pub fn write(&self, offset: u64, data: &[u8]) {
        if offset >= reg::CONFIG {
            guest_error(
                &self.name,
                &format_args!("write to read-only config space at {offset:#x}"),
            );
            return;
        }
        if data.len() != 4 {
            guest_error(
                &self.name,
                &format_args!(
                    "{}-byte register write at {offset:#x} (must be 4)",
                    data.len()
                ),
            );
            return;
        }
        let mut b = [0u8; 4];
        b.copy_from_slice(data);
        let v = u32::from_le_bytes(b);
        let mut st = self.lock();
        let st = &mut *st;
        let configurable =
            st.status & status::FEATURES_OK != 0 && st.status & status::DRIVER_OK == 0;
        let q = st.queue_sel == 0 && configurable;
        match offset {
            reg::DEVICE_FEATURES_SEL => st.device_features_sel = v,
            reg::DRIVER_FEATURES_SEL => st.driver_features_sel = v,
            reg::DRIVER_FEATURES
                if st.status & status::DRIVER != 0 && st.status & status::FEATURES_OK == 0 =>
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
            // The try_ setters: virtio-queue's plain setters log every bad value unthrottled.
            reg::QUEUE_NUM if q => {
                if let Err(e) = st.queue.try_set_size(u16::try_from(v).unwrap_or(0)) {
                    guest_error(&self.name, &format_args!("queue size {v}: {e}"));
                }
            }
            reg::QUEUE_READY if q => st.queue.set_ready(v == 1),
            reg::QUEUE_DESC_LOW | reg::QUEUE_DESC_HIGH if q => {
                let a = merge(st.queue.desc_table(), offset == reg::QUEUE_DESC_HIGH, v);
                if let Err(e) = st.queue.try_set_desc_table_address(GuestAddress(a)) {
                    guest_error(&self.name, &format_args!("descriptor table {a:#x}: {e}"));
                }
            }
            reg::QUEUE_AVAIL_LOW | reg::QUEUE_AVAIL_HIGH if q => {
                let a = merge(st.queue.avail_ring(), offset == reg::QUEUE_AVAIL_HIGH, v);
                if let Err(e) = st.queue.try_set_avail_ring_address(GuestAddress(a)) {
                    guest_error(&self.name, &format_args!("available ring {a:#x}: {e}"));
                }
            }
            reg::QUEUE_USED_LOW | reg::QUEUE_USED_HIGH if q => {
                let a = merge(st.queue.used_ring(), offset == reg::QUEUE_USED_HIGH, v);
                if let Err(e) = st.queue.try_set_used_ring_address(GuestAddress(a)) {
                    guest_error(&self.name, &format_args!("used ring {a:#x}: {e}"));
                }
            }
            reg::QUEUE_NOTIFY => {
                // Only without an ioeventfd; the device thread polls on the ioeventfd.
                guest_error(&self.name, &"QueueNotify reached userspace");
            }
            reg::INTERRUPT_ACK => st.interrupt_status &= !v,
            reg::STATUS => self.write_status(st, v),
            _ => guest_error(
                &self.name,
                &format_args!(
                    "ignored write {v:#x} to register {offset:#x} (status {:#x})",
                    st.status
                ),
            ),
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
            st.queue.reset();
            st.generation = st.generation.wrapping_add(1);
            return;
        }
        // Bits only get set, never cleared, except by a reset (§2.1.2).
        if v & st.status != st.status {
            let old = st.status;
            self.needs_reset(st, &format_args!("status {v:#x} clears bits of {old:#x}"));
            return;
        }
        let new = v & !st.status;
        if new & status::FEATURES_OK != 0 {
            let f = st.driver_features;
            if f & !self.device_features != 0 || f & F_VERSION_1 == 0 {
                guest_error(
                    &self.name,
                    &format_args!(
                        "driver features {f:#x} not acceptable (offered {:#x})",
                        self.device_features
                    ),
                );
                st.status = v & !status::FEATURES_OK;
                return;
            }
        }
        if new & status::DRIVER_OK != 0 {
            if st.status & status::FEATURES_OK == 0 && v & status::FEATURES_OK == 0 {
                st.status = v;
                self.needs_reset(st, &"DRIVER_OK without FEATURES_OK");
                return;
            }
            if !queue_fits(&st.queue, &self.mem) {
                st.status = v;
                self.needs_reset(
                    st,
                    &"DRIVER_OK with a queue that is not ready or not in guest RAM",
                );
                return;
            }
            st.queue.set_event_idx(false);
        }
        st.status = v;
    }
}

/// Replaces the low or high half of `old` with `v`.
fn merge(old: u64, high: bool, v: u32) -> u64 {
    if high {
        (old & 0xffff_ffff) | (u64::from(v) << 32)
    } else {
        (old & !0xffff_ffff) | u64::from(v)
    }
}

/// The queue is ready and its three areas lie in guest RAM (each inside one region); this is
/// virtio-queue's `is_valid` without its unthrottled error log.
fn queue_fits(q: &Queue, mem: &GuestMem) -> bool {
    use vm_memory::GuestMemoryBackend;
    let n = usize::from(q.size());
    let fits = |a: u64, len: usize| mem.get_slice(GuestAddress(a), len).is_ok();
    q.ready()
        && n > 0
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

    fn transport() -> MmioTransport {
        let mem = crate::vstate::memory::create_guest_memory(1 << 20).unwrap();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        MmioTransport::new("t".into(), 2, 1 << 9, vec![1, 2, 3, 4], 16, mem, irq).unwrap()
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
        assert_eq!(t.lock().queue.desc_table(), 0x1000);
        wr(&t, reg::STATUS, status::ACKNOWLEDGE);
        assert_ne!(rd(&t, reg::STATUS) & status::NEEDS_RESET, 0);
        // Narrow writes and config writes are ignored.
        t.write(reg::STATUS, &[0]);
        t.write(reg::CONFIG, &[9, 9, 9, 9]);
        assert_eq!(rd(&t, reg::CONFIG), 0x0403_0201);
    }
}
