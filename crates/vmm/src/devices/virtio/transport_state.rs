//! The serialisable state of a virtio-mmio slot (see [`super::mmio::MmioTransport::snapshot`]).

/// One virtqueue's saved state (virtio-queue's `QueueState`, serialisable).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueSnapshot {
    /// Maximum size.
    pub max_size: u16,
    /// Next available-ring index the device will read.
    pub next_avail: u16,
    /// Next used-ring index the device will write.
    pub next_used: u16,
    /// VIRTIO_F_RING_EVENT_IDX in use.
    pub event_idx_enabled: bool,
    /// Size the driver chose.
    pub size: u16,
    /// QueueReady.
    pub ready: bool,
    /// Descriptor table address.
    pub desc_table: u64,
    /// Available ring address.
    pub avail_ring: u64,
    /// Used ring address.
    pub used_ring: u64,
}

impl From<virtio_queue::QueueState> for QueueSnapshot {
    fn from(q: virtio_queue::QueueState) -> Self {
        Self {
            max_size: q.max_size,
            next_avail: q.next_avail,
            next_used: q.next_used,
            event_idx_enabled: q.event_idx_enabled,
            size: q.size,
            ready: q.ready,
            desc_table: q.desc_table,
            avail_ring: q.avail_ring,
            used_ring: q.used_ring,
        }
    }
}

impl QueueSnapshot {
    pub(super) fn to_state(&self) -> virtio_queue::QueueState {
        virtio_queue::QueueState {
            max_size: self.max_size,
            next_avail: self.next_avail,
            next_used: self.next_used,
            event_idx_enabled: self.event_idx_enabled,
            size: self.size,
            ready: self.ready,
            desc_table: self.desc_table,
            avail_ring: self.avail_ring,
            used_ring: self.used_ring,
        }
    }
}

/// A virtio-mmio slot's saved state.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TransportSnapshot {
    /// Device type (checked on restore).
    pub device_type: u32,
    /// Status register.
    pub status: u32,
    /// DeviceFeaturesSel.
    pub device_features_sel: u32,
    /// DriverFeaturesSel.
    pub driver_features_sel: u32,
    /// Negotiated features.
    pub driver_features: u64,
    /// QueueSel.
    pub queue_sel: u32,
    /// InterruptStatus.
    pub interrupt_status: u32,
    /// ConfigGeneration.
    pub config_generation: u32,
    /// The virtqueues.
    pub queues: Vec<QueueSnapshot>,
    /// The device model's own state ([`super::device::VirtioDevice::save_state`]).
    pub device: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use virtio_queue::QueueT;
    use vmm_sys_util::eventfd::EventFd;

    use crate::devices::virtio::mmio::{reg, status, MmioTransport};
    use crate::devices::virtio::test_utils::{test_ram, TestDevice};

    fn transport() -> MmioTransport {
        let dev = TestDevice::new(4, 0, vec![1, 2, 3, 4], &[16, 8]);
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        MmioTransport::new("t".into(), Box::new(dev), test_ram(1 << 20), irq).unwrap()
    }

    fn wr(t: &MmioTransport, off: u64, v: u32) {
        t.write(off, &v.to_le_bytes());
    }

    #[test]
    fn a_live_slot_round_trips_and_a_mismatch_is_refused() {
        let t = transport();
        let ok = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        wr(&t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        wr(&t, reg::DRIVER_FEATURES_SEL, 1);
        wr(&t, reg::DRIVER_FEATURES, 1);
        wr(&t, reg::STATUS, ok);
        wr(&t, reg::QUEUE_SEL, 1);
        wr(&t, reg::QUEUE_NUM, 8);
        wr(&t, reg::QUEUE_DESC_LOW, 0x1000);
        wr(&t, reg::QUEUE_AVAIL_LOW, 0x2000);
        wr(&t, reg::QUEUE_USED_LOW, 0x3000);
        wr(&t, reg::QUEUE_READY, 1);
        wr(&t, reg::STATUS, ok | status::DRIVER_OK);
        assert!(t.lock().live());
        t.lock().queues[1].set_next_avail(5);
        let snap = t.snapshot();
        // Through JSON, as in an image.
        let snap: super::TransportSnapshot =
            serde_json::from_slice(&serde_json::to_vec(&snap).unwrap()).unwrap();
        let u = transport();
        u.restore(&snap).unwrap();
        let st = u.lock();
        assert!(st.live());
        assert_eq!(st.driver_features, snap.driver_features);
        assert_eq!(st.queues[1].desc_table(), 0x1000);
        assert_eq!(st.queues[1].used_ring(), 0x3000);
        assert_eq!(st.queues[1].next_avail(), 5);
        assert!(!st.queues[0].ready());
        drop(st);
        let mut other = snap.clone();
        other.device_type = 2;
        assert!(u.restore(&other).unwrap_err().contains("device type"));
        let mut other = snap;
        other.queues.pop();
        assert!(u.restore(&other).is_err());
    }
}
