//! `mem-set` and `vcpu-set`: a running domain's memory target (within `maxmem`, through its balloon)
//! and its online vCPUs (within `maxvcpus`, through ACPI CPU hotplug).
//!
//! The requests are checked as xl checks them, with libxl's wording where libxl has words. `vcpu-set`
//! asks the VMM (`set-vcpus`: ACPI CPU hotplug) and writes the store's `cpu/N/availability` nodes at
//! once, as libxl does; the VCPUs column follows what the VMM reports (a removal counts once the
//! guest ejected the CPU). The balloon side of `mem-set` is not built yet: a valid request that would
//! change the domain is refused with a conflict saying so, never accepted silently.

use super::{ApiError, Daemon};

/// The least memory `mem-set` leaves a domain, MiB: below this no supported guest keeps running.
pub const MEM_SET_FLOOR_MIB: u64 = 16;

impl Daemon {
    /// Sets the memory target of a domain.
    ///
    /// # Errors
    /// 400 above `maxmem` (libxl's words) or below [`MEM_SET_FLOOR_MIB`]; 409 while the domain has no
    /// balloon device to follow a change.
    pub fn mem_set(&self, spec: &str, mib: u64) -> Result<(), ApiError> {
        Self::refuse_domain0(spec, "set the memory of")?;
        let t = self.lock();
        let (domid, d) = t.lookup(spec)?;
        let maxmem = d.rec.maxmem_mib;
        let current = d.info().memory_mib;
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
        if mib == current {
            return Ok(());
        }
        Err(ApiError::conflict(format!(
            "domain {domid} has no balloon device yet: its memory stays at {current} MiB"
        )))
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
        if let Some(d) = self.lock().get(domid) {
            let mut view = Self::store_view(d);
            view.vcpus = vcpus;
            self.store.update(&view);
        }
        Ok(())
    }
}
