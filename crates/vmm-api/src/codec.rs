//! The line codec: requests and replies to and from one JSON line (without its newline).
//!
//! A reply line is `{"ok":true, ...}` with the fields of the reply's body, or `{"ok":false,"error":...}`.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::types::{Done, MigrateReply, OutcomeReply, Request, StateReply};

/// A reply body: the data a successful reply carries next to `"ok": true`.
pub trait ReplyBody: Serialize + DeserializeOwned + sealed::Sealed {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Done {}
    impl Sealed for super::StateReply {}
    impl Sealed for super::OutcomeReply {}
    impl Sealed for super::MigrateReply {}
}

impl ReplyBody for Done {}
impl ReplyBody for StateReply {}
impl ReplyBody for OutcomeReply {}
impl ReplyBody for MigrateReply {}

/// Any successful reply, as a server produces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Success without data.
    Done,
    /// The reply to [`Request::State`].
    State(StateReply),
    /// The reply to [`Request::Outcome`].
    Outcome(OutcomeReply),
    /// The reply to [`Request::Migrate`].
    Migrate(MigrateReply),
}

impl Reply {
    /// The reply line.
    pub fn encode(&self) -> String {
        match self {
            Self::Done => encode_ok(&Done {}),
            Self::State(s) => encode_ok(s),
            Self::Outcome(o) => encode_ok(o),
            Self::Migrate(m) => encode_ok(m),
        }
    }
}

/// Why a reply line gave no reply body.
#[derive(Debug)]
pub enum ReplyError {
    /// The VMM answered `"ok": false` with this message.
    Refused(String),
    /// The line is not a reply of the expected shape.
    Malformed(serde_json::Error),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(m) => write!(f, "refused: {m}"),
            Self::Malformed(e) => write!(f, "malformed reply: {e}"),
        }
    }
}

impl std::error::Error for ReplyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Refused(_) => None,
            Self::Malformed(e) => Some(e),
        }
    }
}

#[derive(Serialize)]
struct OkLine<'a, T> {
    ok: bool,
    #[serde(flatten)]
    body: &'a T,
}

#[derive(Serialize)]
struct ErrLine<'a> {
    ok: bool,
    error: &'a str,
}

#[derive(Deserialize)]
struct AnyLine {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(flatten)]
    body: serde_json::Map<String, serde_json::Value>,
}

/// A request as one line.
pub fn encode_request(req: &Request) -> String {
    // A tagged enum of plain fields always serializes; the fallback is never used.
    serde_json::to_string(req).unwrap_or_else(|_| format!(r#"{{"cmd":"{}"}}"#, req.name()))
}

/// Parses a request line.
///
/// # Errors
/// Not JSON, an unknown `cmd`, missing or unknown fields.
pub fn decode_request(line: &[u8]) -> Result<Request, serde_json::Error> {
    serde_json::from_slice(line)
}

/// A successful reply carrying `body`.
pub fn encode_ok<T: ReplyBody>(body: &T) -> String {
    serde_json::to_string(&OkLine { ok: true, body })
        .unwrap_or_else(|e| encode_refusal(&format!("cannot encode the reply: {e}")))
}

/// A refusal carrying `message`.
pub fn encode_refusal(message: &str) -> String {
    serde_json::to_string(&ErrLine {
        ok: false,
        error: message,
    })
    .unwrap_or_else(|_| r#"{"ok":false,"error":"unprintable error"}"#.to_owned())
}

/// Parses a reply line into the body the request calls for.
///
/// # Errors
/// [`ReplyError::Refused`] for `"ok": false`, [`ReplyError::Malformed`] when the line is not a reply or
/// its fields do not make a `T`.
pub fn decode_reply<T: ReplyBody>(line: &[u8]) -> Result<T, ReplyError> {
    let any: AnyLine = serde_json::from_slice(line).map_err(ReplyError::Malformed)?;
    if !any.ok {
        return Err(ReplyError::Refused(
            any.error.unwrap_or_else(|| "no reason given".to_owned()),
        ));
    }
    T::deserialize(serde_json::Value::Object(any.body)).map_err(ReplyError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{
        DiskStats, MachineState, NicStats, Outcome, Reason, VcpuRunState, VcpuState,
    };

    fn all_requests() -> Vec<Request> {
        vec![
            Request::State,
            Request::Pause,
            Request::Resume,
            Request::PowerButton,
            Request::Reset,
            Request::Destroy,
            Request::DestroyUnlocked,
            Request::Outcome,
            Request::AckOutcome,
            Request::VcpuPin {
                vcpu: 3,
                cpus: vec![0, 1, 7],
            },
            Request::Sysrq { key: 'h' },
            Request::Nmi { vcpu: 1 },
            Request::SetVcpus { online: 3 },
            Request::BalloonSet { target_mib: 96 },
            Request::DumpCore {
                path: "/var/lib/domus/dump/web.core".into(),
            },
            Request::Save {
                resume: true,
                progress_ms: None,
            },
            Request::Save {
                resume: false,
                progress_ms: Some(250),
            },
            Request::Migrate {
                downtime_ms: Some(100),
                progress_ms: Some(1000),
                direct: true,
            },
            Request::Migrate {
                downtime_ms: None,
                progress_ms: None,
                direct: false,
            },
        ]
    }

    #[test]
    fn progress_is_asked_for_explicitly() {
        // Without progress_ms the request keeps the form older VMMs read.
        assert_eq!(
            encode_request(&Request::Save {
                resume: false,
                progress_ms: None
            }),
            r#"{"cmd":"save","resume":false}"#
        );
        assert_eq!(
            decode_request(br#"{"cmd":"migrate","downtime_ms":50}"#).unwrap(),
            Request::Migrate {
                downtime_ms: Some(50),
                progress_ms: None,
                direct: false,
            }
        );
        // Without `direct` too: a relayed stream keeps the form older VMMs read.
        assert_eq!(
            encode_request(&Request::Migrate {
                downtime_ms: Some(50),
                progress_ms: None,
                direct: false,
            }),
            r#"{"cmd":"migrate","downtime_ms":50}"#
        );
        let m = decode_request(br#"{"cmd":"migrate","progress_ms":500}"#).unwrap();
        assert_eq!(m.progress_ms(), Some(500));
        assert_eq!(Request::State.progress_ms(), None);
    }

    #[test]
    fn every_request_round_trips() {
        for req in all_requests() {
            let line = encode_request(&req);
            assert!(!line.contains('\n'), "{line}");
            assert!(
                line.starts_with(&format!(r#"{{"cmd":"{}""#, req.name())),
                "{line}"
            );
            assert_eq!(decode_request(line.as_bytes()).unwrap(), req, "{line}");
        }
    }

    #[test]
    fn an_unknown_request_is_refused_by_its_name() {
        // What a VMM that predates `destroy-unlocked` answers (its decoder has no such variant).
        let e = decode_request(br#"{"cmd":"destroy-unlocked-v0"}"#).unwrap_err();
        let old = e
            .to_string()
            .replace("destroy-unlocked-v0", "destroy-unlocked");
        assert!(crate::refuses_destroy_unlocked(&old), "{old}");
        assert!(!crate::refuses_destroy_unlocked(
            "unknown variant `destroy`"
        ));
        assert_eq!(
            encode_request(&Request::DestroyUnlocked),
            r#"{"cmd":"destroy-unlocked"}"#
        );
    }

    #[test]
    fn requests_keep_their_wire_form() {
        assert_eq!(
            decode_request(br#"{"cmd":"power-button"}"#).unwrap(),
            Request::PowerButton
        );
        assert_eq!(
            encode_request(&Request::VcpuPin {
                vcpu: 1,
                cpus: vec![2]
            }),
            r#"{"cmd":"vcpu-pin","vcpu":1,"cpus":[2]}"#
        );
        assert_eq!(
            encode_request(&Request::AckOutcome),
            r#"{"cmd":"ack-outcome"}"#
        );
    }

    #[test]
    fn bad_requests_are_errors() {
        for bad in [
            &b""[..],
            b"{",
            b"\xff",
            b"[]",
            br#"{"cmd":"explode"}"#,
            br#"{"cmd":"vcpu-pin","vcpu":1,"cpus":[],"extra":1}"#,
            br#"{"cmd":"vcpu-pin","vcpu":1}"#,
            br#"{"cmd":"vcpu-pin","vcpu":-1,"cpus":[]}"#,
            br#"{"vcpu":1}"#,
        ] {
            assert!(decode_request(bad).is_err(), "{bad:?}");
        }
    }

    fn sample_state(outcome: Option<Outcome>) -> StateReply {
        StateReply {
            state: if outcome.is_some() {
                MachineState::Shutdown
            } else {
                MachineState::Running
            },
            outcome,
            pid: 4242,
            vcpus: vec![
                VcpuState {
                    id: 0,
                    cpu_time_ns: 12_345,
                    state: VcpuRunState::Running,
                },
                VcpuState {
                    id: 1,
                    cpu_time_ns: 0,
                    state: VcpuRunState::Blocked,
                },
                VcpuState {
                    id: 2,
                    cpu_time_ns: 7,
                    state: VcpuRunState::Paused,
                },
            ],
            memory_mib: 64,
            uptime_ms: 1500,
            disks: vec![
                DiskStats {
                    rd_reqs: 3,
                    wr_reqs: 2,
                    rd_sectors: 24,
                    wr_sectors: 2048,
                },
                DiskStats::default(),
            ],
            nics: vec![NicStats {
                tx_bytes: 1500,
                tx_packets: 1,
                rx_bytes: 42,
                rx_packets: 1,
            }],
            balloon: Some(crate::BalloonState {
                ram_mib: 256,
                target_mib: 64,
                actual_mib: 70,
            }),
        }
    }

    #[test]
    fn every_reply_round_trips() {
        let done = Reply::Done.encode();
        assert_eq!(done, r#"{"ok":true}"#);
        assert_eq!(decode_reply::<Done>(done.as_bytes()).unwrap(), Done {});

        for outcome in [
            None,
            Some(Outcome::new(Reason::Poweroff, "ACPI S5")),
            Some(Outcome::new(Reason::Reboot, "i8042 reset")),
            Some(Outcome::new(Reason::Crash, "pvpanic")),
        ] {
            let st = sample_state(outcome.clone());
            let line = Reply::State(st.clone()).encode();
            assert!(line.starts_with(r#"{"ok":true,"#), "{line}");
            assert_eq!(decode_reply::<StateReply>(line.as_bytes()).unwrap(), st);

            let o = OutcomeReply { outcome };
            let line = Reply::Outcome(o.clone()).encode();
            assert_eq!(decode_reply::<OutcomeReply>(line.as_bytes()).unwrap(), o);
        }

        for state in [
            MachineState::Running,
            MachineState::Paused,
            MachineState::Shutdown,
        ] {
            let st = StateReply {
                state,
                ..sample_state(None)
            };
            let line = encode_ok(&st);
            assert_eq!(decode_reply::<StateReply>(line.as_bytes()).unwrap(), st);
        }

        let refusal = encode_refusal("no vCPU 3");
        assert_eq!(refusal, r#"{"ok":false,"error":"no vCPU 3"}"#);
        for line in [&refusal, &encode_refusal("quote \" and\nnewline")] {
            assert!(!line.contains('\n'));
            assert!(matches!(
                decode_reply::<Done>(line.as_bytes()),
                Err(ReplyError::Refused(_))
            ));
        }
        let Err(ReplyError::Refused(m)) = decode_reply::<StateReply>(refusal.as_bytes()) else {
            panic!("a refusal decoded as a state");
        };
        assert_eq!(m, "no vCPU 3");
    }

    #[test]
    fn state_reply_matches_the_documented_wire_form() {
        let line = br#"{"ok":true,"state":"paused","outcome":null,"pid":7,
            "vcpus":[{"id":0,"cpu_time_ns":5,"state":"paused"}],"memory_mib":32,"uptime_ms":9,"new":1}"#;
        let st: StateReply = decode_reply(line).unwrap();
        assert_eq!(st.state, MachineState::Paused);
        assert_eq!(st.vcpus[0].state, VcpuRunState::Paused);
        assert_eq!((st.pid, st.memory_mib, st.uptime_ms), (7, 32, 9));
        // An older VMM sends no counters: none, not an error.
        assert!(st.disks.is_empty() && st.nics.is_empty());
        let line = br#"{"ok":true,"state":"running","pid":7,"memory_mib":32,"uptime_ms":9,
            "disks":[{"rd_reqs":1,"wr_reqs":2,"rd_sectors":8,"wr_sectors":16,"oo":0}],
            "nics":[{"tx_bytes":60,"tx_packets":1}]}"#;
        let st: StateReply = decode_reply(line).unwrap();
        assert_eq!(
            st.disks,
            [DiskStats {
                rd_reqs: 1,
                wr_reqs: 2,
                rd_sectors: 8,
                wr_sectors: 16
            }]
        );
        assert_eq!(
            st.nics,
            [NicStats {
                tx_bytes: 60,
                tx_packets: 1,
                ..NicStats::default()
            }]
        );
        // Without counters the reply keeps its old form, so an older domusd reads it unchanged.
        let line = Reply::State(StateReply {
            disks: Vec::new(),
            nics: Vec::new(),
            balloon: None,
            ..st
        })
        .encode();
        assert!(
            !line.contains("disks") && !line.contains("nics") && !line.contains("balloon"),
            "{line}"
        );
        let o: OutcomeReply =
            decode_reply(br#"{"ok":true,"outcome":{"reason":"crash","detail":"pvpanic"}}"#)
                .unwrap();
        assert_eq!(o.outcome, Some(Outcome::new(Reason::Crash, "pvpanic")));
    }

    #[test]
    fn bad_replies_are_errors() {
        for bad in [
            &b""[..],
            b"{",
            b"null",
            br#"{"state":"running"}"#,
            br#"{"ok":"yes"}"#,
            br#"{"ok":true,"state":"melting","pid":1,"memory_mib":1,"uptime_ms":1}"#,
            br#"{"ok":true,"state":"running"}"#,
        ] {
            assert!(
                matches!(
                    decode_reply::<StateReply>(bad),
                    Err(ReplyError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            decode_reply::<Done>(br#"{"ok":false}"#),
            Err(ReplyError::Refused(m)) if m == "no reason given"
        ));
    }

    #[test]
    fn exit_codes_map_both_ways() {
        for r in [Reason::Poweroff, Reason::Reboot, Reason::Crash] {
            assert_eq!(Reason::from_exit_code(i32::from(r.exit_code())), Some(r));
        }
        assert_eq!(
            [Reason::Poweroff, Reason::Reboot, Reason::Crash].map(Reason::exit_code),
            [0, 2, 3]
        );
        assert_eq!(Reason::from_exit_code(crate::EXIT_VMM_ERROR), None);
        assert_eq!(Reason::from_exit_code(137), None);
        assert_eq!(
            serde_json::to_string(&Outcome::new(Reason::Crash, "pvpanic")).unwrap(),
            r#"{"reason":"crash","detail":"pvpanic"}"#
        );
        assert_eq!(
            Outcome::new(Reason::Reboot, "reset").to_string(),
            "guest rebooted: reset"
        );
    }
}
