//! The virtio-rng device model (virtio 1.2 §5.4): one request queue, no features, no configuration
//! space. The queue work happens on the device thread ([`super::event_handler`]).

use virtio_bindings::virtio_ids::VIRTIO_ID_RNG;

use super::QUEUE_SIZE;
use crate::devices::virtio::device::{ActivateError, VirtioDevice};

/// The entropy device as the transport sees it.
pub struct RngDevice {
    queues: [u16; 1],
}

impl Default for RngDevice {
    fn default() -> Self {
        Self {
            queues: [QUEUE_SIZE],
        }
    }
}

impl VirtioDevice for RngDevice {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_RNG
    }

    fn features(&self) -> u64 {
        0
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queues
    }

    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn activate(&mut self, _features: u64) -> Result<(), ActivateError> {
        Ok(())
    }

    fn reset(&mut self) {}
}
