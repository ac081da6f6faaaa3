//! `mem-set` and `vcpu-set`: a running domain's memory target (within `maxmem`, through its balloon)
//! and its online vCPUs (within `maxvcpus`, through ACPI CPU hotplug).
//!
//! The requests are checked as xl checks them, with libxl's wording where libxl has words. `vcpu-set`
//! asks the VMM (`set-vcpus`: ACPI CPU hotplug) and writes the store's `cpu/N/availability` nodes at
//! once, as libxl does; the VCPUs column follows what the VMM reports (a removal counts once the
//! guest ejected the CPU). `mem-set` moves the VMM's virtio-balloon (`balloon-set`); the guest's
//! driver follows, and the VMM's `state` reports how far (`list`'s Mem column). The target is
//! recorded in the domain's configuration, as libxl records `target_memkb`, so the store's
//! `memory/target` shows it and a reboot keeps it. A valid request the machine cannot follow (no
//! balloon, or a target above the RAM it was built with after `mem-max` raised the ceiling) is
//! refused with a conflict saying why, never accepted silently.

use domus_vmm_api::Request;

use super::vmm::Control;
use super::{ApiError, Daemon};

/// The least memory `mem-set` leaves a domain, MiB. Xen's toolstack refuses targets below its
/// minimum only for dom0; here every guest gets a floor, because a target no kernel can live in
/// makes a guest whose balloon driver obeys it unusable (the guest, not the host, would be the one
/// to fail). 16 MiB: below it not even a minimal Linux with a busybox initramfs stays up; the probe
/// guest keeps its own image and buffers below 32 MiB and simply stops short of a lower target.
pub const MEM_SET_FLOOR_MIB: u64 = 16;

impl Daemon {
    /// Sets the memory target of a domain: the balloon's target in its VMM, recorded as the domain's
    /// `memory` (the store's `memory/target`).
    ///
    /// # Errors
    /// 400 above `maxmem` (libxl's words) or below [`MEM_SET_FLOOR_MIB`]; 409 while the domain is
    /// not running, has no balloon device, or was built with less RAM than asked; 500 when the VMM
    /// cannot be reached.
    pub fn mem_set(&self, spec: &str, mib: u64) -> Result<(), ApiError> {
        Self::refuse_domain0(spec, "set the memory of")?;
        {
            let t = self.lock();
            let (domid, d) = t.lookup(spec)?;
            let maxmem = d.rec.maxmem_mib;
            if mib > maxmem {
                return Err(ApiError::bad_request(format!(
                    "memory_dynamic_max must be less than or equal to memory_static_max \
                     ({mib} MiB asked, maxmem is {maxmem} MiB: raise it first with mem-max)"
                )));
            }
            if mib < MEM_SET_FLOOR_MIB {
                return Err(ApiError::bad_request(format!(
                    "new target {mib} MiB for domain {domid} is below the minimum threshold of {MEM_SET_FLOOR_MIB} MiB"
                )));
            }
        }
        self.writable()?;
        let target = self.running_target(spec, "set the memory of")?;
        let domid = target.domid;
        let unreachable = |e: super::vmm::VmmError| {
            ApiError::internal(format!("domain {domid}: {:#}", anyhow::Error::from(e)))
        };
        let mut ctl = Control::connect(&target.control).map_err(unreachable)?;
        let st = ctl.state().map_err(unreachable)?;
        let Some(balloon) = st.balloon else {
            return Err(ApiError::conflict(format!(
                "domain {domid} has no balloon device (its virtio slots are all taken): its memory stays at {} MiB",
                st.memory_mib
            )));
        };
        if mib > balloon.ram_mib {
            return Err(ApiError::conflict(format!(
                "domain {domid} was started with {} MiB of RAM: it cannot grow to {mib} MiB before its next boot (mem-max raised maxmem after the start)",
                balloon.ram_mib
            )));
        }
        ctl.send(&Request::BalloonSet { target_mib: mib })
            .map_err(unreachable)?;
        let mut t = self.lock();
        let (_, d) = t.lookup_mut(spec)?;
        if d.generation == target.generation {
            let old = d.rec.config.memory_mib;
            d.rec.config.memory_mib = mib;
            if let Err(e) = self.persist(d) {
                d.rec.config.memory_mib = old;
                return Err(e);
            }
            tracing::info!(domid, domname = %d.rec.name, target_mib = mib, "memory target set");
            self.store.update(&Self::store_view(d));
        }
        Ok(())
    }

    /// Sets how many vCPUs of a domain are online.
    ///
    /// # Errors
    /// 400 for 0 or more than `maxvcpus` (libxl's words); 409 for a domain not running; 500 when
    /// the VMM refuses (e.g. a paused domain).
    pub fn vcpu_set(&self, spec: &str, vcpus: u32) -> Result<(), ApiError> {
        Self::refuse_domain0(spec, "set the vCPUs of")?;
        let t = self.lock();
        let (domid, d) = t.lookup(spec)?;
        let max = d.rec.config.maxvcpus.max(d.rec.config.vcpus);
        if vcpus == 0 {
            return Err(ApiError::bad_request(format!(
                "Domain {domid}:Requested 0 VCPUs: a domain keeps at least one"
            )));
        }
        if vcpus > max {
            return Err(ApiError::bad_request(format!(
                "Domain {domid}:Requested {vcpus} VCPUs, however maxcpus is {max}!"
            )));
        }
        drop(t);
        let target = self.running_target(spec, "set the vCPUs of")?;
        self.writable()?;
        Self::send(&target, &domus_vmm_api::Request::SetVcpus { online: vcpus })?;
        let mut t = self.lock();
        let (_, d) = t.lookup_mut(spec)?;
        if d.generation == target.generation {
            // Recorded as libxl records avail_vcpus: `list -l` and the next reboot keep the
            // count; maxvcpus is pinned so a lower count does not lower the ceiling.
            let (old_vcpus, old_max) = (d.rec.config.vcpus, d.rec.config.maxvcpus);
            d.rec.config.maxvcpus = max;
            d.rec.config.vcpus = vcpus;
            if let Err(e) = self.persist(d) {
                d.rec.config.vcpus = old_vcpus;
                d.rec.config.maxvcpus = old_max;
                return Err(e);
            }
            tracing::info!(domid, domname = %d.rec.name, vcpus, "vCPUs online set");
        }
        let mut view = Self::store_view(d);
        view.vcpus = vcpus;
        self.store.update(&view);
        Ok(())
    }
}
