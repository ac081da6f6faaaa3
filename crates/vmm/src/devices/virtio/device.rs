//! The device model every virtio device implements ([`VirtioDevice`]), in the spirit of Cloud
//! Hypervisor's trait of the same name: what the transport asks a device (type, features, queues,
//! configuration space) and tells it (activation with the negotiated features, reset).
//!
//! The transport ([`super::mmio::MmioTransport`]) owns the virtqueues and the handshake; the device
//! model answers identity and configuration questions. A device's queue work happens on its own
//! thread (see [`super::manager`]), which reaches the queues through the transport.

/// Activation was refused (the transport then sets DEVICE_NEEDS_RESET).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActivateError {
    /// The negotiated features are not workable for this device.
    #[error("features {features:#x} are not workable: {why}")]
    Features {
        /// What the driver accepted.
        features: u64,
        /// Why not.
        why: &'static str,
    },
}

/// What a guest write to the configuration space did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigWrite {
    /// The field is read-only (or unknown): ignored; the transport counts and logs it.
    Ignored,
    /// The device took the write; the transport bumps the config generation.
    Applied,
    /// The device took a write to a driver-owned field (the balloon's `actual`): nothing changed that
    /// the driver must be told about, so no generation bump and no configuration interrupt.
    Stored,
}

/// One virtio device model (virtio 1.2 §2, §4.2).
pub trait VirtioDevice: Send {
    /// Device type (`VIRTIO_ID_*` from virtio-bindings).
    fn device_type(&self) -> u32;

    /// Feature bits offered, without VIRTIO_F_VERSION_1 (the transport always adds it).
    fn features(&self) -> u64;

    /// Maximum size of each virtqueue, in queue order (the number of queues is the length).
    fn queue_max_sizes(&self) -> &[u16];

    /// Reads `data.len()` bytes of the configuration space at `offset`; bytes past its end read 0.
    fn read_config(&self, offset: u64, data: &mut [u8]);

    /// A guest write to the configuration space; the default treats the space as read-only.
    fn write_config(&mut self, _offset: u64, _data: &[u8]) -> ConfigWrite {
        ConfigWrite::Ignored
    }

    /// The driver set DRIVER_OK with `features` negotiated and every enabled queue valid.
    ///
    /// # Errors
    /// [`ActivateError`] if the device cannot work with what was negotiated.
    fn activate(&mut self, features: u64) -> Result<(), ActivateError>;

    /// The driver reset the device (status 0): forget negotiated state.
    fn reset(&mut self);

    /// The save-state hook: the device's own state for a snapshot (opaque; empty until the
    /// save/restore issue defines it per device).
    fn save_state(&self) -> Vec<u8> {
        Vec::new()
    }

    /// The restore hook: takes what [`VirtioDevice::save_state`] returned, after the transport
    /// re-activated the device with the saved features. `Ok(true)`: the configuration space changed
    /// (the transport raises a configuration interrupt once the machine runs).
    ///
    /// # Errors
    /// The state is malformed for this device.
    fn restore_state(&mut self, _state: &[u8]) -> Result<bool, String> {
        Ok(false)
    }
}

/// Copies `data.len()` bytes of `space` from `offset` into `data` (zeros past the end): the usual
/// `read_config` of a device whose configuration space is a byte image.
pub fn read_config_bytes(space: &[u8], offset: u64, data: &mut [u8]) {
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    for (i, b) in data.iter_mut().enumerate() {
        *b = start
            .checked_add(i)
            .and_then(|j| space.get(j))
            .copied()
            .unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_bytes_read_zero_past_the_end() {
        let mut d = [9u8; 4];
        read_config_bytes(&[1, 2, 3], 1, &mut d);
        assert_eq!(d, [2, 3, 0, 0]);
        read_config_bytes(&[1, 2, 3], u64::MAX, &mut d);
        assert_eq!(d, [0; 4]);
    }
}
