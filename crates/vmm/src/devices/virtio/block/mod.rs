//! virtio-blk (virtio 1.2 §5.2): the machine's disks, one virtio-mmio slot each, in the order of the
//! config's `disk` list.
//!
//! [`attach`] serves a disk whose image or device the spec conversion already opened (so a bad disk
//! is a configuration error before the guest starts), puts a [`device::BlockDevice`] in the next slot
//! of the [`DeviceManager`] and hands it its device thread ([`event_handler`]), which the manager
//! starts, pauses, resumes and stops.
//!
//! Reads and writes go through io_uring from the device thread (`uring.rs`); where io_uring is
//! unavailable, or the machine options turn it off, through a thread pool (`pool.rs`).
//!
//! Offered features: SEG_MAX, SIZE_MAX, BLK_SIZE, FLUSH, RO (for `access=ro` and cdroms), DISCARD and
//! WRITE_ZEROES (writable disks with `discard` enabled). Formats other than raw (qcow, qcow2, vhd, qed)
//! are refused with a clear error: no well-kept Rust crate gives a safe, maintained qcow2 writer that
//! fits here (the `qcow2` crates on crates.io are read-only or unmaintained).

pub mod backend;
pub mod device;
pub mod event_handler;
pub mod pool;
pub mod request;
pub mod uring;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kvm_ioctls::VmFd;
use virtio_bindings::virtio_blk as vb;

use super::manager::{registrar_for, DeviceManager, DeviceManagerError};
use crate::config::VmDisk;
use crate::threads;
use crate::vstate::memory::GuestRam;
use backend::{Backend, BackendError};

/// Queue size.
pub const QUEUE_SIZE: u16 = 256;
/// Data descriptors per request.
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Largest single data descriptor (1 MiB).
pub const SIZE_MAX: u32 = 1 << 20;

/// VIRTIO_BLK_S_OK.
pub const S_OK: u8 = 0;
/// VIRTIO_BLK_S_IOERR.
pub const S_IOERR: u8 = 1;
/// VIRTIO_BLK_S_UNSUPP.
pub const S_UNSUPP: u8 = 2;

const F_SIZE_MAX: u64 = 1 << vb::VIRTIO_BLK_F_SIZE_MAX;
const F_SEG_MAX: u64 = 1 << vb::VIRTIO_BLK_F_SEG_MAX;
const F_RO: u64 = 1 << vb::VIRTIO_BLK_F_RO;
const F_BLK_SIZE: u64 = 1 << vb::VIRTIO_BLK_F_BLK_SIZE;
const F_FLUSH: u64 = 1 << vb::VIRTIO_BLK_F_FLUSH;
const F_DISCARD: u64 = 1 << vb::VIRTIO_BLK_F_DISCARD;
const F_WRITE_ZEROES: u64 = 1 << vb::VIRTIO_BLK_F_WRITE_ZEROES;

/// A disk cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// Backend.
    #[error("disk {vdev}")]
    Backend {
        /// vdev.
        vdev: String,
        /// Cause.
        #[source]
        source: BackendError,
    },
    /// Format without support.
    #[error("disk {vdev}: format {format} is not supported (only raw images and block devices; convert with `qemu-img convert -O raw`)")]
    Format {
        /// vdev.
        vdev: String,
        /// Format name.
        format: String,
    },
    /// No slot, or KVM wiring.
    #[error(transparent)]
    Slot(#[from] DeviceManagerError),
    /// Host resources (eventfd, thread).
    #[error("disk {vdev}: {what}")]
    Host {
        /// vdev.
        vdev: String,
        /// What failed.
        what: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A disk's request counters (xentop's VBD_RD/WR/RSECT/WSECT): bumped by the device thread as it
/// dispatches each read or write the guest queued, read by the control socket's `state`. Relaxed
/// atomics: no lock and no allocation on the I/O path.
#[derive(Debug, Default)]
pub struct BlockStats {
    rd_reqs: AtomicU64,
    wr_reqs: AtomicU64,
    rd_sectors: AtomicU64,
    wr_sectors: AtomicU64,
}

impl BlockStats {
    /// Counts one request of `bytes` (a whole number of sectors), a write when `write`.
    pub fn count(&self, write: bool, bytes: u64) {
        let (reqs, sectors) = if write {
            (&self.wr_reqs, &self.wr_sectors)
        } else {
            (&self.rd_reqs, &self.rd_sectors)
        };
        reqs.fetch_add(1, Ordering::Relaxed);
        sectors.fetch_add(bytes / backend::SECTOR, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> domus_vmm_api::DiskStats {
        domus_vmm_api::DiskStats {
            rd_reqs: self.rd_reqs.load(Ordering::Relaxed),
            wr_reqs: self.wr_reqs.load(Ordering::Relaxed),
            rd_sectors: self.rd_sectors.load(Ordering::Relaxed),
            wr_sectors: self.wr_sectors.load(Ordering::Relaxed),
        }
    }
}

fn id_bytes(vdev: &str) -> [u8; request::ID_BYTES] {
    let mut id = [0u8; request::ID_BYTES];
    for (d, s) in id.iter_mut().zip(vdev.bytes()) {
        *d = s;
    }
    id
}

/// Serves `disk` (its media already open, see `crate::config`): adds it to `manager` with its device
/// thread (started by [`DeviceManager::start_threads`]); `io_uring` false forces the thread pool.
///
/// # Errors
/// [`DiskError`] naming the disk.
pub fn attach(
    manager: &mut DeviceManager,
    vm: &VmFd,
    ram: &GuestRam,
    disk: &VmDisk,
    io_uring: bool,
) -> Result<(), DiskError> {
    let d = &disk.spec;
    let vdev = d.vdev.clone();
    let read_only = d.read_only;
    let backend = match (&disk.file, &d.media) {
        (Some(f), Some(media)) => {
            let backend_err = |source| DiskError::Backend {
                vdev: vdev.clone(),
                source,
            };
            let file = f.try_clone().map_err(|source| {
                backend_err(BackendError::Open {
                    path: media.path.clone(),
                    mode: if read_only { "read-only" } else { "read-write" },
                    source,
                })
            })?;
            Some(Backend::from_file(file, &media.path, read_only, d.direct).map_err(backend_err)?)
        }
        _ => None,
    };
    let sectors = backend.as_ref().map_or(0, Backend::sectors);
    let mut features = F_SIZE_MAX | F_SEG_MAX | F_BLK_SIZE | F_FLUSH;
    if read_only {
        features |= F_RO;
    } else if d.discard {
        features |= F_DISCARD | F_WRITE_ZEROES;
    }
    let model = device::BlockDevice::new(features, sectors);
    let name = format!("virtio-blk {vdev}");
    let registrar = registrar_for(vm, 1);
    let mut attached = manager.add(&*registrar, ram, name.clone(), Box::new(model))?;
    let host = |what: &'static str| {
        let vdev = vdev.clone();
        move |source| DiskError::Host { vdev, what, source }
    };
    let (control, mailbox) =
        threads::control_channel(&name).map_err(host("cannot create an eventfd"))?;
    let notify = attached.notify.remove(0);
    let stats = Arc::new(BlockStats::default());
    manager.add_disk_stats(Arc::clone(&stats));
    let worker = event_handler::Worker {
        stats,
        transport: Arc::clone(&attached.transport),
        backend: backend.map(Arc::new),
        use_uring: io_uring,
        id: id_bytes(&vdev),
        seg_max: SEG_MAX,
        notify,
        events: mailbox,
        thread_name: format!("blk-{vdev}"),
    };
    manager.add_thread_of(
        crate::threads::ThreadKind::Block,
        format!("blk-{vdev}"),
        control,
        Box::new(move || worker.run()),
    );
    tracing::info!(dev = %vdev, slot = attached.slot, sectors, read_only, "virtio-blk disk ready");
    Ok(())
}
