//! What the host can give a domain: memory (RAM + swap, what an overcommitting host could at most
//! hand out) and KVM's vCPU limit.

/// The host's limits a spec is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostLimits {
    /// Host RAM + swap, MiB.
    pub memory_mib: u64,
    /// KVM's vCPUs per VM (`KVM_CAP_MAX_VCPUS`), when KVM could be asked.
    pub kvm_max_vcpus: Option<u32>,
    /// Online host CPUs (numbered from 0).
    pub nr_cpus: u32,
}

impl HostLimits {
    /// Asks this host (`/proc/meminfo`, `/dev/kvm`).
    pub fn probe() -> Self {
        let kvm_max_vcpus = kvm_ioctls::Kvm::new()
            .ok()
            .map(|k| u32::try_from(k.get_max_vcpus()).unwrap_or(u32::MAX).max(1));
        Self {
            memory_mib: host_memory_mib(),
            kvm_max_vcpus,
            nr_cpus: std::thread::available_parallelism()
                .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX)),
        }
    }
}

/// Host RAM + swap in MiB from `/proc/meminfo` (`u64::MAX` when it cannot be read).
pub fn host_memory_mib() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mut total_kib = 0u64;
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let key = it.next().unwrap_or("");
        let val: u64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        if key == "MemTotal:" || key == "SwapTotal:" {
            total_kib = total_kib.saturating_add(val);
        }
    }
    if total_kib == 0 {
        u64::MAX
    } else {
        total_kib / 1024
    }
}
