//! Rate-limited logging for events a client (possibly a guest) can trigger at will.
//!
//! [`crate::warn_limited!`] logs at most once per second per call site and reports how many were suppressed
//! in between, so a hostile client cannot flood the host log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// One call site's limiter state.
#[derive(Debug)]
pub struct Limiter {
    last_s: AtomicU64,
    suppressed: AtomicU64,
}

impl Limiter {
    /// A limiter that allows the first message.
    pub const fn new() -> Limiter {
        Limiter {
            last_s: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(suppressed since the last message)` if a message may be logged now.
    pub fn allow(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_secs().max(1));
        let last = self.last_s.load(Ordering::Relaxed);
        if now > last
            && self
                .last_s
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new()
    }
}

/// `tracing::warn!` limited to once per second at this call site, with a `suppressed` count.
#[macro_export]
macro_rules! warn_limited {
    ($($arg:tt)+) => {{
        static LIMITER: $crate::log::Limiter = $crate::log::Limiter::new();
        if let Some(suppressed) = LIMITER.allow() {
            tracing::warn!(suppressed, $($arg)+);
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_second() {
        let l = Limiter::new();
        assert_eq!(l.allow(), Some(0));
        assert_eq!(l.allow(), None);
        assert_eq!(l.allow(), None);
        assert_eq!(l.suppressed.load(Ordering::Relaxed), 2);
    }
}
