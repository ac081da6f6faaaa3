//! virtio-rng (virtio 1.2 §5.4): an entropy device, on by default, so a guest has good randomness from
//! its first boot ("Entropy in domUs can be an issue", as Xen's HOWTO puts it).
//!
//! [`attach`] puts a [`device::RngDevice`] in the next slot of the [`DeviceManager`] with its device
//! thread ([`event_handler`]): the host source is getrandom(2), limited per domain by a token
//! bucket ([`rate`]) of `rate_bytes_per_sec` (burst: one second's worth).

pub mod device;
pub mod event_handler;
pub mod rate;

use std::sync::Arc;

use kvm_ioctls::VmFd;

use super::manager::{registrar_for, DeviceManager, DeviceManagerError};
use crate::threads;
use crate::vstate::memory::GuestRam;
use domus_spec::RngSpec;

/// Queue size.
pub const QUEUE_SIZE: u16 = 64;

/// The entropy device cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum RngError {
    /// No slot, or KVM wiring.
    #[error(transparent)]
    Slot(#[from] DeviceManagerError),
    /// Host resources (eventfd, thread).
    #[error("virtio-rng: {what}")]
    Host {
        /// What failed.
        what: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Adds the entropy device described by `cfg` to `manager`, with its device thread (started by
/// [`DeviceManager::start_threads`]).
///
/// # Errors
/// [`RngError`].
pub fn attach(
    manager: &mut DeviceManager,
    vm: &VmFd,
    ram: &GuestRam,
    cfg: &RngSpec,
) -> Result<(), RngError> {
    let name = "virtio-rng".to_owned();
    let registrar = registrar_for(vm, 1);
    let mut attached = manager.add(
        &*registrar,
        ram,
        name.clone(),
        Box::new(device::RngDevice::default()),
    )?;
    let host = |what: &'static str| move |source| RngError::Host { what, source };
    let (control, mailbox) =
        threads::control_channel(&name).map_err(host("cannot create an eventfd"))?;
    let worker = event_handler::Worker {
        transport: Arc::clone(&attached.transport),
        rate_bytes_per_sec: cfg.rate_bytes_per_sec,
        notify: attached.notify.remove(0),
        events: mailbox,
    };
    manager.add_thread("rng".to_owned(), control, Box::new(move || worker.run()));
    tracing::info!(
        slot = attached.slot,
        rate = cfg.rate_bytes_per_sec,
        "virtio-rng ready"
    );
    Ok(())
}
