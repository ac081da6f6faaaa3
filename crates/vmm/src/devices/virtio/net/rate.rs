//! xl's `rate=` for a vif (xl-network-configuration(5)): a credit of `bytes_per_second · interval`
//! bytes is granted every interval (default 50 ms); a frame goes out only when the credit left in
//! the current interval covers it, else it waits for the next one. Credit does not accumulate
//! across intervals, so over any span T a stream sends at most `rate · T` plus one credit. A frame
//! larger than a whole credit goes out alone at the start of an interval (as Xen's netback lets
//! it), so a tiny rate cannot block the queue for ever.
//!
//! Time is passed in (a `Duration` since any fixed origin), so the limiter is tested with a fake
//! clock.

use std::time::Duration;

/// The transmit limiter of one NIC.
#[derive(Debug, Clone)]
pub struct CreditLimiter {
    credit_bytes: u64,
    interval: Duration,
    left: u64,
    next_refill: Duration,
}

impl CreditLimiter {
    /// `bytes_per_second` replenished every `interval_us` microseconds.
    pub fn new(bytes_per_second: u64, interval_us: u64) -> Self {
        let interval_us = interval_us.max(1);
        let credit = u128::from(bytes_per_second) * u128::from(interval_us) / 1_000_000;
        let credit_bytes = u64::try_from(credit).unwrap_or(u64::MAX).max(1);
        Self {
            credit_bytes,
            interval: Duration::from_micros(interval_us),
            left: 0,
            next_refill: Duration::ZERO,
        }
    }

    /// Bytes granted per interval.
    pub fn credit_bytes(&self) -> u64 {
        self.credit_bytes
    }

    /// Takes `bytes` of credit at `now`: `Ok` if the frame may go, else how long to wait.
    ///
    /// # Errors
    /// The time until the next refill when the credit left does not cover the frame.
    pub fn take(&mut self, bytes: u64, now: Duration) -> Result<(), Duration> {
        if now >= self.next_refill {
            self.left = self.credit_bytes;
            self.next_refill = now + self.interval;
        }
        if bytes <= self.left {
            self.left -= bytes;
            return Ok(());
        }
        if bytes > self.credit_bytes && self.left == self.credit_bytes {
            self.left = 0;
            return Ok(());
        }
        Err(self.next_refill.saturating_sub(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn credit_per_interval_and_waits_for_the_next() {
        // 1 MB/s every 50 ms: 50 000 bytes per interval.
        let mut l = CreditLimiter::new(1_000_000, 50_000);
        assert_eq!(l.credit_bytes(), 50_000);
        let t0 = Duration::from_secs(10);
        for _ in 0..33 {
            assert_eq!(l.take(1500, t0), Ok(()));
        }
        // 49 500 used; 500 left does not cover 1500.
        assert_eq!(l.take(1500, t0 + 10 * MS), Err(40 * MS));
        assert_eq!(l.take(500, t0 + 10 * MS), Ok(()));
        // Next interval: full credit again, nothing carried over.
        assert_eq!(l.take(1500, t0 + 50 * MS), Ok(()));
        // Idle for a second: still only one credit.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.take(50_000, t1), Ok(()));
        assert!(l.take(1, t1).is_err());
    }

    #[test]
    fn a_frame_larger_than_the_credit_goes_alone() {
        // 8 kbit/s = 1000 B/s, 50 ms: 50-byte credit.
        let mut l = CreditLimiter::new(1000, 50_000);
        let t0 = Duration::from_secs(1);
        assert_eq!(l.take(1500, t0), Ok(()));
        assert_eq!(l.take(1500, t0), Err(50 * MS));
        assert_eq!(l.take(1500, t0 + 50 * MS), Ok(()));
        assert_eq!(l.take(10, t0 + 60 * MS), Err(40 * MS));
    }

    #[test]
    fn never_more_than_rate_times_span_plus_one_credit() {
        // A greedy sender polled at odd times: the bound holds over every prefix.
        let rate = 2_000_000u64;
        let mut l = CreditLimiter::new(rate, 20_000);
        let credit = l.credit_bytes();
        let start = Duration::from_secs(5);
        let mut now = start;
        let mut sent = 0u64;
        for step in 0..20_000u64 {
            match l.take(1400, now) {
                Ok(()) => sent += 1400,
                Err(wait) => now += wait.min(Duration::from_micros(700 + step % 13)),
            }
            let span = (now - start).as_secs_f64();
            let bound = rate as f64 * span + credit as f64;
            assert!(sent as f64 <= bound, "sent {sent} > {bound} after {span}s");
        }
        // And it is not starved: close to the rate over the whole run.
        let span = (now - start).as_secs_f64();
        assert!(sent as f64 >= rate as f64 * span * 0.9, "{sent} in {span}s");
    }

    #[test]
    fn interval_zero_and_huge_rates_are_safe() {
        let mut l = CreditLimiter::new(u64::MAX, 0);
        assert_eq!(l.take(1 << 40, Duration::ZERO), Ok(()));
        let l = CreditLimiter::new(0, 50_000);
        assert_eq!(l.credit_bytes(), 1);
    }
}
