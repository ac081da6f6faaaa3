//! A token bucket in bytes: how the entropy device limits what one guest can draw from the host.

use std::time::{Duration, Instant};

/// Bytes per second with a burst of one second's worth; rate 0 = unlimited.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: u64,
    tokens: u64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket for `rate` bytes per second (0 = unlimited).
    pub fn new(rate: u64, now: Instant) -> Self {
        Self {
            rate,
            tokens: rate,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        let add = u128::from(self.rate) * elapsed.as_nanos() / 1_000_000_000;
        if add > 0 {
            let add = u64::try_from(add).unwrap_or(u64::MAX);
            self.tokens = self.tokens.saturating_add(add).min(self.rate);
            self.last = now;
        }
    }

    /// Takes up to `want` bytes' worth; returns how many were granted (0 when empty).
    pub fn take(&mut self, want: u64, now: Instant) -> u64 {
        if self.rate == 0 {
            return want;
        }
        self.refill(now);
        let n = want.min(self.tokens);
        self.tokens -= n;
        n
    }

    /// Returns `n` unused bytes' worth (never above the burst).
    pub fn refund(&mut self, n: u64) {
        if self.rate != 0 {
            self.tokens = self.tokens.saturating_add(n).min(self.rate);
        }
    }

    /// How long until at least `n` bytes (capped at the burst) are available.
    pub fn wait_for(&mut self, n: u64, now: Instant) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        self.refill(now);
        let n = n.min(self.rate);
        if self.tokens >= n {
            return Duration::ZERO;
        }
        let missing = u128::from(n - self.tokens);
        let nanos = (missing * 1_000_000_000).div_ceil(u128::from(self.rate));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_burst_then_refills_at_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, t0);
        assert_eq!(b.take(600, t0), 600);
        assert_eq!(b.take(600, t0), 400);
        assert_eq!(b.take(1, t0), 0);
        assert_eq!(b.wait_for(100, t0), Duration::from_millis(100));
        assert_eq!(b.take(1000, t0 + Duration::from_millis(250)), 250);
        // Never more than one second's worth.
        assert_eq!(b.take(5000, t0 + Duration::from_secs(60)), 1000);
        let mut free = TokenBucket::new(0, t0);
        assert_eq!(free.take(1 << 30, t0), 1 << 30);
        assert_eq!(free.wait_for(1, t0), Duration::ZERO);
    }
}
