//! API message types exchanged by `domus` and `domusd` (see the crate docs for the routes).
//!
//! These are the only definitions of the messages; both sides use them, so they cannot drift apart.
//! Requests deny unknown fields; replies tolerate them, so a newer daemon may add fields.

use serde::{Deserialize, Serialize};

/// What a vCPU is doing, as its VMM reports it.
pub use domus_vmm_api::VcpuRunState;
/// One disk's and one NIC's I/O counters, as the domain's VMM reports them.
pub use domus_vmm_api::{DiskStats, NicStats};

/// Name of the host's own row, as xl prints it.
pub const DOMAIN0_NAME: &str = "Domain-0";

/// Lifecycle state of a domain, as `xl list` knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainState {
    /// At least one vCPU is running guest code.
    Running,
    /// Every vCPU waits for an interrupt.
    Blocked,
    /// Paused by the toolstack.
    Paused,
    /// The guest stopped (powered off or rebooted) and the domain is kept.
    Shutdown,
    /// The guest crashed and the domain is kept (`on_crash = "preserve"`).
    Crashed,
    /// Being destroyed.
    Dying,
}

/// Why a domain's guest stopped; Xen's `SHUTDOWN_*` codes in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShutdownReason {
    /// ACPI S5 (xl's code 0).
    Poweroff,
    /// Reset (code 1).
    Reboot,
    /// Suspend (code 2; never produced here).
    Suspend,
    /// Crash (code 3).
    Crash,
    /// Watchdog (code 4; never produced here).
    Watchdog,
    /// Soft reset (code 5; never produced here).
    SoftReset,
}

impl ShutdownReason {
    /// Xen's numeric shutdown code (`xl list -v`'s Reason-Code).
    pub fn code(self) -> u32 {
        match self {
            Self::Poweroff => 0,
            Self::Reboot => 1,
            Self::Suspend => 2,
            Self::Crash => 3,
            Self::Watchdog => 4,
            Self::SoftReset => 5,
        }
    }

    /// The letter `xl list` prints in its fifth state column.
    pub fn letter(self) -> char {
        match self {
            Self::Poweroff => '-',
            Self::Reboot => 'r',
            Self::Suspend => 's',
            Self::Crash => 'c',
            Self::Watchdog => 'w',
            Self::SoftReset => 'S',
        }
    }
}

/// One vCPU as `vcpu-list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VcpuInfo {
    /// vCPU number inside the guest.
    pub id: u32,
    /// `running`, `blocked` or `paused` (as the VMM reports).
    pub state: VcpuRunState,
    /// Host CPU time consumed, nanoseconds.
    pub cpu_time_ns: u64,
    /// Host CPUs the vCPU thread is pinned to; `None` = all.
    pub affinity: Option<Vec<u32>>,
    /// Soft affinity (stored and reported; Linux does not enforce it); `None` = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_affinity: Option<Vec<u32>>,
    /// The host CPU its thread last ran on, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
}

/// Everything the CLI shows about one domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainInfo {
    /// Domain id (0 = the host).
    pub domid: u32,
    /// Unique name.
    pub name: String,
    /// UUID, lowercase with dashes.
    pub uuid: String,
    /// Current state.
    pub state: DomainState,
    /// Why the guest stopped, once it did.
    pub shutdown_reason: Option<ShutdownReason>,
    /// Detail the VMM gave for the stop (e.g. "pvpanic").
    pub stop_detail: Option<String>,
    /// Current memory, MiB.
    pub memory_mib: u64,
    /// Maximum memory, MiB.
    pub maxmem_mib: u64,
    /// Online vCPUs.
    pub vcpus: u32,
    /// Total vCPU time, nanoseconds.
    pub cpu_time_ns: u64,
    /// Start time, seconds since the Unix epoch.
    pub start_time: f64,
    /// Seconds since the guest started (frozen once it stopped).
    pub uptime_s: f64,
    /// Per-vCPU detail (empty when no VMM runs).
    pub vcpu_info: Vec<VcpuInfo>,
    /// Unix socket of the domain's console (while a VMM runs).
    pub console_path: Option<String>,
    /// Process id of the domain's domus-vmm.
    pub pid: Option<u32>,
    /// Restarts done by on_reboot/on_crash = restart under this name.
    pub restarts: u32,
    /// The domain's configuration; `null` for Domain-0.
    pub config: Option<domus_config::DomainConfig>,
    /// Scheduler weight and cap (Domain-0: the defaults).
    #[serde(default = "default_sched")]
    pub sched: SchedInfo,
    /// In the reply to a create with `bootloader = "pygrub"`: what it chose and its warnings, one line
    /// each (empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub boot: Vec<String>,
    /// Each disk's I/O counters, in the configuration's `disk` order, while a VMM runs (empty when
    /// none runs or it does not count; xentop then prints `-`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disk_stats: Vec<DiskStats>,
    /// Each NIC's traffic counters, in the configuration's `vif` order, while a VMM runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nic_stats: Vec<NicStats>,
}

fn default_sched() -> SchedInfo {
    SchedInfo {
        weight: 256,
        cap: 0,
    }
}

/// `POST /v1/domains`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// The domain's configuration (as `domus create -N --json` prints it), with paths already absolute.
    pub config: domus_config::DomainConfig,
    /// Leave the domain paused once created (`create -p`).
    #[serde(default)]
    pub paused: bool,
}

/// `POST /v1/domains/DOM/shutdown`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownRequest {
    /// xl's `-F` (fall back to the ACPI power button); the power button is all we use anyway.
    #[serde(default)]
    pub force: bool,
}

/// `POST /v1/domains/DOM/reboot`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RebootRequest {
    /// Hard reset now, instead of pressing the power button and restarting the domain once the guest
    /// powers off.
    #[serde(default)]
    pub force: bool,
}

/// `POST /v1/domains/DOM/sysrq`: a serial BREAK followed by `key` (xl sysrq).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SysrqRequest {
    /// The SysRq key (printable ASCII).
    pub key: char,
}

/// `POST /v1/domains/DOM/dump-core`: an ELF core of the guest (xl dump-core).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DumpCoreRequest {
    /// Absolute path of the core file to write (on the host).
    pub path: String,
}

/// `POST /v1/domains/DOM/save`: write the domain's image to `path` (xl save).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveRequest {
    /// Absolute path of the image to create (on the host); it appears only once complete.
    pub path: String,
    /// Leave the domain running afterwards (`-c`) instead of destroying it.
    #[serde(default)]
    pub keep: bool,
    /// With `keep`: leave it paused (`-p`).
    #[serde(default)]
    pub paused: bool,
    /// The configuration to embed instead of the domain's own (xl save's CONFIG argument).
    #[serde(default)]
    pub config: Option<domus_config::DomainConfig>,
    /// Have the VMM report progress at most this many ms apart while it writes: the latest report
    /// is served by `GET /v1/domains/DOM/progress` meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_ms: Option<u64>,
}

/// `GET /v1/domains/DOM/progress`: the latest progress report of the save the domain is in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressReply {
    /// None when no save of the domain is running or it has not reported yet.
    #[serde(default)]
    pub progress: Option<domus_vmm_api::Progress>,
}

/// `POST /v1/restore`: recreate a saved domain from the image at `path` (xl restore).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// Absolute path of the image (on the host).
    pub path: String,
    /// Leave the domain paused (`-p`).
    #[serde(default)]
    pub paused: bool,
    /// The configuration to use instead of the one embedded in the image (it must describe the same
    /// machine: memory, vCPUs, devices).
    #[serde(default)]
    pub config: Option<domus_config::DomainConfig>,
    /// The image is a live migration's stream (`migrate-receive`): the source still holds its
    /// writable disks' locks, which the new VMM takes over once the stream is in.
    #[serde(default)]
    pub incoming: bool,
    /// The image is not at `path` (which then only names it in messages) but passed with the request
    /// (SCM_RIGHTS): the first descriptor is the stream (a pipe or file, read from where it stands),
    /// the second, optional, gets one byte from the new VMM once it reads the stream.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passed: bool,
}

/// `POST /v1/domains/DOM/trigger` (xl trigger, and xl button-press as `power`/`sleep`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerRequest {
    /// `power`, `sleep`, `nmi`, `init`, `reset` or `s3resume`.
    pub trigger: String,
    /// The vCPU, for `nmi` and `init` (xl's optional VCPU argument; 0 when absent).
    #[serde(default)]
    pub vcpu: Option<u32>,
}

/// `POST /v1/domains/DOM/rename`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameRequest {
    /// The new name.
    pub name: String,
}

/// `POST /v1/domains/DOM/vcpu-pin`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VcpuPinRequest {
    /// vCPU to pin; `None` = every vCPU.
    pub vcpu: Option<u32>,
    /// Host CPUs allowed; empty = all.
    pub cpus: Vec<u32>,
    /// Leave the hard affinity as it is (xl's `-` for HARD); `cpus` is then ignored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hard_unchanged: bool,
    /// New soft affinity (empty = all); `None` leaves it as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft: Option<Vec<u32>>,
}

/// A domain's scheduler parameters in xl's credit-scheduler terms (mapped onto its cgroup).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedInfo {
    /// Weight (1-65535; 256 = the default share).
    pub weight: u32,
    /// Cap, percent of one CPU (0 = none).
    pub cap: u32,
}

/// `POST /v1/domains/DOM/sched-credit`: change the weight, the cap or both.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedCreditRequest {
    /// New weight (1-65535).
    #[serde(default)]
    pub weight: Option<u32>,
    /// New cap (percent of one CPU, 0 = none).
    #[serde(default)]
    pub cap: Option<u32>,
}

/// `POST /v1/domains/DOM/mem-set`: the balloon's target.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemSetRequest {
    /// New target, MiB.
    pub mib: u64,
}

/// `POST /v1/domains/DOM/vcpu-set`: how many vCPUs are online.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VcpuSetRequest {
    /// vCPUs online (1 to maxvcpus).
    pub vcpus: u32,
}

/// `POST /v1/domains/DOM/mem-max`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemMaxRequest {
    /// New maximum, MiB.
    pub mib: u64,
}

/// `POST /v1/domains/DOM/config-update`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigUpdateRequest {
    /// The new configuration, used from the domain's next restart.
    pub config: domus_config::DomainConfig,
}

/// `GET /v1/host`: facts `xl info` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Host name.
    pub host: String,
    /// Kernel release (`uname -r`).
    pub release: String,
    /// Kernel version string (`uname -v`).
    pub version: String,
    /// Machine (`uname -m`).
    pub machine: String,
    /// Online CPUs.
    pub nr_cpus: u32,
    /// CPU clock, MHz (0 when unknown).
    pub cpu_mhz: u64,
    /// Total memory, MiB.
    pub total_memory_mib: u64,
    /// Free memory, MiB.
    pub free_memory_mib: u64,
    /// Virtualization capabilities (`pvh hvm` style).
    pub virt_caps: String,
    /// Whether /dev/kvm is usable.
    pub kvm: bool,
    /// domusd's version.
    pub domus_version: String,
    /// Domains domusd runs (Domain-0 excluded).
    pub nr_domains: u32,
    /// Store socket path.
    pub xenstored_socket: String,
}

/// `GET /v1/dmesg`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DmesgReply {
    /// domusd's recent log lines, oldest first.
    pub lines: Vec<String>,
}

/// The body of every non-2xx reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What went wrong, ready to show to the user.
    pub error: String,
}

/// Percent-encodes a domain name or id for use as one path segment.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes [`encode_segment`]'s output; `None` for malformed escapes or non-UTF-8 results.
pub fn decode_segment(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip() {
        for s in ["hello", "a b/c%d", "Domain-0", "ünï", ""] {
            assert_eq!(decode_segment(&encode_segment(s)).as_deref(), Some(s));
        }
        assert_eq!(encode_segment("a b"), "a%20b");
        assert_eq!(decode_segment("%zz"), None);
        assert_eq!(decode_segment("%4"), None);
    }

    #[test]
    fn reason_letters_match_xl() {
        let all = [
            ShutdownReason::Poweroff,
            ShutdownReason::Reboot,
            ShutdownReason::Suspend,
            ShutdownReason::Crash,
            ShutdownReason::Watchdog,
            ShutdownReason::SoftReset,
        ];
        let letters: String = all.iter().map(|r| r.letter()).collect();
        assert_eq!(letters, "-rscwS");
        assert_eq!(all.map(|r| r.code()), [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn create_request_denies_unknown_fields() {
        let config = domus_config::DomainConfig::with_defaults("x");
        let json = serde_json::to_value(CreateRequest {
            config,
            paused: false,
        })
        .unwrap();
        let mut bogus = json.clone();
        bogus["bogus"] = 1.into();
        assert!(serde_json::from_value::<CreateRequest>(bogus).is_err());
        let mut short = json;
        short.as_object_mut().unwrap().remove("paused");
        let ok: CreateRequest = serde_json::from_value(short).unwrap();
        assert!(!ok.paused);
        assert_eq!(ok.config.name, "x");
    }
}
