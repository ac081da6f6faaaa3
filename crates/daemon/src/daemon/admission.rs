//! Admission control: a domain starts only if the memory of every running (or starting) domain, its own
//! and the host's reserve fit the host's memory, as Xen refuses a domain it cannot give memory to. An
//! explicit overcommit setting admits more, and each such admission is logged.

use tracing::warn;

use super::domain::Table;
use super::{host, ApiError, Daemon};

impl Daemon {
    /// The memory (MiB) the table's domains hold: those whose VMM runs or is starting (a preserved,
    /// stopped domain holds none). Counted at their memory target, as Xen counts a populate-on-demand
    /// domain (its VMM maps `maxmem` but the balloon keeps the guest at the target; the cgroup's
    /// memory limit bounds a guest that ignores it).
    pub(super) fn committed_mib(t: &Table) -> u64 {
        t.iter()
            .filter(|d| d.rec.vmm.is_some() || d.starting)
            .map(|d| d.rec.config.memory_mib)
            .fold(0u64, u64::saturating_add)
    }

    /// Whether a domain `name` of `memory_mib` may start now.
    ///
    /// # Errors
    /// 409 naming the figures when it does not fit and overcommit is off.
    pub(super) fn admit(&self, t: &Table, name: &str, memory_mib: u64) -> Result<(), ApiError> {
        let host_mib = self
            .opts
            .host_memory_mib
            .unwrap_or_else(host::total_memory_mib);
        let used = Self::committed_mib(t);
        let need = used
            .saturating_add(memory_mib)
            .saturating_add(self.opts.host_reserve_mib);
        if need <= host_mib {
            return Ok(());
        }
        if self.opts.overcommit {
            warn!(domname = %name, memory_mib, used_mib = used, reserve_mib = self.opts.host_reserve_mib, host_mib, "admitting domain beyond host memory (overcommit enabled)");
            return Ok(());
        }
        Err(ApiError::conflict(format!(
            "cannot start domain '{name}': not enough memory: it needs {memory_mib} MiB, running domains hold {used} MiB and {} MiB are reserved for the host, of {host_mib} MiB (domusd --host-reserve-mib, or --overcommit-memory to allow more)",
            self.opts.host_reserve_mib
        )))
    }
}
