//! virtio-balloon (virtio 1.2 §5.5): how `mem-set` changes the memory a running domain uses.
//!
//! # Model (Xen's populate-on-demand, on KVM)
//! The machine's RAM is the domain's `maxmem`; the balloon starts with a target of
//! `maxmem - memory`, so a guest with a balloon driver settles at `memory` and `mem-set` can move it
//! anywhere up to `maxmem`. The host side is [`BalloonHandle`]: the control socket's `balloon-set`
//! stores the new target in `num_pages` and raises a configuration-change interrupt; the driver
//! inflates (gives page frames, which the device returns to the host: MADV_DONTNEED, or a punched
//! hole on a memfd; see [`event_handler`]) or deflates, and writes `actual`. The VMM reports
//! `ram - actual` as the domain's current memory.
//!
//! # What a Linux guest's `virtio_balloon` driver sees
//! A virtio-mmio device (`LNRO0005` in the DSDT, like every device here) of type 5 with two
//! queues (inflate, deflate) of 256 entries, and **no feature bits** besides VERSION_1:
//! - no `VIRTIO_BALLOON_F_MUST_TELL_HOST`: the driver may reuse deflated pages before telling the
//!   device (a discarded page simply faults back in as zeros), so deflating never waits on the host;
//! - no `VIRTIO_BALLOON_F_STATS_VQ`: no stats queue (xl shows no guest memory statistics either);
//! - no `VIRTIO_BALLOON_F_DEFLATE_ON_OOM`: `mem-set` is a promise to the host, as on Xen, where the
//!   balloon never gives pages back by itself. With that bit a guest under memory pressure would
//!   deflate and silently go back above its target; instead `mem-set` refuses targets below a floor
//!   (domusd's `MEM_SET_FLOOR_MIB`), and an administrator who sets a target a guest cannot live
//!   with sees it in the guest, as with Xen;
//! - no free-page hinting or reporting, no page poisoning (their config fields read 0).
//!
//! Linux's driver inflates in requests of up to 256 PFNs (4 KiB frames, `VIRTIO_BALLOON_PFN_SHIFT`),
//! writes `actual` after each step, and follows every configuration interrupt.

pub mod device;
pub mod event_handler;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use kvm_ioctls::VmFd;

use super::manager::{registrar_for, DeviceManager, DeviceManagerError};
use super::mmio::MmioTransport;
use crate::threads;
use crate::vstate::memory::GuestRam;
use device::{BalloonDevice, BalloonShared};

/// Queue size of both queues.
pub const QUEUE_SIZE: u16 = 256;
/// Balloon pages per MiB.
pub const PAGES_PER_MIB: u64 = (1 << 20) / event_handler::PAGE;

/// The balloon cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum BalloonError {
    /// No slot, or KVM wiring.
    #[error(transparent)]
    Slot(#[from] DeviceManagerError),
    /// Host resources (eventfd).
    #[error("virtio-balloon: {what}")]
    Host {
        /// What failed.
        what: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A target the balloon cannot take.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// More memory than the machine has.
    #[error("a target of {target_mib} MiB is more than the {ram_mib} MiB of RAM this machine was built with")]
    AboveRam {
        /// Asked.
        target_mib: u64,
        /// The machine's RAM.
        ram_mib: u64,
    },
}

/// The host's side of the balloon: target in, actual out.
#[derive(Clone)]
pub struct BalloonHandle {
    shared: Arc<BalloonShared>,
    transport: Arc<MmioTransport>,
    ram_mib: u64,
}

impl BalloonHandle {
    /// Sets the memory the guest should keep, MiB (the balloon holds the rest of the RAM) and tells
    /// the driver (configuration-change interrupt).
    ///
    /// # Errors
    /// [`TargetError`] above the machine's RAM.
    pub fn set_target_mib(&self, target_mib: u64) -> Result<(), TargetError> {
        if target_mib > self.ram_mib {
            return Err(TargetError::AboveRam {
                target_mib,
                ram_mib: self.ram_mib,
            });
        }
        let pages = (self.ram_mib - target_mib) * PAGES_PER_MIB;
        let pages = u32::try_from(pages).unwrap_or(u32::MAX);
        let mut st = self.transport.lock();
        if self.shared.target_pages.swap(pages, Ordering::SeqCst) != pages {
            self.transport.config_changed(&mut st);
        }
        Ok(())
    }

    /// The memory the guest should keep, MiB.
    pub fn target_mib(&self) -> u64 {
        let pages = u64::from(self.shared.target_pages.load(Ordering::SeqCst));
        self.ram_mib.saturating_sub(pages / PAGES_PER_MIB)
    }

    /// The memory the guest keeps by its driver's `actual`, MiB (pages in the balloon rounded down
    /// to whole MiB, so a half-inflated MiB still counts as the guest's).
    pub fn actual_mib(&self) -> u64 {
        let pages = u64::from(self.shared.actual_pages.load(Ordering::SeqCst));
        self.ram_mib.saturating_sub(pages / PAGES_PER_MIB)
    }

    /// The machine's RAM, MiB.
    pub fn ram_mib(&self) -> u64 {
        self.ram_mib
    }

    /// Pages returned to the host and not taken back (the device's own count).
    pub fn inflated_pages(&self) -> u64 {
        self.shared.inflated_pages.load(Ordering::SeqCst)
    }
}

/// Adds the balloon to `manager` (guest RAM `ram_mib`, initial target `target_mib`), with its device
/// thread (started by [`DeviceManager::start_threads`]); returns the host's handle.
///
/// # Errors
/// [`BalloonError`].
pub fn attach(
    manager: &mut DeviceManager,
    vm: &VmFd,
    ram: &GuestRam,
    ram_mib: u64,
    target_mib: u64,
) -> Result<BalloonHandle, BalloonError> {
    let name = "virtio-balloon".to_owned();
    let shared = Arc::new(BalloonShared::default());
    let registrar = registrar_for(vm, 2);
    let attached = manager.add(
        &*registrar,
        ram,
        name.clone(),
        Box::new(BalloonDevice::new(Arc::clone(&shared))),
    )?;
    let handle = BalloonHandle {
        shared: Arc::clone(&shared),
        transport: Arc::clone(&attached.transport),
        ram_mib,
    };
    // Before the guest runs: no interrupt, the driver reads it at probe time.
    let _fits = handle.set_target_mib(target_mib.min(ram_mib));
    let (control, mailbox) =
        threads::control_channel(&name).map_err(|source| BalloonError::Host {
            what: "cannot create an eventfd",
            source,
        })?;
    let worker = event_handler::Worker {
        transport: attached.transport,
        shared,
        notify: attached.notify,
        events: mailbox,
    };
    manager.add_thread(
        "balloon".to_owned(),
        control,
        Box::new(move || worker.run()),
    );
    tracing::info!(
        slot = attached.slot,
        ram_mib,
        target_mib,
        "virtio-balloon ready"
    );
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::mmio::{reg, INT_CONFIG};
    use crate::devices::virtio::test_utils::{test_ram, RecordingRegistrar};

    fn handle(ram_mib: u64) -> BalloonHandle {
        let ram = test_ram(1 << 20);
        let reg = RecordingRegistrar::default();
        let mut m = DeviceManager::new();
        let shared = Arc::new(BalloonShared::default());
        let a = m
            .add(
                &reg,
                &ram,
                "b".into(),
                Box::new(BalloonDevice::new(Arc::clone(&shared))),
            )
            .unwrap();
        BalloonHandle {
            shared,
            transport: a.transport,
            ram_mib,
        }
    }

    #[test]
    fn target_in_mib_becomes_num_pages_and_a_config_interrupt() {
        let h = handle(256);
        h.set_target_mib(64).unwrap();
        let mut b = [0u8; 4];
        h.transport.read(reg::CONFIG, &mut b);
        assert_eq!(u32::from_le_bytes(b), 192 * 256);
        assert_eq!(h.target_mib(), 64);
        assert_eq!(h.actual_mib(), 256, "nothing inflated yet");
        let mut g = [0u8; 4];
        h.transport.read(reg::CONFIG_GENERATION, &mut g);
        assert_eq!(u32::from_le_bytes(g), 1);
        assert_eq!(
            h.set_target_mib(257),
            Err(TargetError::AboveRam {
                target_mib: 257,
                ram_mib: 256
            })
        );
        // The driver reports progress: actual in pages.
        h.transport
            .write(reg::CONFIG + 4, &(100u32 * 256 + 10).to_le_bytes());
        assert_eq!(h.actual_mib(), 156);
        // Writing actual is not a configuration change.
        h.transport.read(reg::CONFIG_GENERATION, &mut g);
        assert_eq!(u32::from_le_bytes(g), 1);
        // Setting the same target again changes nothing.
        h.set_target_mib(64).unwrap();
        h.transport.read(reg::CONFIG_GENERATION, &mut g);
        assert_eq!(u32::from_le_bytes(g), 1);
        h.set_target_mib(256).unwrap();
        h.transport.read(reg::CONFIG, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0);
        // Not live: the generation moves, no interrupt bit.
        let mut i = [0u8; 4];
        h.transport.read(reg::INTERRUPT_STATUS, &mut i);
        assert_eq!(u32::from_le_bytes(i) & INT_CONFIG, 0);
    }
}
