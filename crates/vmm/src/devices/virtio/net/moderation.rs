//! Receive moderation: while the TAP streams, the device thread reads it in batches rather than
//! waking for every few frames.
//!
//! A receive pass that moved at least [`RxHold::min_frames`] frames shows a stream; the thread then
//! leaves the TAP unpolled for the hold window and reads what gathered in one pass when it ends
//! (the TAP's own queue, 1000 frames by default, holds them; the window is far shorter than it
//! takes to fill). Each wake-up of the thread costs scheduler time on both sides (the waker's
//! `wake_up` and the sleeper's switch), which on a busy two-CPU host costs more than reading the
//! frames; a handful of frames per wake is what the thread got without the hold. A pass that moved
//! fewer frames (a ping, request/response traffic) sets no hold, so a lone frame after a quiet
//! spell is read at once: latency is unchanged. `DOMUS_NET_RX_HOLD_US` overrides the window
//! (0: never hold).

use std::time::{Duration, Instant};

/// Default hold window.
pub const DEFAULT_HOLD: Duration = Duration::from_micros(200);
/// Frames a pass must move to count as a stream.
pub const MIN_FRAMES: u64 = 8;

/// The hold state of one NIC's receive side.
#[derive(Debug, Clone)]
pub struct RxHold {
    window: Duration,
    min_frames: u64,
    until: Option<Instant>,
}

impl RxHold {
    /// A hold of `window` after passes of at least `min_frames` frames (a zero window: never).
    pub fn new(window: Duration, min_frames: u64) -> Self {
        Self {
            window,
            min_frames,
            until: None,
        }
    }

    /// The window from `DOMUS_NET_RX_HOLD_US`, else [`DEFAULT_HOLD`]; [`MIN_FRAMES`].
    pub fn from_env() -> Self {
        let window = std::env::var("DOMUS_NET_RX_HOLD_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(DEFAULT_HOLD, Duration::from_micros);
        Self::new(window, MIN_FRAMES)
    }

    /// Frames a pass must move to start a hold.
    pub fn min_frames(&self) -> u64 {
        self.min_frames
    }

    /// After a receive pass that drained the TAP having moved `moved` frames, at `now`.
    pub fn after_pass(&mut self, moved: u64, now: Instant) {
        self.until =
            (moved >= self.min_frames && !self.window.is_zero()).then(|| now + self.window);
    }

    /// Forgets the hold (the pass ended for another reason than a drained TAP).
    pub fn clear(&mut self) {
        self.until = None;
    }

    /// How much longer the TAP stays unpolled at `now` (`None`: poll it).
    pub fn remaining(&mut self, now: Instant) -> Option<Duration> {
        match self.until {
            Some(t) if t > now => Some(t - now),
            _ => {
                self.until = None;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_holds_for_the_window_and_a_trickle_never_does() {
        let t0 = Instant::now();
        let mut h = RxHold::new(Duration::from_micros(100), 8);
        h.after_pass(7, t0);
        assert_eq!(h.remaining(t0), None, "7 frames are not a stream");
        h.after_pass(8, t0);
        assert_eq!(h.remaining(t0), Some(Duration::from_micros(100)));
        assert_eq!(
            h.remaining(t0 + Duration::from_micros(40)),
            Some(Duration::from_micros(60))
        );
        assert_eq!(h.remaining(t0 + Duration::from_micros(100)), None);
        assert_eq!(h.remaining(t0), None, "an ended hold stays ended");
        h.after_pass(300, t0);
        h.clear();
        assert_eq!(h.remaining(t0), None);
    }

    #[test]
    fn the_thread_gets_its_short_slice_and_keeps_its_nice_value() {
        let t = std::thread::spawn(|| {
            // SAFETY: getpriority/setpriority on the calling thread only.
            let nice_before = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            request_slice(Duration::from_micros(100)).map_err(|e| e.to_string())?;
            let mut attr = SchedAttr::default();
            let size = u32::try_from(std::mem::size_of::<SchedAttr>()).unwrap_or(48);
            // SAFETY: as in `request_slice`.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_sched_getattr,
                    0,
                    std::ptr::from_mut(&mut attr),
                    size,
                    0u32,
                )
            };
            assert_eq!(rc, 0);
            Ok::<_, String>((nice_before, attr.nice, attr.runtime))
        });
        let (nice_before, nice, runtime) = t.join().expect("thread").expect("request_slice");
        assert_eq!(nice, nice_before);
        assert_eq!(runtime, 100_000, "the slice the kernel reports");
    }

    #[test]
    fn a_zero_window_never_holds() {
        let t0 = Instant::now();
        let mut h = RxHold::new(Duration::ZERO, 8);
        h.after_pass(1000, t0);
        assert_eq!(h.remaining(t0), None);
    }
}

/// `struct sched_attr` (SCHED_ATTR_SIZE_VER0), for sched_getattr(2)/sched_setattr(2).
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// Default scheduling slice of the device thread ([`request_slice`]).
pub const DEFAULT_SLICE: Duration = Duration::from_micros(100);

/// The slice from `DOMUS_NET_SLICE_US`, else [`DEFAULT_SLICE`]; `None` for 0 (leave the thread's
/// slice alone).
pub fn slice_from_env() -> Option<Duration> {
    let slice = std::env::var("DOMUS_NET_SLICE_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(DEFAULT_SLICE, Duration::from_micros);
    (!slice.is_zero()).then_some(slice)
}

/// Asks the scheduler for a short slice (`sched_runtime`) for the calling thread, keeping its
/// policy and nice value: under EEVDF (Linux 6.12+) a waking thread with a shorter slice gets an
/// earlier virtual deadline and preempts the running one (a spinning vCPU, a busy sender) instead
/// of waiting for the end of its slice. It needs no privilege and changes no share of the CPU,
/// only how soon a woken thread runs. Threads of another policy (real-time, set by the host's
/// administrator) are left alone. The kernel clamps `slice` to 0.1–100 ms; older kernels ignore it.
///
/// # Errors
/// sched_getattr or sched_setattr failing.
pub fn request_slice(slice: Duration) -> std::io::Result<()> {
    let size = u32::try_from(std::mem::size_of::<SchedAttr>()).unwrap_or(48);
    let mut attr = SchedAttr::default();
    // SAFETY: `attr` is a live, writable sched_attr of `size` bytes; pid 0 is the calling thread.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            std::ptr::from_mut(&mut attr),
            size,
            0u32,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if attr.policy != u32::try_from(libc::SCHED_OTHER).unwrap_or(0) {
        return Ok(());
    }
    attr.size = size;
    attr.flags = 0;
    attr.runtime = u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX);
    // SAFETY: `attr` is a live sched_attr of the size it states; pid 0 is the calling thread.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, std::ptr::from_ref(&attr), 0u32) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
