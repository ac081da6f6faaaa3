//! The virtio-blk device model: its features and its read-only configuration space (virtio 1.2
//! §5.2.4). The queue work happens on the device thread ([`super::event_handler`]).

use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;

use super::{QUEUE_SIZE, SEG_MAX, SIZE_MAX};
use crate::devices::virtio::device::{read_config_bytes, ActivateError, VirtioDevice};

/// One disk as the transport sees it.
pub struct BlockDevice {
    features: u64,
    config: Vec<u8>,
    queues: [u16; 1],
}

impl BlockDevice {
    /// A disk of `sectors` 512-byte sectors offering `features`.
    pub fn new(features: u64, sectors: u64) -> Self {
        Self {
            features,
            config: config_space(sectors),
            queues: [QUEUE_SIZE],
        }
    }
}

/// `struct virtio_blk_config` up to `write_zeroes_may_unmap` (60 bytes).
fn config_space(sectors: u64) -> Vec<u8> {
    let mut c = vec![0u8; 60];
    c[0..8].copy_from_slice(&sectors.to_le_bytes());
    c[8..12].copy_from_slice(&SIZE_MAX.to_le_bytes());
    c[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
    c[20..24].copy_from_slice(&512u32.to_le_bytes());
    c[34..36].copy_from_slice(&1u16.to_le_bytes()); // num_queues
    c[36..40].copy_from_slice(&(u32::MAX >> 9).to_le_bytes()); // max_discard_sectors
    c[40..44].copy_from_slice(&1u32.to_le_bytes()); // max_discard_seg
    c[44..48].copy_from_slice(&8u32.to_le_bytes()); // discard_sector_alignment (4 KiB)
    c[48..52].copy_from_slice(&(u32::MAX >> 9).to_le_bytes()); // max_write_zeroes_sectors
    c[52..56].copy_from_slice(&1u32.to_le_bytes()); // max_write_zeroes_seg
    c[56] = 1; // write_zeroes_may_unmap
    c
}

impl VirtioDevice for BlockDevice {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queues
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn activate(&mut self, _features: u64) -> Result<(), ActivateError> {
        Ok(())
    }

    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_space_layout() {
        let d = BlockDevice::new(0, 4096);
        let mut b = [0u8; 8];
        d.read_config(0, &mut b);
        assert_eq!(u64::from_le_bytes(b), 4096);
        let mut w = [0u8; 4];
        d.read_config(20, &mut w);
        assert_eq!(u32::from_le_bytes(w), 512);
        d.read_config(12, &mut w);
        assert_eq!(u32::from_le_bytes(w), SEG_MAX);
        d.read_config(60, &mut w);
        assert_eq!(w, [0; 4]);
        assert_eq!(d.device_type(), 2);
    }
}
