//! Virtio devices on the virtio-mmio transport (virtio 1.2 §4.2, modern interface only).
//!
//! - [`device`]: the [`device::VirtioDevice`] trait every device model implements (type, features,
//!   queues, configuration space, activate, reset, save state).
//! - [`mmio`]: the transport that serves any device with any number of queues.
//! - [`manager`]: the [`manager::DeviceManager`] that owns the slots of the fixed window, their GSIs,
//!   the KVM wiring (irqfd, one QueueNotify ioeventfd per queue), the DSDT entries and the device
//!   threads. [`manager::MAX_DEVICES`] is the machine's limit.
//! - Devices: [`block`] (virtio-blk), [`net`] (virtio-net on a TAP), [`rng`] (virtio-rng),
//!   [`balloon`] (virtio-balloon: `mem-set`).
//!
//! Register accesses exit to the vCPU thread; queue notifications do not: QueueNotify is an
//! ioeventfd a device thread waits on, and the device interrupts through an irqfd. Guest mistakes
//! (bad descriptors, out-of-range sectors, a half-finished handshake) never stop the VMM: the request
//! completes with an error status, or the device sets DEVICE_NEEDS_RESET, and the warning goes through
//! the device's [`crate::devices::guest_log::GuestLog`].

pub mod balloon;
pub mod block;
pub mod device;
pub mod manager;
pub mod mmio;
pub mod net;
pub mod rng;
#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;
pub mod transport_state;

pub use manager::{slot_base, slot_gsi, FIRST_GSI, MAX_DEVICES, SLOT_SIZE, WINDOW_BASE};
