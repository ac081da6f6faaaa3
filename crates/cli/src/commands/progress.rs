//! Progress lines on stderr while `save` or `migrate` runs: the VMM's reports
//! ([`domus_vmm_api::Progress`]: phase, pre-copy round, dirty pages, bytes) as one line each, e.g.
//! ```text
//! migration progress: web: pre-copy round 2, 1534 dirty pages, 412 MiB sent (432013312 bytes), 388 MiB/s, 1.1 s
//! ```
//! The VMM reports about once a second (`DOMUS_PROGRESS_INTERVAL_MS` changes that) and at each phase
//! or round change.

use std::time::Duration;

use domus_vmm_api::{Phase, Progress};

/// Default interval between progress lines, ms.
pub const DEFAULT_INTERVAL_MS: u64 = 1000;

/// The interval between progress lines: `DOMUS_PROGRESS_INTERVAL_MS` or [`DEFAULT_INTERVAL_MS`].
pub fn interval_ms() -> u64 {
    std::env::var("DOMUS_PROGRESS_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&ms| ms > 0)
        .unwrap_or(DEFAULT_INTERVAL_MS)
}

/// [`interval_ms`] as a duration.
pub fn interval() -> Duration {
    Duration::from_millis(interval_ms())
}

/// One progress line (without newline) for `what` (`migration`, `save`) of domain `name`.
pub fn line(what: &str, name: &str, p: &Progress) -> String {
    let secs = p.elapsed_ms as f64 / 1000.0;
    let mib = p.bytes as f64 / f64::from(1 << 20);
    let rate = mib / secs.max(1e-3);
    let stage = match p.phase {
        Phase::PreCopy if p.round == 1 => format!("pre-copy round 1, {} pages", p.pages),
        Phase::PreCopy | Phase::StopAndCopy => format!(
            "{} round {}, {} dirty pages",
            p.phase.label(),
            p.round,
            p.dirty_pages
        ),
        Phase::Snapshot => format!("{} pages", p.pages),
    };
    format!(
        "{what} progress: {name}: {stage}, {:.0} MiB sent ({} bytes), {rate:.0} MiB/s, {secs:.1} s",
        mib.floor(),
        p.bytes
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(phase: Phase, round: u32) -> Progress {
        Progress {
            phase,
            round,
            bytes: 100 << 20,
            dirty_pages: 42,
            pages: 65_536,
            elapsed_ms: 500,
        }
    }

    #[test]
    fn lines_name_the_stage_bytes_and_rate() {
        assert_eq!(
            line("migration", "web", &p(Phase::PreCopy, 1)),
            "migration progress: web: pre-copy round 1, 65536 pages, 100 MiB sent (104857600 bytes), 200 MiB/s, 0.5 s"
        );
        assert_eq!(
            line("migration", "web", &p(Phase::PreCopy, 3)),
            "migration progress: web: pre-copy round 3, 42 dirty pages, 100 MiB sent (104857600 bytes), 200 MiB/s, 0.5 s"
        );
        assert!(line("migration", "web", &p(Phase::StopAndCopy, 3))
            .contains(": stop-and-copy round 3, 42 dirty pages,"));
        assert!(line("save", "db", &p(Phase::Snapshot, 1))
            .starts_with("save progress: db: 65536 pages, 100 MiB sent"));
    }
}
