//! The protocol's messages: requests, the replies that carry data, machine and vCPU states, outcomes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Exit status of a domus-vmm that failed itself (bad configuration, host error) rather than report how
/// its guest stopped.
pub const EXIT_VMM_ERROR: i32 = 1;

/// One control request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// The machine's state ([`StateReply`]).
    State,
    /// Stop every vCPU outside KVM_RUN.
    Pause,
    /// Let them run again.
    Resume,
    /// Press the ACPI power button.
    PowerButton,
    /// Hard reset: the domain stops with a reboot outcome.
    Reset,
    /// Stop the domain now, with a poweroff outcome.
    Destroy,
    /// [`Request::Destroy`], answered only once the guest is paused and every disk lock the VMM held
    /// is released (`F_OFD_SETLK` unlock): the caller may give the disks to another domain when the
    /// reply comes, while the VMM's exit (freeing guest memory, tearing down the VM) goes on in the
    /// background. Refused, with nothing stopped, when the guest cannot be paused or a lock not
    /// released; a VMM that predates it refuses it too ([`refuses_destroy_unlocked`]): the caller
    /// then sends `destroy` and waits for the exit.
    DestroyUnlocked,
    /// The outcome, if the guest stopped ([`OutcomeReply`]).
    Outcome,
    /// The supervisor has the outcome: the VMM may exit.
    AckOutcome,
    /// Set the host CPUs vCPU `vcpu`'s thread may run on.
    VcpuPin {
        /// vCPU index.
        vcpu: u32,
        /// Host CPU numbers.
        cpus: Vec<u32>,
    },
    /// Write an ELF core of the guest (memory and each vCPU's registers) to `path`; the vCPUs stop
    /// while it is written and run on afterwards unless the domain was paused.
    DumpCore {
        /// Absolute path of the file to create.
        path: String,
    },
    /// Inject a non-maskable interrupt into vCPU `vcpu` (xl trigger nmi).
    Nmi {
        /// vCPU index.
        vcpu: u32,
    },
    /// A line BREAK on the serial console followed by `key`: Linux's 8250 console makes it SysRq-`key`.
    Sysrq {
        /// The SysRq key (printable ASCII).
        key: char,
    },
    /// Make vCPUs `0..online` the online ones (xl vcpu-set) through ACPI CPU hotplug: new ones are
    /// inserted at once, removals are asked of the guest (done when it ejects them).
    SetVcpus {
        /// How many vCPUs should be online (1 to the possible count).
        online: u32,
    },
    /// Set the memory the guest should keep, MiB: the balloon's new target (`mem-set`). The guest's
    /// driver follows; [`StateReply::balloon`] shows how far.
    BalloonSet {
        /// The guest's new memory, MiB (at most the machine's RAM).
        target_mib: u64,
    },
    /// Write the machine's snapshot (the VMM's image format) to the descriptor sent with this request
    /// line (SCM_RIGHTS); the guest is paused for it and stays paused unless `resume` (and it was
    /// running before).
    Save {
        /// Let the guest run again afterwards (`xl save -c`).
        #[serde(default)]
        resume: bool,
        /// Send progress lines ([`crate::Progress`]) before the reply, at most this many ms apart.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        progress_ms: Option<u64>,
    },
    /// Live migration, sending side: stream the machine to the descriptor sent with this request line
    /// (SCM_RIGHTS) — guest RAM pre-copied while the guest runs, with KVM's dirty logging, until what is
    /// left fits `downtime_ms`, then the guest is paused and the rest sent with every device's state.
    /// The guest stays paused afterwards (the caller destroys or resumes it); on a failure before the
    /// end it runs on. A paused guest is sent in one pass (no dirty logging) and stays paused, also
    /// on a failure. Replies with [`MigrateReply`].
    Migrate {
        /// Downtime target for the final stop-and-copy, ms (default 300).
        #[serde(default)]
        downtime_ms: Option<u64>,
        /// Send progress lines ([`crate::Progress`]) before the reply, at most this many ms apart
        /// (and one at each phase or round change).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        progress_ms: Option<u64>,
        /// The descriptor sent with the request is a socket for the go byte only (see
        /// `migrate_ready` in domus-vmm); the stream's own descriptor (the pipe to the receiver)
        /// waits on that socket as its first message (SCM_RIGHTS with the one data byte `S`), so the
        /// VMM writes the stream straight to the receiver with no relay in between. A VMM that
        /// predates this refuses the field (the caller then relays the stream itself).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        direct: bool,
    },
}

/// Whether `message` (a VMM's refusal) says it predates [`Request::DestroyUnlocked`].
pub fn refuses_destroy_unlocked(message: &str) -> bool {
    message.contains("unknown variant `destroy-unlocked`")
}

/// What a live migration's sending side did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrateReply {
    /// Bytes written to the stream.
    pub bytes: u64,
    /// Pre-copy rounds (the first sends all of RAM).
    pub iterations: u32,
    /// Dirty pages found after each round, in order (the last is what the stop-and-copy sent).
    pub dirty_pages: Vec<u64>,
    /// Dirty tracking used: `ring` (KVM's dirty ring) or `bitmap` (chosen when the VMM was started:
    /// `DOMUS_VMM_DIRTY_BITMAP=1` in its environment forces the bitmap); `none` for a paused guest,
    /// sent in one pass.
    pub tracking: String,
    /// From the start to the end of the stream, ms.
    pub total_ms: u64,
    /// From pausing the guest to the end of the stream, ms (the source's part of the downtime).
    pub stop_copy_ms: u64,
}

impl Request {
    /// The request's `cmd` word, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::State => "state",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::PowerButton => "power-button",
            Self::Reset => "reset",
            Self::Destroy => "destroy",
            Self::DestroyUnlocked => "destroy-unlocked",
            Self::Outcome => "outcome",
            Self::AckOutcome => "ack-outcome",
            Self::VcpuPin { .. } => "vcpu-pin",
            Self::Sysrq { .. } => "sysrq",
            Self::SetVcpus { .. } => "set-vcpus",
            Self::DumpCore { .. } => "dump-core",
            Self::Nmi { .. } => "nmi",
            Self::Save { .. } => "save",
            Self::Migrate { .. } => "migrate",
            Self::BalloonSet { .. } => "balloon-set",
        }
    }

    /// The progress interval the request asks for (`save` and `migrate` only), ms.
    pub fn progress_ms(&self) -> Option<u64> {
        match self {
            Self::Save { progress_ms, .. } | Self::Migrate { progress_ms, .. } => *progress_ms,
            _ => None,
        }
    }
}

/// The reply to requests that return nothing but success.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {}

/// The machine as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MachineState {
    /// The vCPUs may run.
    Running,
    /// Paused by the toolstack.
    Paused,
    /// The guest stopped; the outcome is known.
    Shutdown,
}

/// One vCPU thread, as the host scheduler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VcpuRunState {
    /// On a host CPU or runnable.
    Running,
    /// Waiting (the guest halted it, or the thread sleeps in the kernel).
    Blocked,
    /// Parked by a pause.
    Paused,
    /// Not online: never plugged in, or ejected by the guest (its thread is parked).
    Offline,
}

/// One vCPU in a [`StateReply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcpuState {
    /// vCPU index.
    pub id: u32,
    /// Host CPU time its thread consumed, nanoseconds.
    pub cpu_time_ns: u64,
    /// What its thread is doing.
    pub state: VcpuRunState,
}

/// Why the guest stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// ACPI S5, a KVM shutdown event, `destroy`, SIGTERM/SIGINT.
    Poweroff,
    /// i8042 reset, ACPI reset register, triple fault, `reset`.
    Reboot,
    /// pvpanic, emulation failure, any other fatal vCPU exit.
    Crash,
}

impl Reason {
    /// The VMM's exit status for this reason: 0 poweroff, 2 reboot, 3 crash.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Poweroff => 0,
            Self::Reboot => 2,
            Self::Crash => 3,
        }
    }

    /// The reason an exit status reports; `None` for [`EXIT_VMM_ERROR`] and anything else unknown.
    pub fn from_exit_code(code: i32) -> Option<Self> {
        match code {
            0 => Some(Self::Poweroff),
            2 => Some(Self::Reboot),
            3 => Some(Self::Crash),
            _ => None,
        }
    }
}

/// How a domain stopped: a reason and what exactly happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Why the guest stopped.
    pub reason: Reason,
    /// What exactly happened (e.g. "ACPI S5 (PM1a_CNT=0x3400)").
    #[serde(default)]
    pub detail: String,
}

impl Outcome {
    /// A new outcome.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }

    /// The VMM's exit status for this outcome ([`Reason::exit_code`]).
    pub fn exit_code(&self) -> u8 {
        self.reason.exit_code()
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self.reason {
            Reason::Poweroff => "powered off",
            Reason::Reboot => "rebooted",
            Reason::Crash => "crashed",
        };
        write!(f, "guest {word}: {}", self.detail)
    }
}

/// The reply to [`Request::State`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateReply {
    /// The machine's state.
    pub state: MachineState,
    /// Set once the guest stopped.
    #[serde(default)]
    pub outcome: Option<Outcome>,
    /// The VMM's process id.
    pub pid: u32,
    /// Every vCPU, in index order.
    #[serde(default)]
    pub vcpus: Vec<VcpuState>,
    /// Guest memory, MiB.
    pub memory_mib: u64,
    /// Milliseconds since the machine started.
    pub uptime_ms: u64,
    /// Each disk's I/O counters, in the config's `disk` order (absent from older VMMs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<DiskStats>,
    /// Each NIC's traffic counters, in the config's `vif` order (absent from older VMMs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nics: Vec<NicStats>,
    /// The balloon, when the machine has one (`memory_mib` is then the RAM the guest keeps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balloon: Option<BalloonState>,
}

/// The balloon in a [`StateReply`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalloonState {
    /// The machine's RAM (the domain's `maxmem` at boot), MiB.
    pub ram_mib: u64,
    /// The memory the guest should keep, MiB (the host's target).
    pub target_mib: u64,
    /// The memory the guest keeps by its driver's report, MiB.
    pub actual_mib: u64,
}

/// One disk's counters since the VMM started, as xentop shows a virtual block device: requests the
/// guest submitted and the 512-byte sectors they carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiskStats {
    /// Read requests (xentop's VBD_RD).
    pub rd_reqs: u64,
    /// Write requests (VBD_WR).
    pub wr_reqs: u64,
    /// Sectors read (VBD_RSECT).
    pub rd_sectors: u64,
    /// Sectors written (VBD_WSECT).
    pub wr_sectors: u64,
}

/// One NIC's counters since the VMM started, from the guest's point of view (xentop's NETTX is what
/// the guest sent): frames and their bytes, virtio-net header excluded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NicStats {
    /// Bytes the guest sent.
    pub tx_bytes: u64,
    /// Frames the guest sent.
    pub tx_packets: u64,
    /// Bytes the guest received.
    pub rx_bytes: u64,
    /// Frames the guest received.
    pub rx_packets: u64,
}

/// The reply to [`Request::Outcome`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeReply {
    /// Set once the guest stopped.
    pub outcome: Option<Outcome>,
}
