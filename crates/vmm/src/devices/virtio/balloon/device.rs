//! The virtio-balloon device model (virtio 1.2 §5.5): two queues (inflate, deflate), a configuration
//! space of `num_pages` (the host's target, pages of 4 KiB the guest should give back) and `actual`
//! (what the guest says it gave), no features. The target lives in a [`BalloonShared`] the control
//! side changes ([`super::BalloonHandle::set_target_mib`]); the queue work is on the device thread
//! ([`super::event_handler`]).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use virtio_bindings::virtio_ids::VIRTIO_ID_BALLOON;

use super::QUEUE_SIZE;
use crate::devices::virtio::device::{read_config_bytes, ActivateError, ConfigWrite, VirtioDevice};

/// Offset of `num_pages` in the configuration space.
pub const CONFIG_NUM_PAGES: u64 = 0;
/// Offset of `actual`.
pub const CONFIG_ACTUAL: u64 = 4;
/// Bytes of configuration space (`num_pages`, `actual`, `free_page_hint_cmd_id`, `poison_val`).
pub const CONFIG_LEN: usize = 16;

/// What the device thread, the transport and the control side share.
#[derive(Debug, Default)]
pub struct BalloonShared {
    /// `num_pages`: the host's target (pages the guest should have in the balloon).
    pub target_pages: AtomicU32,
    /// `actual`: what the driver last wrote.
    pub actual_pages: AtomicU32,
    /// Pages the device returned to the host (inflate) minus pages the guest took back (deflate),
    /// counted from the queues (the driver's `actual` is what the guest claims).
    pub inflated_pages: AtomicU64,
    /// PFNs outside guest RAM the guest sent (ignored).
    pub bad_pfns: AtomicU64,
}

/// The balloon as the transport sees it.
pub struct BalloonDevice {
    queues: [u16; 2],
    shared: Arc<BalloonShared>,
}

impl BalloonDevice {
    /// A device over `shared`.
    pub fn new(shared: Arc<BalloonShared>) -> Self {
        Self {
            queues: [QUEUE_SIZE; 2],
            shared,
        }
    }

    fn config(&self) -> [u8; CONFIG_LEN] {
        let mut c = [0u8; CONFIG_LEN];
        let target = self.shared.target_pages.load(Ordering::SeqCst);
        let actual = self.shared.actual_pages.load(Ordering::SeqCst);
        c[..4].copy_from_slice(&target.to_le_bytes());
        c[4..8].copy_from_slice(&actual.to_le_bytes());
        c
    }
}

impl VirtioDevice for BalloonDevice {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BALLOON
    }

    /// None: no MUST_TELL_HOST (the device needs no notice before a deflated page is reused:
    /// it is zero-fill-on-demand memory again), no STATS_VQ, no DEFLATE_ON_OOM (see the module
    /// docs of [`super`]).
    fn features(&self) -> u64 {
        0
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queues
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config(), offset, data);
    }

    /// Only `actual` is driver-writable (a whole le32, as Linux writes it).
    fn write_config(&mut self, offset: u64, data: &[u8]) -> ConfigWrite {
        match (offset, <[u8; 4]>::try_from(data)) {
            (CONFIG_ACTUAL, Ok(b)) => {
                self.shared
                    .actual_pages
                    .store(u32::from_le_bytes(b), Ordering::SeqCst);
                ConfigWrite::Stored
            }
            _ => ConfigWrite::Ignored,
        }
    }

    fn activate(&mut self, _features: u64) -> Result<(), ActivateError> {
        Ok(())
    }

    /// A reset driver starts over with an empty balloon (its pages are its own again).
    fn reset(&mut self) {
        self.shared.actual_pages.store(0, Ordering::SeqCst);
        self.shared.inflated_pages.store(0, Ordering::SeqCst);
    }

    /// `num_pages`, `actual` and the device's counters ([`BalloonSnapshot`]), as JSON.
    fn save_state(&self) -> Vec<u8> {
        let s = BalloonSnapshot {
            target_pages: self.shared.target_pages.load(Ordering::SeqCst),
            actual_pages: self.shared.actual_pages.load(Ordering::SeqCst),
            inflated_pages: self.shared.inflated_pages.load(Ordering::SeqCst),
            bad_pfns: self.shared.bad_pfns.load(Ordering::SeqCst),
        };
        serde_json::to_vec(&s).unwrap_or_default()
    }

    /// Takes the saved target and `actual`: the restored guest's balloon holds what it held, and
    /// the host keeps asking for the same target. A configuration interrupt follows when the target
    /// differs from the one this machine was built with.
    fn restore_state(&mut self, state: &[u8]) -> Result<bool, String> {
        if state.is_empty() {
            // An image from before the balloon kept state: the target set at attach stands.
            return Ok(false);
        }
        let s: BalloonSnapshot = serde_json::from_slice(state)
            .map_err(|e| format!("the balloon's state is malformed: {e}"))?;
        let old = self
            .shared
            .target_pages
            .swap(s.target_pages, Ordering::SeqCst);
        self.shared
            .actual_pages
            .store(s.actual_pages, Ordering::SeqCst);
        self.shared
            .inflated_pages
            .store(s.inflated_pages, Ordering::SeqCst);
        self.shared.bad_pfns.store(s.bad_pfns, Ordering::SeqCst);
        Ok(old != s.target_pages)
    }
}

/// The balloon's state in a snapshot (save/restore, live migration). The pages in the balloon are
/// zero in a saved image (they were handed back to the host), so the restored machine does not hold
/// them either. A live migration's pre-copy may send a page before the guest inflates it (discarding
/// it here is no write KVM or the device's dirty hook sees): the target then holds that page's old
/// bytes until the guest deflates and rewrites it — harmless to the guest, which never reads a page
/// in its balloon, but resident memory on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BalloonSnapshot {
    /// `num_pages`.
    pub target_pages: u32,
    /// `actual`.
    pub actual_pages: u32,
    /// [`BalloonShared::inflated_pages`].
    pub inflated_pages: u64,
    /// [`BalloonShared::bad_pfns`].
    pub bad_pfns: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_space_shows_target_and_takes_actual() {
        let shared = Arc::new(BalloonShared::default());
        let mut d = BalloonDevice::new(Arc::clone(&shared));
        shared.target_pages.store(0x1234, Ordering::SeqCst);
        let mut b = [0u8; 8];
        d.read_config(0, &mut b);
        assert_eq!(b, [0x34, 0x12, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            d.write_config(CONFIG_ACTUAL, &7u32.to_le_bytes()),
            ConfigWrite::Stored
        );
        assert_eq!(shared.actual_pages.load(Ordering::SeqCst), 7);
        // num_pages is the host's; partial writes of actual are refused.
        assert_eq!(
            d.write_config(CONFIG_NUM_PAGES, &[1, 0, 0, 0]),
            ConfigWrite::Ignored
        );
        assert_eq!(d.write_config(CONFIG_ACTUAL, &[1, 0]), ConfigWrite::Ignored);
        assert_eq!(shared.target_pages.load(Ordering::SeqCst), 0x1234);
        let mut a = [0u8; 4];
        d.read_config(CONFIG_ACTUAL, &mut a);
        assert_eq!(u32::from_le_bytes(a), 7);
        shared.inflated_pages.store(5, Ordering::SeqCst);
        let saved = d.save_state();
        let other = Arc::new(BalloonShared::default());
        let mut e = BalloonDevice::new(Arc::clone(&other));
        assert_eq!(
            e.restore_state(&saved),
            Ok(true),
            "target changed: config interrupt"
        );
        assert_eq!(other.target_pages.load(Ordering::SeqCst), 0x1234);
        assert_eq!(other.actual_pages.load(Ordering::SeqCst), 7);
        assert_eq!(other.inflated_pages.load(Ordering::SeqCst), 5);
        assert_eq!(e.restore_state(&saved), Ok(false), "same target again");
        assert!(e.restore_state(b"{").unwrap_err().contains("malformed"));
        d.reset();
        assert_eq!(shared.actual_pages.load(Ordering::SeqCst), 0);
        assert_eq!(d.device_type(), 5);
        assert_eq!(d.queue_max_sizes().len(), 2);
    }
}
