//! Progress lines: what a VMM reports while it works on a long request (`save`, `migrate`) whose
//! client asked for them (`progress_ms`).
//!
//! Such a request gets any number of progress lines before its one reply line:
//! ```text
//! {"progress":{"phase":"pre-copy","round":2,"bytes":N,"dirty_pages":N,"pages":N,"elapsed_ms":N}}
//! ...
//! {"ok":true, ...}
//! ```
//! A progress line has no `ok` field, so a client reads lines with [`decode_line`] until it gets the
//! reply. A client that does not ask gets the single reply line it always got. A VMM older than
//! progress reports refuses the `progress_ms` field ([`refuses_progress`]): ask again without it.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::{decode_reply, ReplyBody, ReplyError};

/// What the VMM is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Live migration: a pre-copy round while the guest runs (round 1 sends all of RAM).
    PreCopy,
    /// Live migration: the guest is paused; the last dirty pages and the machine state go out.
    StopAndCopy,
    /// A snapshot (save, or the single pass of migrating a paused domain): the guest is paused.
    Snapshot,
}

impl Phase {
    /// The phase as people read it.
    pub fn label(self) -> &'static str {
        match self {
            Self::PreCopy => "pre-copy",
            Self::StopAndCopy => "stop-and-copy",
            Self::Snapshot => "snapshot",
        }
    }
}

/// One progress report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// What the VMM is doing.
    pub phase: Phase,
    /// The pre-copy round (1 sends all of RAM; the stop-and-copy keeps the last round's number);
    /// 1 for a snapshot.
    pub round: u32,
    /// Bytes written to the stream so far.
    pub bytes: u64,
    /// Dirty pages the previous round left, which this round sends (0 in round 1 and in a snapshot).
    pub dirty_pages: u64,
    /// Guest RAM pages this round or snapshot covers (round 1 and a snapshot: all of RAM).
    pub pages: u64,
    /// Since the request started, ms.
    pub elapsed_ms: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProgressLine {
    progress: Progress,
}

/// A progress report as one line (without its newline).
pub fn encode_progress(p: &Progress) -> String {
    // Plain fields always serialize; the fallback is never used.
    serde_json::to_string(&ProgressLine { progress: *p }).unwrap_or_default()
}

/// One line a client reads after a request that asked for progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<T> {
    /// A progress report: more lines follow.
    Progress(Progress),
    /// The reply: the last line for this request.
    Reply(T),
}

/// Parses a line read after a request that asked for progress: a progress report or the reply.
///
/// # Errors
/// As [`decode_reply`] for a line that is not a progress report (a malformed progress report is
/// [`ReplyError::Malformed`]).
pub fn decode_line<T: ReplyBody + DeserializeOwned>(line: &[u8]) -> Result<Line<T>, ReplyError> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        progress: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(line).map_err(ReplyError::Malformed)?;
    if probe.progress.is_some() {
        let p: ProgressLine = serde_json::from_slice(line).map_err(ReplyError::Malformed)?;
        return Ok(Line::Progress(p.progress));
    }
    decode_reply(line).map(Line::Reply)
}

/// Whether a refusal's message is an older VMM's "unknown field" for `progress_ms` (a VMM started
/// before an upgrade): the request goes through without progress.
pub fn refuses_progress(message: &str) -> bool {
    // Not merely both words: a refusal of another field lists `progress_ms` among those expected.
    message.contains("unknown field `progress_ms`")
}

/// Whether `message` (a VMM's refusal) says it predates `migrate`'s `direct` stream.
pub fn refuses_direct(message: &str) -> bool {
    message.contains("unknown field `direct`")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode_ok, encode_refusal, Done, MigrateReply};

    fn sample(phase: Phase) -> Progress {
        Progress {
            phase,
            round: 3,
            bytes: 123_456_789,
            dirty_pages: 2048,
            pages: 2048,
            elapsed_ms: 2500,
        }
    }

    #[test]
    fn progress_round_trips_and_keeps_its_wire_form() {
        for phase in [Phase::PreCopy, Phase::StopAndCopy, Phase::Snapshot] {
            let p = sample(phase);
            let line = encode_progress(&p);
            assert!(!line.contains('\n'), "{line}");
            assert_eq!(
                decode_line::<MigrateReply>(line.as_bytes()).unwrap(),
                Line::Progress(p)
            );
        }
        assert_eq!(
            encode_progress(&sample(Phase::StopAndCopy)),
            r#"{"progress":{"phase":"stop-and-copy","round":3,"bytes":123456789,"dirty_pages":2048,"pages":2048,"elapsed_ms":2500}}"#
        );
    }

    #[test]
    fn replies_come_through_decode_line() {
        let r = MigrateReply {
            bytes: 9,
            iterations: 2,
            dirty_pages: vec![5, 1],
            tracking: "ring".into(),
            total_ms: 4,
            stop_copy_ms: 1,
        };
        assert_eq!(
            decode_line::<MigrateReply>(encode_ok(&r).as_bytes()).unwrap(),
            Line::Reply(r)
        );
        assert_eq!(
            decode_line::<Done>(br#"{"ok":true}"#).unwrap(),
            Line::Reply(Done {})
        );
        assert!(matches!(
            decode_line::<Done>(encode_refusal("disk full").as_bytes()),
            Err(ReplyError::Refused(m)) if m == "disk full"
        ));
    }

    #[test]
    fn progress_is_not_a_reply() {
        // An old client reading a progress line as its reply gets an error, not a false success.
        let line = encode_progress(&sample(Phase::PreCopy));
        assert!(matches!(
            decode_reply::<Done>(line.as_bytes()),
            Err(ReplyError::Malformed(_))
        ));
    }

    #[test]
    fn an_older_vmm_refusing_the_field_is_recognised() {
        // What a VMM without progress reports answers (its Save had `resume` only).
        #[derive(Debug, Deserialize)]
        #[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
        enum OldRequest {
            Save {
                #[serde(default)]
                #[allow(dead_code)]
                resume: bool,
            },
        }
        let line = crate::encode_request(&crate::Request::Save {
            resume: false,
            progress_ms: Some(1000),
        });
        let e = serde_json::from_str::<OldRequest>(&line).unwrap_err();
        let refusal = encode_refusal(&format!("bad request: {e}"));
        let Err(ReplyError::Refused(m)) = decode_line::<Done>(refusal.as_bytes()) else {
            panic!("not a refusal: {refusal}");
        };
        assert!(refuses_progress(&m), "{m}");
        assert!(!refuses_progress("save: disk full"));
    }

    #[test]
    fn a_vmm_without_direct_streams_refuses_the_field() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
        enum OldRequest {
            Migrate {
                #[serde(default)]
                #[allow(dead_code)]
                downtime_ms: Option<u64>,
                #[serde(default)]
                #[allow(dead_code)]
                progress_ms: Option<u64>,
            },
        }
        let line = crate::encode_request(&crate::Request::Migrate {
            downtime_ms: None,
            progress_ms: Some(100),
            direct: true,
        });
        let e = serde_json::from_str::<OldRequest>(&line).unwrap_err();
        let m = format!("bad request: {e}");
        assert!(refuses_direct(&m), "{m}");
        // It names `progress_ms` among the fields it expects: that is no refusal of progress.
        assert!(!refuses_progress(&m), "{m}");
        assert!(!refuses_direct("migrate: disk full"));
    }

    #[test]
    fn bad_lines_are_errors() {
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            br#"{"progress":{}}"#,
            br#"{"progress":null,"ok":"x"}"#,
            br#"{"progress":{"phase":"warp","round":1,"bytes":0,"dirty_pages":0,"pages":0,"elapsed_ms":0}}"#,
            br#"{"progress":{"phase":"pre-copy","round":-1,"bytes":0,"dirty_pages":0,"pages":0,"elapsed_ms":0}}"#,
            br#"{"progress":{"phase":"pre-copy","round":1,"bytes":0,"dirty_pages":0,"pages":0,"elapsed_ms":0},"ok":true}"#,
        ] {
            assert!(
                matches!(
                    decode_line::<Done>(bad),
                    Err(ReplyError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
    }
}
