//! The KVM VM: guest memory slots, in-kernel irqchip (PIC + IOAPIC + LAPICs) and PIT.

use kvm_bindings::{
    kvm_pit_config, kvm_userspace_memory_region, KVM_MEM_LOG_DIRTY_PAGES, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::VmFd;
use vm_memory::{Address, GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};

use super::kvm::KvmSystem;
use super::memory::GuestMem;

/// TSS address for VT-x's real-mode emulation (three pages just below the 4 GiB BIOS area, as Firecracker).
const KVM_TSS_ADDRESS: usize = 0xfffb_d000;

/// Creating or configuring the VM failed.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// KVM_CREATE_VM.
    #[error("KVM_CREATE_VM failed")]
    Create(#[source] kvm_ioctls::Error),
    /// KVM_SET_USER_MEMORY_REGION.
    #[error("cannot register guest memory slot {slot} (gpa {gpa:#x}, {size} bytes) with KVM")]
    MemorySlot {
        /// Slot number.
        slot: u32,
        /// Guest physical start.
        gpa: u64,
        /// Size in bytes.
        size: u64,
        /// Cause.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// Host address of a region.
    #[error("cannot get the host address of guest memory region at {gpa:#x}")]
    HostAddress {
        /// Guest physical start.
        gpa: u64,
        /// Cause.
        #[source]
        source: vm_memory::guest_memory::Error,
    },
    /// KVM_CREATE_IRQCHIP.
    #[error("KVM_CREATE_IRQCHIP failed")]
    Irqchip(#[source] kvm_ioctls::Error),
    /// KVM_CREATE_PIT2.
    #[error("KVM_CREATE_PIT2 failed")]
    Pit(#[source] kvm_ioctls::Error),
}

/// Registers (or re-registers, to change `flags`) every region of `mem` as a KVM memory slot.
fn register_slots(fd: &VmFd, mem: &GuestMem, flags: u32) -> Result<(), VmError> {
    for (slot, region) in mem.iter().enumerate() {
        let gpa = region.start_addr().raw_value();
        let host = region
            .get_host_address(MemoryRegionAddress(0))
            .map_err(|source| VmError::HostAddress { gpa, source })?;
        let slot = u32::try_from(slot).unwrap_or(u32::MAX);
        let desc = kvm_userspace_memory_region {
            slot,
            flags,
            guest_phys_addr: gpa,
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        // SAFETY: `host` is the start of a live mmap of exactly `region.len()` bytes owned by `mem`,
        // and the caller keeps `mem` alive as long as the VM (the machine owns both and drops the VM
        // first); slots do not overlap because the regions of a GuestMemoryMmap do not. Re-registering
        // the same slot with the same range only changes its flags.
        unsafe { fd.set_user_memory_region(desc) }.map_err(|source| VmError::MemorySlot {
            slot,
            gpa,
            size: region.len(),
            source,
        })?;
    }
    Ok(())
}

/// The VM file descriptor with its memory registered and interrupt controllers created.
pub struct Vm {
    fd: VmFd,
    /// The dirty ring, when enabled ([`Vm::enable_dirty_ring`]); else dirty logging uses the bitmap.
    ring: Option<super::dirty_ring::DirtyRings>,
}

impl Vm {
    /// Creates the VM, registers `mem`, creates the in-kernel irqchip and PIT2.
    ///
    /// # Errors
    /// [`VmError`] naming the step that failed.
    pub fn new(kvm: &KvmSystem, mem: &GuestMem) -> Result<Self, VmError> {
        let fd = kvm.kvm.create_vm().map_err(VmError::Create)?;
        if let Err(e) = fd.set_tss_address(KVM_TSS_ADDRESS) {
            tracing::debug!(error = %e, "KVM_SET_TSS_ADDR failed (not needed on every KVM)");
        }
        register_slots(&fd, mem, 0)?;
        fd.create_irq_chip().map_err(VmError::Irqchip)?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit).map_err(VmError::Pit)?;
        Ok(Self { fd, ring: None })
    }

    /// Enables KVM's dirty ring for live migration's dirty tracking where KVM offers it (before any
    /// vCPU is created); returns whether it is on. Without it, the dirty bitmap is used.
    pub fn enable_dirty_ring(&mut self, kvm: &KvmSystem) -> bool {
        self.ring = super::dirty_ring::DirtyRings::enable(&kvm.kvm, &self.fd);
        self.ring.is_some()
    }

    /// Maps vCPU `fd`'s dirty ring (when the ring is on); call once per vCPU after creating it.
    ///
    /// # Errors
    /// mmap failed.
    pub fn map_dirty_ring(&self, fd: &kvm_ioctls::VcpuFd) -> std::io::Result<()> {
        match &self.ring {
            Some(r) => r.map(fd),
            None => Ok(()),
        }
    }

    /// `ring` or `bitmap`: how dirty pages are tracked.
    pub fn dirty_tracking(&self) -> &'static str {
        if self.ring.is_some() {
            "ring"
        } else {
            "bitmap"
        }
    }

    /// The VM fd (for vCPU creation and irqfds).
    pub fn fd(&self) -> &VmFd {
        &self.fd
    }

    /// Turns KVM's dirty-page logging (the bitmap: KVM_MEM_LOG_DIRTY_PAGES) on or off for every slot.
    ///
    /// # Errors
    /// [`VmError::MemorySlot`].
    pub fn set_dirty_logging(&self, mem: &GuestMem, on: bool) -> Result<(), VmError> {
        let flags = if on { KVM_MEM_LOG_DIRTY_PAGES } else { 0 };
        register_slots(&self.fd, mem, flags)
    }

    /// The guest-physical addresses of the 4 KiB pages the vCPUs wrote since the previous call (or
    /// since logging was turned on): harvested from the dirty rings when they are on, else from
    /// KVM's bitmap (which KVM clears as it hands it over).
    ///
    /// # Errors
    /// KVM_GET_DIRTY_LOG failed.
    pub fn take_dirty_pages(&self, mem: &GuestMem) -> Result<Vec<u64>, kvm_ioctls::Error> {
        let mut pages = Vec::new();
        if let Some(ring) = &self.ring {
            let bases: Vec<(u64, u64)> = mem
                .iter()
                .map(|r| (r.start_addr().raw_value(), r.len()))
                .collect();
            let entries = ring
                .harvest(&self.fd)
                .map_err(|e| kvm_ioctls::Error::new(e.raw_os_error().unwrap_or(libc::EIO)))?;
            for (slot, page) in entries {
                let Some(&(base, len)) = usize::try_from(slot).ok().and_then(|s| bases.get(s))
                else {
                    continue;
                };
                let off = page.saturating_mul(4096);
                if off < len {
                    pages.push(base + off);
                }
            }
            return Ok(pages);
        }
        for (slot, region) in mem.iter().enumerate() {
            let slot = u32::try_from(slot).unwrap_or(u32::MAX);
            let len = usize::try_from(region.len()).unwrap_or(usize::MAX);
            let bitmap = self.fd.get_dirty_log(slot, len)?;
            let base = region.start_addr().raw_value();
            for (i, word) in bitmap.iter().enumerate() {
                let mut w = *word;
                while w != 0 {
                    let bit = u64::from(w.trailing_zeros());
                    w &= w - 1;
                    pages.push(base + ((i as u64) * 64 + bit) * 4096);
                }
            }
        }
        Ok(pages)
    }

    /// Drives an IOAPIC/PIC input line.
    pub fn set_irq_line(&self, gsi: u32, level: bool) {
        if let Err(e) = self.fd.set_irq_line(gsi, level) {
            tracing::warn!(gsi, level, error = %e, "KVM_IRQ_LINE failed");
        }
    }

    /// Pulses a line (assert then deassert): how the SCI is raised under PVM, whose in-kernel IOAPIC
    /// treats a level interrupt as EOI'd at delivery (ENVIRONMENT.md, `smp-acpi/p4_sci`).
    pub fn pulse_irq_line(&self, gsi: u32) {
        self.set_irq_line(gsi, true);
        self.set_irq_line(gsi, false);
    }
}
