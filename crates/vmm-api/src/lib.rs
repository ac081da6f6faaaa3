//! The control protocol between domusd and a domus-vmm, defined once for both sides.
//!
//! Every domus-vmm started with `--control PATH` serves a unix stream socket there carrying
//! newline-delimited JSON: one [`Request`] line, one reply line, any number of requests per connection
//! and any number of clients. domus-vmm answers with [`Reply::encode`] / [`encode_refusal`]; domusd sends
//! with [`encode_request`] and reads the reply with [`decode_reply`] into the type the request calls for.
//! This crate holds only serde types and the line codec (serde_json): it is linked into every VMM, whose
//! resident size matters.
//!
//! # Wire format
//! ```text
//! {"cmd":"state"}        -> {"ok":true,"state":"running"|"paused"|"shutdown",
//!                            "outcome":null|{"reason":"poweroff"|"reboot"|"crash","detail":"..."},
//!                            "pid":N,"vcpus":[{"id":0,"cpu_time_ns":N,"state":"running"|"blocked"|"paused"|"offline"}],
//!                            "memory_mib":M,"uptime_ms":N,
//!                            "disks":[{"rd_reqs":N,"wr_reqs":N,"rd_sectors":N,"wr_sectors":N}],
//!                            "nics":[{"tx_bytes":N,"tx_packets":N,"rx_bytes":N,"rx_packets":N}],
//!                            "balloon":{"ram_mib":R,"target_mib":T,"actual_mib":A}}
//!                            (StateReply; `disks`/`nics`/`balloon` left out when the machine has none;
//!                            with a balloon, memory_mib = actual_mib: what the guest keeps)
//! {"cmd":"pause"}        -> {"ok":true}   all vCPUs stopped outside KVM_RUN                   (Done)
//! {"cmd":"resume"}       -> {"ok":true}                                                        (Done)
//! {"cmd":"power-button"} -> {"ok":true}   ACPI fixed power button (PWRBTN_STS + SCI if enabled) (Done)
//! {"cmd":"reset"}        -> {"ok":true}   the domain stops with outcome "reboot" (exit status 2) (Done)
//! {"cmd":"destroy"}      -> {"ok":true}   the domain stops with outcome "poweroff"               (Done)
//! {"cmd":"outcome"}      -> {"ok":true,"outcome":null|{...}}                                   (OutcomeReply)
//! {"cmd":"ack-outcome"}  -> {"ok":true}   the supervisor has the outcome: the VMM may exit now   (Done)
//! {"cmd":"vcpu-pin","vcpu":K,"cpus":[...]} -> {"ok":true}   host CPU affinity of vCPU K's thread (Done)
//! {"cmd":"sysrq","key":"h"} -> {"ok":true}   serial BREAK, then the key (SysRq for Linux)         (Done)
//! {"cmd":"nmi","vcpu":K} -> {"ok":true}   KVM_NMI on vCPU K (delivered before its next guest entry)   (Done)
//! {"cmd":"dump-core","path":"/abs/file"} -> {"ok":true}   ELF core of memory + vCPU registers     (Done)
//! {"cmd":"save","resume":B[,"progress_ms":N]} + descriptor -> {"ok":true}   snapshot stream written
//!                            to it (xl save)                                                    (Done)
//! {"cmd":"migrate","downtime_ms":N[,"progress_ms":N][,"direct":true]} + descriptor -> {"ok":true,"bytes":N,"iterations":N,
//!                            "dirty_pages":[...],"tracking":"ring"|"bitmap","total_ms":N,"stop_copy_ms":N}
//!                            live stream (pre-copy, then stop-and-copy); guest left paused (MigrateReply)
//! {"cmd":"set-vcpus","online":N} -> {"ok":true}   vCPUs 0..N online via ACPI CPU hotplug (removals
//!                            complete when the guest ejects)                                    (Done)
//! {"cmd":"balloon-set","target_mib":N} -> {"ok":true}   the balloon's new target (mem-set)          (Done)
//! anything refused       -> {"ok":false,"error":"message"}
//! ```
//! `save` and `migrate` with `progress_ms` get progress lines (`{"progress":{...}}`, [`Progress`]) before
//! their reply, at most `progress_ms` apart and one at each phase or round change: read them with
//! [`decode_line`] (see the `progress` module). Without it they get the one reply line.
//! `save` and `migrate` need the descriptor to write to sent with the request line (SCM_RIGHTS): the VMM
//! never opens a path for them. `migrate` with `direct`: that descriptor is a socket carrying the go
//! byte, and the stream's own descriptor waits on it (see [`Request::Migrate`]).
//! Requests with fields deny unknown ones (serde ignores extra fields next to a field-less `cmd`); replies
//! tolerate unknown fields, so a newer VMM may add some. Request lines are
//! capped at [`MAX_REQUEST_BYTES`], reply lines at [`MAX_REPLY_BYTES`].
//!
//! # Lifetime and exit status
//! After the guest stops, the VMM keeps its socket open until a client sends `ack-outcome` or a bounded
//! time passes, so a supervisor that re-attaches still learns the [`Outcome`]; then it exits with the
//! outcome's status ([`Reason::exit_code`]: 0 poweroff, 2 reboot, 3 crash; [`EXIT_VMM_ERROR`] when the
//! VMM itself failed before or while running the guest) and removes the socket.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod codec;
mod progress;
mod types;

pub use codec::{
    decode_reply, decode_request, encode_ok, encode_refusal, encode_request, Reply, ReplyBody,
    ReplyError,
};
pub use progress::{
    decode_line, encode_progress, refuses_direct, refuses_progress, Line, Phase, Progress,
};
pub use types::{
    refuses_destroy_unlocked, BalloonState, DiskStats, Done, MachineState, MigrateReply, NicStats,
    Outcome, OutcomeReply, Reason, Request, StateReply, VcpuRunState, VcpuState, EXIT_VMM_ERROR,
};

/// Longest request line a VMM accepts (without its newline).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Longest reply line a client accepts (with its newline).
pub const MAX_REPLY_BYTES: usize = 1024 * 1024;
