//! Rate-limited logging of what a guest (or a failing host backend, once per request) can trigger,
//! one limiter per device: a flooding guest fills neither the log nor another device's budget.
//!
//! Each device gets a [`GuestLog`]: every event is counted; the first [`BURST`] warnings go out, then
//! at most one per [`INTERVAL`] carrying how many were suppressed in between (STYLE.md §4).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Warnings let through before the limiter engages.
pub const BURST: u64 = 10;
/// Then at most one warning per this interval.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// One device's limiter and counters.
#[derive(Debug)]
pub struct GuestLog {
    dev: String,
    guest_errors: AtomicU64,
    host_errors: AtomicU64,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    emitted: u64,
    last: Option<Instant>,
    suppressed: u64,
}

impl GuestLog {
    /// A limiter for the device named `dev` (used as the `dev` log field).
    pub fn new(dev: &str) -> Self {
        Self {
            dev: dev.to_owned(),
            guest_errors: AtomicU64::new(0),
            host_errors: AtomicU64::new(0),
            window: Mutex::new(Window {
                emitted: 0,
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// The device name.
    pub fn dev(&self) -> &str {
        &self.dev
    }

    /// Counts a guest mistake and logs it at `warn` if the limiter allows.
    pub fn guest_error(&self, what: &dyn std::fmt::Display) {
        let n = self.guest_errors.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(suppressed) = self.allow(Instant::now()) {
            tracing::warn!(dev = %self.dev, count = n, suppressed, "guest error: {what}");
        }
    }

    /// Counts a failed host operation done for a guest request (e.g. EIO from the disk image) and logs
    /// it at `warn` if the limiter allows.
    pub fn host_error(&self, what: &str, error: &dyn std::fmt::Display) {
        let n = self.host_errors.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(suppressed) = self.allow(Instant::now()) {
            tracing::warn!(dev = %self.dev, count = n, suppressed, error = %error, "{what} failed");
        }
    }

    /// Guest errors counted so far.
    pub fn guest_errors(&self) -> u64 {
        self.guest_errors.load(Ordering::Relaxed)
    }

    /// Host errors counted so far.
    pub fn host_errors(&self) -> u64 {
        self.host_errors.load(Ordering::Relaxed)
    }

    /// Whether a message may go out at `now`; if so, how many were suppressed since the last one.
    fn allow(&self, now: Instant) -> Option<u64> {
        let mut w = self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let due = w.emitted < BURST || w.last.is_none_or(|t| now.duration_since(t) >= INTERVAL);
        if due {
            w.emitted += 1;
            w.last = Some(now);
            Some(std::mem::take(&mut w.suppressed))
        } else {
            w.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_one_per_interval_per_device() {
        let a = GuestLog::new("a");
        let b = GuestLog::new("b");
        let t0 = Instant::now();
        let allowed = (0..1000).filter(|_| a.allow(t0).is_some()).count();
        assert_eq!(allowed, usize::try_from(BURST).unwrap());
        // Another device has its own budget.
        assert_eq!(b.allow(t0), Some(0));
        // After the interval one more goes out, reporting what was held back.
        assert_eq!(a.allow(t0 + INTERVAL), Some(1000 - BURST));
        assert_eq!(a.allow(t0 + INTERVAL), None);
        a.guest_error(&"x");
        a.host_error("disk I/O", &"EIO");
        assert_eq!((a.guest_errors(), a.host_errors()), (1, 1));
    }
}
