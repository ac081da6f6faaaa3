//! Progress reports of `save` and `migrate` ([`domus_vmm_api::Progress`]): a [`Reporter`] is told each
//! phase or pre-copy round as it starts (reported at once) and counts the bytes that reach the
//! stream's descriptor through [`Counting`] (reported at most once per interval). The reports go to
//! the sink the control server gives (progress lines on the requesting connection); a request that
//! did not ask for progress gets a silent reporter.

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::time::{Duration, Instant};

use domus_vmm_api::{Phase, Progress};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

use crate::vstate::memory::GuestMem;

/// Shortest interval between two byte-count reports a client may ask for, ms.
pub const MIN_INTERVAL_MS: u64 = 10;

/// Where reports go.
pub type Sink<'a> = &'a mut dyn FnMut(&Progress);

/// Tracks one request's progress and reports it to a sink.
pub struct Reporter<'a> {
    sink: RefCell<Option<Sink<'a>>>,
    interval: Duration,
    started: Instant,
    last: Cell<Instant>,
    current: Cell<Progress>,
    held: Cell<bool>,
}

impl<'a> Reporter<'a> {
    /// Reports to `sink` at most every `interval_ms` (at least [`MIN_INTERVAL_MS`]) besides each
    /// stage change; `None` for either reports nothing.
    pub fn new(sink: Option<Sink<'a>>, interval_ms: Option<u64>) -> Self {
        let now = Instant::now();
        let sink = if interval_ms.is_some() { sink } else { None };
        Self {
            sink: RefCell::new(sink),
            interval: Duration::from_millis(interval_ms.unwrap_or(0).max(MIN_INTERVAL_MS)),
            started: now,
            last: Cell::new(now),
            current: Cell::new(Progress {
                phase: Phase::Snapshot,
                round: 0,
                bytes: 0,
                dirty_pages: 0,
                pages: 0,
                elapsed_ms: 0,
            }),
            held: Cell::new(false),
        }
    }

    /// While `on`, nothing is reported (stages and byte counts are kept, and the next report
    /// after it says where things stand): a live migration's stop-and-copy, during which a report
    /// would wake its reader, another process on the host's CPUs, inside the guest-visible downtime.
    pub fn hold(&self, on: bool) {
        self.held.set(on);
    }

    /// A reporter that reports nothing.
    pub fn silent() -> Self {
        Self::new(None, None)
    }

    /// A new phase or pre-copy round starts: `dirty_pages` found by the previous round, `pages` to
    /// send now. Reported at once.
    pub fn stage(&self, phase: Phase, round: u32, dirty_pages: u64, pages: u64) {
        let mut p = self.current.get();
        p.phase = phase;
        p.round = round;
        p.dirty_pages = dirty_pages;
        p.pages = pages;
        self.current.set(p);
        self.emit();
    }

    /// `total` bytes reached the stream so far; reported if the interval passed since the last report.
    pub fn bytes(&self, total: u64) {
        let mut p = self.current.get();
        p.bytes = total;
        self.current.set(p);
        if self.last.get().elapsed() >= self.interval {
            self.emit();
        }
    }

    fn emit(&self) {
        if self.held.get() {
            return;
        }
        let now = Instant::now();
        self.last.set(now);
        let mut p = self.current.get();
        p.elapsed_ms =
            u64::try_from(now.duration_since(self.started).as_millis()).unwrap_or(u64::MAX);
        if let Some(sink) = self.sink.borrow_mut().as_mut() {
            sink(&p);
        }
    }
}

/// Guest RAM in 4 KiB pages.
pub fn ram_pages(mem: &GuestMem) -> u64 {
    mem.iter().map(GuestMemoryRegion::len).sum::<u64>() / 4096
}

/// A writer that counts what reaches `inner` and tells the reporter.
pub struct Counting<'r, 'a, W> {
    inner: W,
    reporter: &'r Reporter<'a>,
    bytes: u64,
}

impl<'r, 'a, W: Write> Counting<'r, 'a, W> {
    /// Wraps `inner`.
    pub fn new(inner: W, reporter: &'r Reporter<'a>) -> Self {
        Self {
            inner,
            reporter,
            bytes: 0,
        }
    }

    /// The reporter it tells.
    pub fn reporter(&self) -> &'r Reporter<'a> {
        self.reporter
    }

    /// The wrapped writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }
}

impl<W: Write> Write for Counting<'_, '_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        self.reporter.bytes(self.bytes);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_reporter_reports_nothing_until_the_next_stage_after_it() {
        let mut seen = Vec::new();
        {
            let mut sink = |p: &Progress| seen.push(*p);
            let r = Reporter::new(Some(&mut sink), Some(MIN_INTERVAL_MS));
            r.stage(Phase::PreCopy, 1, 0, 100);
            r.hold(true);
            r.stage(Phase::StopAndCopy, 1, 5, 5);
            std::thread::sleep(Duration::from_millis(MIN_INTERVAL_MS + 1));
            let mut w = Counting::new(Vec::new(), &r);
            w.write_all(&[0; 10]).unwrap();
            r.hold(false);
            r.stage(Phase::StopAndCopy, 1, 7, 7);
        }
        let seen: Vec<_> = seen
            .iter()
            .map(|p| (p.phase, p.dirty_pages, p.bytes))
            .collect();
        assert_eq!(seen, [(Phase::PreCopy, 0, 0), (Phase::StopAndCopy, 7, 10)],);
    }

    #[test]
    fn stages_report_at_once_and_bytes_at_most_once_per_interval() {
        let mut seen = Vec::new();
        {
            let mut sink = |p: &Progress| seen.push(*p);
            let r = Reporter::new(Some(&mut sink), Some(60_000));
            r.stage(Phase::PreCopy, 1, 0, 100);
            let mut w = Counting::new(Vec::new(), &r);
            w.write_all(&[0; 10]).unwrap();
            w.write_all(&[0; 10]).unwrap();
            r.stage(Phase::PreCopy, 2, 7, 7);
            r.stage(Phase::StopAndCopy, 2, 3, 3);
        }
        let stages: Vec<_> = seen
            .iter()
            .map(|p| (p.phase, p.round, p.bytes, p.dirty_pages, p.pages))
            .collect();
        assert_eq!(
            stages,
            [
                (Phase::PreCopy, 1, 0, 0, 100),
                (Phase::PreCopy, 2, 20, 7, 7),
                (Phase::StopAndCopy, 2, 20, 3, 3)
            ]
        );
    }

    #[test]
    fn byte_reports_follow_the_interval() {
        let mut seen = Vec::new();
        {
            let mut sink = |p: &Progress| seen.push(p.bytes);
            let r = Reporter::new(Some(&mut sink), Some(MIN_INTERVAL_MS));
            let mut w = Counting::new(Vec::new(), &r);
            w.write_all(&[1; 5]).unwrap();
            std::thread::sleep(Duration::from_millis(2 * MIN_INTERVAL_MS));
            w.write_all(&[1; 5]).unwrap();
        }
        assert_eq!(seen, [10]);
    }

    #[test]
    fn without_an_interval_nothing_is_reported() {
        let mut n = 0;
        {
            let mut sink = |_: &Progress| n += 1;
            let r = Reporter::new(Some(&mut sink), None);
            r.stage(Phase::Snapshot, 1, 0, 1);
            r.bytes(5);
        }
        assert_eq!(n, 0);
        Reporter::silent().stage(Phase::PreCopy, 1, 0, 0);
    }
}
