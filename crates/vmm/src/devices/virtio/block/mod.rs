//! virtio-blk (virtio 1.2 §5.2): the machine's disks, one virtio-mmio slot each, in the order of the
//! config's `disk` list.
//!
//! [`DiskSet::create`] opens every backend (so a bad disk is a configuration error before the guest
//! starts), builds the transports, registers each slot's QueueNotify ioeventfd and irqfd with KVM and
//! starts one device thread per disk. Dropping the set stops and joins the threads.
//!
//! Reads and writes go through io_uring from the device thread (`uring.rs`); where io_uring is
//! unavailable, or `DOMUS_VMM_NO_IO_URING` is set, through a thread pool (`pool.rs`).
//!
//! Offered features: SEG_MAX, SIZE_MAX, BLK_SIZE, FLUSH, RO (for `access=ro` and cdroms), DISCARD and
//! WRITE_ZEROES (writable disks with `discard` enabled). Formats other than raw (qcow, qcow2, vhd, qed)
//! are refused with a clear error: no well-kept Rust crate gives a safe, maintained qcow2 writer that
//! fits here (the `qcow2` crates on crates.io are read-only or unmaintained).

pub mod backend;
pub mod device;
pub mod pool;
pub mod request;
pub mod uring;

use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::VmDisk;
use kvm_ioctls::{IoEventAddress, NoDatamatch};
use vmm_sys_util::eventfd::EventFd;

use super::mmio::{reg, MmioTransport};
use super::{slot_base, slot_gsi, MAX_DEVICES};
use crate::vstate::memory::GuestMem;
use crate::vstate::vm::Vm;
use backend::{Backend, BackendError};

/// Virtio device id of a block device.
pub const DEVICE_ID: u32 = 2;
/// Queue size.
pub const QUEUE_SIZE: u16 = 256;
/// Data descriptors per request.
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Largest single data descriptor (1 MiB).
pub const SIZE_MAX: u32 = 1 << 20;

const F_SIZE_MAX: u64 = 1 << 1;
const F_SEG_MAX: u64 = 1 << 2;
const F_RO: u64 = 1 << 5;
const F_BLK_SIZE: u64 = 1 << 6;
const F_FLUSH: u64 = 1 << 9;
const F_DISCARD: u64 = 1 << 13;
const F_WRITE_ZEROES: u64 = 1 << 14;

/// The disks cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// Backend.
    #[error("disk {vdev}: {source}")]
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
    /// Too many disks.
    #[error("{0} disks: at most {MAX_DEVICES} virtio devices fit the machine's interrupt lines")]
    TooMany(usize),
    /// KVM or host resources.
    #[error("disk {vdev}: {what}")]
    Host {
        /// vdev.
        vdev: String,
        /// What failed.
        what: String,
    },
}

/// The running disks.
pub struct DiskSet {
    transports: Vec<Arc<MmioTransport>>,
    threads: Vec<(EventFd, JoinHandle<()>)>,
}

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

fn id_bytes(vdev: &str) -> [u8; request::ID_BYTES] {
    let mut id = [0u8; request::ID_BYTES];
    for (d, s) in id.iter_mut().zip(vdev.bytes()) {
        *d = s;
    }
    id
}

impl DiskSet {
    /// Serves `disks` (their media already open, see `crate::config`) and starts their devices.
    ///
    /// # Errors
    /// [`DiskError`] naming the disk.
    pub fn create(vm: &Vm, mem: &GuestMem, disks: &[VmDisk]) -> Result<Self, DiskError> {
        if disks.len() > MAX_DEVICES {
            return Err(DiskError::TooMany(disks.len()));
        }
        let mut set = Self {
            transports: Vec::new(),
            threads: Vec::new(),
        };
        if !disks.is_empty() {
            huge_pages(mem);
        }
        for (i, disk) in disks.iter().enumerate() {
            let d = &disk.spec;
            let vdev = d.vdev.clone();
            let host = |what: &str| {
                let vdev = vdev.clone();
                let what = what.to_owned();
                move |e: &dyn std::fmt::Display| DiskError::Host {
                    vdev,
                    what: format!("{what}: {e}"),
                }
            };
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
                    Some(
                        Backend::from_file(file, &media.path, read_only, d.direct)
                            .map_err(backend_err)?,
                    )
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
            let irq = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| host("eventfd")(&e))?;
            vm.fd()
                .register_irqfd(&irq, slot_gsi(i))
                .map_err(|e| host("cannot register the irqfd")(&e))?;
            let notify = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| host("eventfd")(&e))?;
            vm.fd()
                .register_ioevent(
                    &notify,
                    &IoEventAddress::Mmio(slot_base(i) + reg::QUEUE_NOTIFY),
                    NoDatamatch,
                )
                .map_err(|e| host("cannot register the ioeventfd")(&e))?;
            let transport = Arc::new(
                MmioTransport::new(
                    format!("virtio-blk {vdev}"),
                    DEVICE_ID,
                    features,
                    config_space(sectors),
                    QUEUE_SIZE,
                    mem.clone(),
                    irq,
                )
                .map_err(|e| host("queue")(&e))?,
            );
            let stop = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| host("eventfd")(&e))?;
            let backend = backend.map(Arc::new);
            let uring = match &backend {
                Some(_) if std::env::var_os("DOMUS_VMM_NO_IO_URING").is_some() => None,
                Some(_) => match uring::Uring::new(u32::from(QUEUE_SIZE)) {
                    Ok(u) => Some(u),
                    Err(e) => {
                        tracing::info!(vdev = %vdev, error = %e, "io_uring unavailable: using I/O threads");
                        None
                    }
                },
                None => None,
            };
            let pool = match &backend {
                Some(b) if uring.is_none() => Some(
                    pool::Pool::new(&format!("blk-{vdev}"), b, &transport)
                        .map_err(|e| host("cannot start the I/O threads")(&e))?,
                ),
                _ => None,
            };
            let worker = device::Worker {
                transport: Arc::clone(&transport),
                backend,
                pool,
                uring,
                id: id_bytes(&vdev),
                seg_max: SEG_MAX,
                notify,
                stop: stop.try_clone().map_err(|e| host("eventfd")(&e))?,
            };
            let h = std::thread::Builder::new()
                .name(format!("blk-{vdev}"))
                .spawn(move || worker.run())
                .map_err(|e| host("cannot start the device thread")(&e))?;
            tracing::info!(vdev = %vdev, slot = i, sectors, read_only, "virtio-blk disk ready");
            set.transports.push(transport);
            set.threads.push((stop, h));
        }
        Ok(set)
    }

    /// The transports, slot order.
    pub fn transports(&self) -> Vec<Arc<MmioTransport>> {
        self.transports.clone()
    }
}

/// Asks for transparent huge pages on guest RAM: O_DIRECT transfers pin the guest's buffers page
/// by page, and 2 MiB pages make a 1 MiB transfer one pin instead of 256 (QEMU does the same).
fn huge_pages(mem: &GuestMem) {
    use vm_memory::{GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};
    for r in mem.iter() {
        let Ok(host) = r.get_host_address(MemoryRegionAddress(0)) else {
            continue;
        };
        let len = usize::try_from(r.len()).unwrap_or(0);
        // SAFETY: `host`/`len` is exactly one live guest RAM mapping; MADV_HUGEPAGE only changes how
        // the kernel backs it, never its contents or validity.
        let rc = unsafe { libc::madvise(host.cast(), len, libc::MADV_HUGEPAGE) };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "MADV_HUGEPAGE refused");
        }
    }
}

impl Drop for DiskSet {
    fn drop(&mut self) {
        for (stop, _) in &self.threads {
            let _ignored = stop.write(1);
        }
        for (_, h) in self.threads.drain(..) {
            let _ignored = h.join();
        }
    }
}
