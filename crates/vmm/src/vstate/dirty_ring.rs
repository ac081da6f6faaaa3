//! KVM's dirty ring (`KVM_CAP_DIRTY_LOG_RING[_ACQ_REL]`): per vCPU, a shared ring of
//! `struct kvm_dirty_gfn` (slot, page offset, flags) that KVM fills as the vCPU dirties pages of
//! slots with KVM_MEM_LOG_DIRTY_PAGES. The VMM harvests entries flagged DIRTY (acquire), flags them
//! RESET (release), and KVM_RESET_DIRTY_RINGS gives the slots back to KVM. Measured on the PVM host
//! (`pvm-experiments/e14_dirty_ring`): it reports exactly the pages a CPL3 loop wrote.
//!
//! The ring must be enabled on the VM before any vCPU exists, and once it is, KVM_GET_DIRTY_LOG is
//! refused for that VM: the choice between ring and bitmap is made when the machine is built
//! (`MachineOptions::dirty_ring`; the binary maps `DOMUS_VMM_DIRTY_BITMAP=1` to "bitmap"). A vCPU
//! whose ring is full exits with KVM_EXIT_DIRTY_RING_FULL and waits for the next harvest (the vCPU
//! thread sleeps briefly and retries), which also slows a guest that dirties memory faster than the
//! migration sends it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use kvm_bindings::{
    kvm_dirty_gfn, kvm_enable_cap, KVM_CAP_DIRTY_LOG_RING, KVM_CAP_DIRTY_LOG_RING_ACQ_REL,
    KVM_DIRTY_LOG_PAGE_OFFSET,
};
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};
use vmm_sys_util::ioctl::ioctl;

/// Entries per vCPU ring (16 bytes each): 64 MiB of dirty pages between two harvests.
pub const RING_ENTRIES: u32 = 16384;
/// `size_of::<kvm_dirty_gfn>()` (flags u32, slot u32, offset u64).
const GFN_BYTES: u32 = 16;
const _: () = assert!(std::mem::size_of::<kvm_dirty_gfn>() == GFN_BYTES as usize);
const _: () = assert!(std::mem::offset_of!(kvm_dirty_gfn, flags) == 0);
const F_DIRTY: u32 = 1;
const F_RESET: u32 = 2;

mod nr {
    const KVMIO: u32 = 0xAE;
    vmm_sys_util::ioctl_io_nr!(KVM_RESET_DIRTY_RINGS, KVMIO, 0xc7);
}

/// One vCPU's mapped ring.
struct Ring {
    base: *mut kvm_dirty_gfn,
    bytes: usize,
    next: u32,
}

// SAFETY: the mapping is owned by this struct (unmapped on drop) and only touched under the owning
// Mutex; KVM's concurrent writes go through the flags word, accessed atomically.
unsafe impl Send for Ring {}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: `base`/`bytes` describe the mapping made in `DirtyRings::map`, unmapped once here.
        unsafe { libc::munmap(self.base.cast(), self.bytes) };
    }
}

/// The rings of every vCPU of a VM.
pub struct DirtyRings {
    rings: Mutex<Vec<Ring>>,
}

impl DirtyRings {
    /// Enables the ring on `vm` (no vCPU may exist yet); `None` if KVM does not offer it (or refused).
    pub fn enable(kvm: &Kvm, vm: &VmFd) -> Option<Self> {
        let max = kvm.check_extension_int(Cap::DirtyLogRing);
        let bytes = RING_ENTRIES * GFN_BYTES;
        if max <= 0 || u32::try_from(max).unwrap_or(0) < bytes {
            return None;
        }
        let acq_rel = vm.check_extension_raw(u64::from(KVM_CAP_DIRTY_LOG_RING_ACQ_REL)) > 0;
        let mut cap = kvm_enable_cap {
            cap: if acq_rel {
                KVM_CAP_DIRTY_LOG_RING_ACQ_REL
            } else {
                KVM_CAP_DIRTY_LOG_RING
            },
            ..Default::default()
        };
        cap.args[0] = u64::from(bytes);
        if let Err(e) = vm.enable_cap(&cap) {
            tracing::debug!(error = %e, "KVM refused the dirty ring; dirty bitmap instead");
            return None;
        }
        Some(Self {
            rings: Mutex::new(Vec::new()),
        })
    }

    /// Maps vCPU `fd`'s ring (after creating the vCPU).
    ///
    /// # Errors
    /// mmap failed.
    pub fn map(&self, fd: &VcpuFd) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let bytes = RING_ENTRIES as usize * GFN_BYTES as usize;
        // SAFETY: page size query, no memory involved.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let offset = libc::off_t::from(KVM_DIRTY_LOG_PAGE_OFFSET) * page;
        // SAFETY: a fresh shared mapping of the vCPU fd at KVM's documented ring offset, of the size
        // enabled on the VM; no existing memory is affected.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                offset,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        self.rings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Ring {
                base: base.cast(),
                bytes,
                next: 0,
            });
        Ok(())
    }

    /// Collects every dirty entry of every ring as (slot, page offset), flags them for reset and
    /// gives them back to KVM (KVM_RESET_DIRTY_RINGS).
    ///
    /// # Errors
    /// KVM_RESET_DIRTY_RINGS failed.
    pub fn harvest(&self, vm: &VmFd) -> std::io::Result<Vec<(u32, u64)>> {
        let mut out = Vec::new();
        let mut rings = self
            .rings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for r in rings.iter_mut() {
            loop {
                let i = (r.next % RING_ENTRIES) as usize;
                // SAFETY: `i < RING_ENTRIES`, so the entry lies inside the live mapping.
                let g = unsafe { r.base.add(i) };
                // SAFETY: the flags word of a live, aligned entry, shared with KVM and accessed only
                // atomically (acquire/release: KVM's protocol) for as long as the mapping lives.
                // (`flags` is the struct's first field: the entry's address is the word's.)
                let flags = unsafe { AtomicU32::from_ptr(g.cast::<u32>()) };
                if flags.load(Ordering::Acquire) & F_DIRTY == 0 {
                    break;
                }
                // SAFETY: KVM wrote slot and offset before publishing DIRTY (acquire above); it does not
                // touch the entry again until we set RESET.
                let entry = unsafe { g.read() };
                let (slot, offset) = (entry.slot, entry.offset);
                out.push((slot, offset));
                flags.store(F_RESET, Ordering::Release);
                r.next = r.next.wrapping_add(1);
            }
        }
        drop(rings);
        // SAFETY: KVM_RESET_DIRTY_RINGS takes no argument and touches only the VM's own rings.
        let ret = unsafe { ioctl(vm, nr::KVM_RESET_DIRTY_RINGS()) };
        if ret < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(out)
    }
}
