//! The restart-loop guard, and restarts that `destroy`/`shutdown` can still cancel.
//!
//! A guest with `on_crash`/`on_reboot`/`on_poweroff = "restart"` that stops right after it starts would be
//! restarted forever. domusd counts each name's restarts in a sliding window: the restart that would
//! exceed [`RestartLimit::max`] restarts within [`RestartLimit::window`] is not done — the domain is left
//! shut down (crashed, for a crash) with an error line in the log and `dmesg`, as `on_* = "preserve"`
//! would leave it, so `destroy` removes it. The limit is domusd's `--restart-limit N/SECONDS` (default
//! `5/60`: 5 restarts within 60 seconds; `off` disables the guard).
//!
//! `shutdown` of an instance that domusd restarted ends the loop too: its poweroff is not
//! restarted (a domain that was never restarted keeps xl's rule: on_poweroff applies to any poweroff).
//!
//! Between a guest's stop and its new instance there is a moment (up to a second for a guest that dies at
//! once) in which no domain of that name exists. A restart in that moment is *pending*; `destroy` or
//! `shutdown` of the name (or of the old domid) cancels it, so they win at once instead of failing with
//! "does not exist" while the loop goes on.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// At most `max` restarts of one name within `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartLimit {
    /// Restarts allowed within the window.
    pub max: u32,
    /// The window.
    pub window: Duration,
}

impl fmt::Display for RestartLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.max, self.window.as_secs())
    }
}

/// `--restart-limit` parse errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("restart limit `{0}`: expected RESTARTS/SECONDS (e.g. 5/60, both at least 1) or `off`")]
pub struct RestartLimitError(String);

/// `--restart-limit`'s value: `N/SECONDS`, or `off` (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartLimitArg(pub Option<RestartLimit>);

impl FromStr for RestartLimitArg {
    type Err = RestartLimitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "off" {
            return Ok(Self(None));
        }
        let bad = || RestartLimitError(s.to_owned());
        let (n, secs) = s.split_once('/').ok_or_else(bad)?;
        let max: u32 = n.trim().parse().map_err(|_| bad())?;
        let secs: u64 = secs.trim().parse().map_err(|_| bad())?;
        if max == 0 || secs == 0 {
            return Err(bad());
        }
        Ok(Self(Some(RestartLimit {
            max,
            window: Duration::from_secs(secs),
        })))
    }
}

#[derive(Debug, Default)]
struct Entry {
    /// When each recent restart happened (oldest first, within the window).
    times: VecDeque<Instant>,
    /// A restart is pending for the instance that had this domid.
    pending: Option<u32>,
    /// `destroy`/`shutdown` cancelled the pending restart.
    cancelled: bool,
    /// `shutdown` was asked of the running instance: its poweroff ends the loop.
    stop_requested: bool,
}

/// Per-name restart history and pending restarts.
#[derive(Debug)]
pub struct RestartGuard {
    limit: Option<RestartLimit>,
    names: Mutex<HashMap<String, Entry>>,
}

/// What [`RestartGuard::begin`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Restart: this is restart number `count` within the window.
    Restart {
        /// Restarts within the window, this one included.
        count: u32,
    },
    /// A restart loop: leave the domain stopped.
    Loop {
        /// Restarts already done within the window.
        count: u32,
        /// The limit that was hit.
        limit: RestartLimit,
    },
}

impl RestartGuard {
    /// A guard with `limit` (`None`: no loop detection).
    pub fn new(limit: Option<RestartLimit>) -> Self {
        Self {
            limit,
            names: Mutex::new(HashMap::new()),
        }
    }

    /// Decides whether `name` (the instance with `domid`) may restart now; when it may, the restart is
    /// counted and pending until [`RestartGuard::take_pending`].
    pub fn begin(&self, name: &str, domid: u32, now: Instant) -> Verdict {
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        let e = names.entry(name.to_owned()).or_default();
        if let Some(limit) = self.limit {
            while e
                .times
                .front()
                .is_some_and(|t| now.duration_since(*t) > limit.window)
            {
                e.times.pop_front();
            }
            let done = u32::try_from(e.times.len()).unwrap_or(u32::MAX);
            if done >= limit.max {
                return Verdict::Loop { count: done, limit };
            }
        }
        e.times.push_back(now);
        e.pending = Some(domid);
        e.cancelled = false;
        Verdict::Restart {
            count: u32::try_from(e.times.len()).unwrap_or(u32::MAX),
        }
    }

    /// Cancels the pending restart of the domain `spec` names (its name, or the stopped instance's
    /// domid); true when there was one.
    pub fn cancel(&self, spec: &str) -> bool {
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        let by_id: Option<u32> = spec.parse().ok();
        for (name, e) in names.iter_mut() {
            if e.pending.is_some() && (name == spec || e.pending == by_id) {
                e.cancelled = true;
                return true;
            }
        }
        false
    }

    /// Ends the pending restart of `name`: true to go ahead, false when it was cancelled (the history
    /// is then forgotten: the user stopped the loop).
    pub fn take_pending(&self, name: &str) -> bool {
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(e) = names.get_mut(name) else {
            return true;
        };
        e.pending = None;
        if e.cancelled {
            names.remove(name);
            return false;
        }
        true
    }

    /// Records that `shutdown` was asked of `name`'s running instance: if domusd restarted it before (it
    /// may be in a loop), its poweroff is not restarted.
    pub fn request_stop(&self, name: &str) {
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = names.get_mut(name) {
            e.stop_requested = true;
        }
    }

    /// Whether a `shutdown` of `name` (a restarted instance) ends its loop; clears the request.
    pub fn take_stop_request(&self, name: &str) -> bool {
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        match names.get_mut(name) {
            Some(e) if e.stop_requested => {
                names.remove(name);
                true
            }
            _ => false,
        }
    }

    /// Whether `spec` names a pending restart.
    #[cfg(test)]
    fn is_pending(&self, spec: &str) -> bool {
        let names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        let by_id: Option<u32> = spec.parse().ok();
        names.iter().any(|(name, e)| {
            e.pending.is_some() && !e.cancelled && (name == spec || e.pending == by_id)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_parses() {
        assert_eq!(
            "3/10".parse::<RestartLimitArg>().unwrap().0,
            Some(RestartLimit {
                max: 3,
                window: Duration::from_secs(10)
            })
        );
        assert_eq!("off".parse::<RestartLimitArg>().unwrap().0, None);
        for bad in ["", "3", "0/10", "3/0", "x/y", "3/10/2"] {
            assert!(bad.parse::<RestartLimitArg>().is_err(), "{bad}");
        }
        assert_eq!(
            "5/60"
                .parse::<RestartLimitArg>()
                .unwrap()
                .0
                .unwrap()
                .to_string(),
            "5/60"
        );
    }

    #[test]
    fn the_restart_past_the_limit_is_a_loop_until_the_window_moves_on() {
        let g = RestartGuard::new(Some(RestartLimit {
            max: 2,
            window: Duration::from_secs(10),
        }));
        let t0 = Instant::now();
        assert_eq!(g.begin("a", 1, t0), Verdict::Restart { count: 1 });
        assert!(g.take_pending("a"));
        assert_eq!(
            g.begin("a", 2, t0 + Duration::from_secs(1)),
            Verdict::Restart { count: 2 }
        );
        assert!(g.take_pending("a"));
        assert!(matches!(
            g.begin("a", 3, t0 + Duration::from_secs(2)),
            Verdict::Loop { count: 2, .. }
        ));
        // Other names are counted apart; the window moves on.
        assert_eq!(g.begin("b", 4, t0), Verdict::Restart { count: 1 });
        assert_eq!(
            g.begin("a", 5, t0 + Duration::from_secs(12)),
            Verdict::Restart { count: 1 }
        );
        let off = RestartGuard::new(None);
        for i in 0..100 {
            assert!(matches!(off.begin("x", i, t0), Verdict::Restart { .. }));
        }
    }

    #[test]
    fn destroy_cancels_a_pending_restart_by_name_or_old_domid() {
        let g = RestartGuard::new("5/60".parse::<RestartLimitArg>().unwrap().0);
        let t0 = Instant::now();
        g.begin("web", 7, t0);
        assert!(g.is_pending("web") && g.is_pending("7"));
        assert!(!g.cancel("other"));
        assert!(g.cancel("7"));
        assert!(!g.is_pending("web"));
        assert!(!g.take_pending("web"), "cancelled");
        assert!(!g.cancel("web"), "nothing pending any more");
        g.begin("web", 8, t0);
        assert!(g.take_pending("web"), "not cancelled");
        // shutdown of the restarted instance ends the loop; unknown names have no loop to end.
        g.request_stop("web");
        g.request_stop("never-restarted");
        assert!(g.take_stop_request("web"));
        assert!(!g.take_stop_request("web"));
        assert!(!g.take_stop_request("never-restarted"));
    }
}
