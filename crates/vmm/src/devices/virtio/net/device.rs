//! The virtio-net device model (virtio 1.2 §5.1) as the transport sees it: three queues (receiveq1,
//! transmitq1, controlq: one queue pair, multiqueue is a later step), the offered features
//! ([`super::features`]), the configuration space and activation. What the queue worker and the
//! model share (the TAP, the negotiated features, the receive filter, the status word) is
//! [`NetShared`].
//!
//! Configuration space (`struct virtio_net_config`): `mac` (6 bytes, from the vif's `mac=`),
//! `status` (le16: LINK_UP, ANNOUNCE), `max_virtqueue_pairs` (le16: 1), `mtu` (le16, the vif's
//! `mtu=`, default 1500). Read-only for the driver: a modern driver changes the address through the
//! control queue (CTRL_MAC_ADDR), and the new address is what the space then shows.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use virtio_bindings::virtio_net as vn;

use super::ctrl::RxFilter;
use super::features;
use super::tap::Tap;
use super::{QUEUE_SIZE, RX_QUEUE_SIZE};
use crate::devices::virtio::device::{read_config_bytes, ActivateError, VirtioDevice};

/// VIRTIO_NET_S_LINK_UP.
pub const S_LINK_UP: u16 = 1;
/// VIRTIO_NET_S_ANNOUNCE.
pub const S_ANNOUNCE: u16 = 2;

/// What the device model and the queue worker share.
#[derive(Debug)]
pub struct NetShared {
    /// The host side.
    pub tap: Tap,
    /// The NIC's MTU.
    pub mtu: u16,
    /// Traffic counters.
    pub stats: std::sync::Arc<super::NetStats>,
    offered: u64,
    features: AtomicU64,
    rx_offloads: AtomicU64,
    status: AtomicU16,
    filter: Mutex<RxFilter>,
    mac: [u8; 6],
}

impl NetShared {
    /// State for a NIC on `tap` with address `mac` and `mtu`.
    pub fn new(tap: Tap, mac: [u8; 6], mtu: u16) -> Self {
        let offered = features::offered(tap.has_uso());
        Self {
            tap,
            mtu,
            stats: std::sync::Arc::default(),
            offered,
            features: AtomicU64::new(0),
            rx_offloads: AtomicU64::new(0),
            status: AtomicU16::new(S_LINK_UP),
            filter: Mutex::new(RxFilter::new(mac)),
            mac,
        }
    }

    /// The features the device offers.
    pub fn offered(&self) -> u64 {
        self.offered
    }

    /// The negotiated features (0 while inactive).
    pub fn features(&self) -> u64 {
        self.features.load(Ordering::Acquire)
    }

    /// The guest-receive offloads in force (negotiated, then as CTRL_GUEST_OFFLOADS set them).
    pub fn rx_offloads(&self) -> u64 {
        self.rx_offloads.load(Ordering::Acquire)
    }

    /// Switches the guest-receive offloads and mirrors them on the TAP.
    ///
    /// # Errors
    /// The TAP refused the flags.
    pub fn set_rx_offloads(&self, offloads: u64) -> std::io::Result<()> {
        self.tap.set_offload(features::tap_offload(offloads))?;
        self.rx_offloads.store(offloads, Ordering::Release);
        Ok(())
    }

    /// The receive filter.
    pub fn filter(&self) -> MutexGuard<'_, RxFilter> {
        self.filter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The status word.
    pub fn status(&self) -> u16 {
        self.status.load(Ordering::Acquire)
    }

    /// Sets (or clears) VIRTIO_NET_S_ANNOUNCE: the driver should announce itself (gratuitous ARP)
    /// and acknowledge; the caller raises the configuration interrupt.
    pub fn set_announce(&self, on: bool) {
        if on {
            self.status.fetch_or(S_ANNOUNCE, Ordering::AcqRel);
        } else {
            self.status.fetch_and(!S_ANNOUNCE, Ordering::AcqRel);
        }
    }
}

/// The NIC as the transport sees it.
pub struct NetDevice {
    shared: std::sync::Arc<NetShared>,
    queues: [u16; 3],
}

impl NetDevice {
    /// The model over `shared`.
    pub fn new(shared: std::sync::Arc<NetShared>) -> Self {
        Self {
            shared,
            queues: [RX_QUEUE_SIZE, QUEUE_SIZE, QUEUE_SIZE],
        }
    }

    fn config(&self) -> [u8; 12] {
        let mut c = [0u8; 12];
        c[..6].copy_from_slice(&self.shared.filter().mac);
        c[6..8].copy_from_slice(&self.shared.status().to_le_bytes());
        c[8..10].copy_from_slice(&1u16.to_le_bytes());
        c[10..12].copy_from_slice(&self.shared.mtu.to_le_bytes());
        c
    }
}

impl VirtioDevice for NetDevice {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn features(&self) -> u64 {
        self.shared.offered
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queues
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config(), offset, data);
    }

    fn activate(&mut self, negotiated: u64) -> Result<(), ActivateError> {
        let refuse = |why| ActivateError::Features {
            features: negotiated,
            why,
        };
        features::check(negotiated).map_err(refuse)?;
        let offloads = negotiated & features::GUEST_OFFLOADS;
        if let Err(e) = self.shared.set_rx_offloads(offloads) {
            tracing::error!(tap = %self.shared.tap.name(), error = %e, "TUNSETOFFLOAD refused the negotiated receive offloads");
            return Err(refuse("the TAP refused the negotiated receive offloads"));
        }
        self.shared.features.store(negotiated, Ordering::Release);
        Ok(())
    }

    /// The driver's current MAC address (it may have set one through the control queue).
    fn save_state(&self) -> Vec<u8> {
        self.shared.filter().mac.to_vec()
    }

    /// Takes the MAC back and, after a restore or migration, asks the guest to announce itself
    /// (VIRTIO_NET_S_ANNOUNCE) when it negotiated GUEST_ANNOUNCE.
    fn restore_state(&mut self, state: &[u8]) -> Result<bool, String> {
        let mac: [u8; 6] = state.try_into().map_err(|_| {
            format!(
                "virtio-net state is {} bytes, not a 6-byte MAC",
                state.len()
            )
        })?;
        self.shared.filter().mac = mac;
        let announce = self.shared.features() & features::GUEST_ANNOUNCE != 0;
        if announce {
            self.shared.set_announce(true);
        }
        Ok(announce)
    }

    fn reset(&mut self) {
        self.shared.features.store(0, Ordering::Release);
        // Best effort: with no offloads negotiated the TAP hands plain frames.
        let _ignored = self.shared.set_rx_offloads(0);
        *self.shared.filter() = RxFilter::new(self.shared.mac);
        self.shared.status.store(S_LINK_UP, Ordering::Release);
    }
}

/// `VIRTIO_NET_S_LINK_UP` as the bindings spell it (checked at compile time).
const _: () = assert!(vn::VIRTIO_NET_S_LINK_UP == 1 && vn::VIRTIO_NET_S_ANNOUNCE == 2);
