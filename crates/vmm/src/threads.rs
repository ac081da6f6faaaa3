//! The VMM's threads: the one place each kind is spawned, and the event/acknowledgement channel every
//! long-lived thread is controlled through.
//!
//! Kinds ([`ThreadKind`]): vCPU threads (KVM_RUN), device threads (one per virtio device: waits on the
//! queue notifications and its control events) and I/O threads (a disk's worker pool where io_uring is
//! unavailable). [`spawn`] is the only function that starts them, so per-kind policy (the sandboxing
//! issue's seccomp filters) has one place to go.
//!
//! Control ([`control_channel`]): the owner sends a [`ThreadEvent`] (pause, resume, stop, save state)
//! and waits for the thread's [`ThreadAck`], as Firecracker's `VcpuEvent`/`VcpuResponse` do: pausing
//! means "the thread said it is paused", never "some time passed". Device threads poll the channel's
//! eventfd next to their queue eventfds; vCPU threads are kicked out of KVM_RUN by a signal.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vmm_sys_util::eventfd::EventFd;

/// Starts a thread of `kind` named `name` that waits for a value before it runs `f` with it
/// (a restore's threads exist before the image is read, so starting them is no part of a live
/// migration's downtime: [`crate::machine`]). The thread starts (and enters its seccomp filter) now;
/// [`Held::release`] hands it the value. Dropping the [`Held`] unreleased ends the thread without
/// running `f` (`f` is dropped in the thread). [`Held::spin`] makes it wait busily for a while.
///
/// # Errors
/// The host refused a new thread.
pub fn spawn_held<F, V>(kind: ThreadKind, name: String, f: F) -> io::Result<Held<V>>
where
    F: FnOnce(V) + Send + 'static,
    V: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel::<HeldMsg<V>>(2);
    let handle = spawn(kind, name, move || match wait_held(&rx) {
        Some(v) => f(v),
        None => drop(f),
    })?;
    Ok(Held {
        tx: Some(tx),
        handle: Some(handle),
    })
}

/// What a held thread is told.
enum HeldMsg<V> {
    /// Wait busily until this instant, off CPU `.1` if given (see [`Held::spin_away`]).
    Spin(Instant, Option<usize>),
    /// Run with this value.
    Go(V),
}

/// A held thread's wait: its value, or None once its [`Held`] is gone. While told to spin it polls
/// the channel, yielding the CPU in between, instead of sleeping in it: waking a sleeping thread
/// took 30-1300 µs on the development host (a restored vCPU during a live migration's downtime).
fn wait_held<V>(rx: &std::sync::mpsc::Receiver<HeldMsg<V>>) -> Option<V> {
    let mut until: Option<Instant> = None;
    // The affinity to go back to after spinning away from a CPU.
    let mut moved: Option<libc::cpu_set_t> = None;
    let v = wait_held_loop(rx, &mut until, &mut moved);
    if let Some(set) = moved {
        // SAFETY: `set` is a valid cpu_set_t of the size passed; 0 is this thread.
        let _ignored =
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    }
    v
}

/// Moves this thread off `cpu` (when it may run elsewhere); returns the affinity it had.
fn move_off(cpu: usize) -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    let mut old: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `old` is a writable cpu_set_t of the size passed; 0 is this thread.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut old) } != 0
    {
        return None;
    }
    let mut new = old;
    if cpu >= usize::try_from(libc::CPU_SETSIZE).unwrap_or(0) {
        return None;
    }
    // SAFETY: `cpu` < CPU_SETSIZE was checked, so the bit lies inside `new`.
    unsafe { libc::CPU_CLR(cpu, &mut new) };
    // SAFETY: `new` is a valid cpu_set_t.
    if unsafe { libc::CPU_COUNT(&new) } == 0 {
        return None;
    }
    // SAFETY: `new` is a valid cpu_set_t of the size passed; 0 is this thread.
    (unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &new) } == 0)
        .then_some(old)
}

fn wait_held_loop<V>(
    rx: &std::sync::mpsc::Receiver<HeldMsg<V>>,
    until: &mut Option<Instant>,
    moved: &mut Option<libc::cpu_set_t>,
) -> Option<V> {
    loop {
        let msg = match *until {
            Some(t) if Instant::now() < t => match rx.try_recv() {
                Ok(m) => m,
                Err(std::sync::mpsc::TryRecvError::Empty) => {
                    std::thread::yield_now();
                    continue;
                }
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return None,
            },
            _ => rx.recv().ok()?,
        };
        match msg {
            HeldMsg::Go(v) => return Some(v),
            HeldMsg::Spin(t, away) => {
                *until = Some(t);
                if let (Some(cpu), None) = (away, &moved) {
                    *moved = move_off(cpu);
                }
            }
        }
    }
}

/// A thread started by [`spawn_held`], waiting for its value.
pub struct Held<V> {
    tx: Option<std::sync::mpsc::SyncSender<HeldMsg<V>>>,
    handle: Option<JoinHandle<()>>,
}

impl<V> Held<V> {
    /// Makes the thread wait for its value busily for `limit` from now (then asleep again): its
    /// release is near and its wake-up would be on the critical path. Best effort: a thread
    /// already told to spin, or gone, is left as it is.
    pub fn spin(&self, limit: Duration) {
        if let Some(tx) = &self.tx {
            let _ignored = tx.try_send(HeldMsg::Spin(Instant::now() + limit, None));
        }
    }

    /// [`Held::spin`], and the thread moves off the caller's CPU while it spins (back to its
    /// affinity once released): on two cores the releasing thread, busy until the release, no
    /// longer keeps the spinning one off its CPU. Only for thread kinds whose filter allows
    /// `sched_setaffinity` (vCPU threads).
    pub fn spin_away(&self, limit: Duration) {
        // SAFETY: sched_getcpu takes no arguments (vDSO/rseq on x86-64, no system call).
        let cpu = usize::try_from(unsafe { libc::sched_getcpu() }).ok();
        if let Some(tx) = &self.tx {
            let _ignored = tx.try_send(HeldMsg::Spin(Instant::now() + limit, cpu));
        }
    }

    #[cfg(test)]
    fn is_waiting_for_test(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Lets the thread run with `v`; returns its handle.
    ///
    /// # Errors
    /// The thread ended before it got its value (it only ends early when its start failed).
    pub fn release(mut self, v: V) -> io::Result<JoinHandle<()>> {
        let (Some(tx), Some(handle)) = (self.tx.take(), self.handle.take()) else {
            return Err(io::Error::other("a held thread was released twice"));
        };
        tx.send(HeldMsg::Go(v))
            .map_err(|_| io::Error::other("a held thread ended before it was released"))?;
        Ok(handle)
    }
}

impl<V> Drop for Held<V> {
    /// Unreleased: the thread's channel closes, it ends without running its function, and is joined.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(h) = self.handle.take() {
            let _ignored = h.join();
        }
    }
}

/// What a thread does (names the thread and chooses its seccomp filter: [`crate::seccomp`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadKind {
    /// Runs one vCPU.
    Vcpu,
    /// Serves one virtio device's queues (a device without a filter of its own).
    Device,
    /// Serves a virtio-blk device's queues (io_uring or synchronous I/O on the image).
    Block,
    /// Serves a virtio-net device's queues (its TAP).
    Net,
    /// Does blocking host I/O for a device.
    Io,
}

impl ThreadKind {
    /// The seccomp filter this kind of thread runs under in a sandboxed VMM.
    pub fn filter(self) -> crate::seccomp::FilterKind {
        use crate::seccomp::FilterKind;
        match self {
            Self::Vcpu => FilterKind::Vcpu,
            Self::Device => FilterKind::Device,
            Self::Block => FilterKind::Block,
            Self::Net => FilterKind::Net,
            Self::Io => FilterKind::Io,
        }
    }
}

/// Starts a thread of `kind` named `name` running `f`.
///
/// # Errors
/// The host refused a new thread.
pub fn spawn<F, T>(kind: ThreadKind, name: String, f: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tracing::debug!(?kind, thread = %name, "starting thread");
    // The thread narrows itself to its kind's filter before it runs anything else.
    std::thread::Builder::new().name(name).spawn(move || {
        crate::seccomp::enter(kind.filter());
        f()
    })
}

/// A control event for a vCPU or device thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadEvent {
    /// Stop running guest code / serving queues until [`ThreadEvent::Resume`]; in-flight I/O completes
    /// first.
    Pause,
    /// Continue after a pause.
    Resume,
    /// Leave the thread's loop for good.
    Stop,
    /// Report the thread's state (the migration issue fills in what it contains).
    SaveState,
}

/// A thread's answer to one [`ThreadEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreadAck {
    /// Now paused.
    Paused,
    /// Running again.
    Resumed,
    /// Left its loop (also sent once, unasked, when the thread ends on its own).
    Stopped,
    /// The saved state (opaque bytes; empty until the migration issue defines them).
    State(Vec<u8>),
}

/// The waiting for an acknowledgement failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AckError {
    /// No answer within the bound.
    #[error("thread {name} did not acknowledge {event:?} within {timeout_ms} ms")]
    Timeout {
        /// Thread name.
        name: String,
        /// What was asked.
        event: ThreadEvent,
        /// The bound.
        timeout_ms: u128,
    },
    /// The thread is gone.
    #[error("thread {name} has exited")]
    Gone {
        /// Thread name.
        name: String,
    },
    /// It answered something else.
    #[error("thread {name} answered {got:?} to {event:?}")]
    Unexpected {
        /// Thread name.
        name: String,
        /// What was asked.
        event: ThreadEvent,
        /// What came back.
        got: ThreadAck,
    },
}

/// A one-way queue between two threads: a mutex, a condition variable and a "something waiting"
/// flag that a hot loop (a vCPU between KVM_RUNs) can test without taking the lock. (Smaller than
/// `std::sync::mpsc`, whose code would be a measurable part of an idle VMM's resident memory.)
struct Queue<T> {
    items: Mutex<(Vec<T>, bool)>,
    ready: Condvar,
    pending: AtomicBool,
}

impl<T> Queue<T> {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            items: Mutex::new((Vec::new(), false)),
            ready: Condvar::new(),
            pending: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, (Vec<T>, bool)> {
        self.items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends `item`; false if the other side is gone.
    fn push(&self, item: T) -> bool {
        let mut q = self.lock();
        if q.1 {
            return false;
        }
        q.0.push(item);
        self.pending.store(true, Ordering::Release);
        self.ready.notify_all();
        true
    }

    fn take_first(&self, q: &mut (Vec<T>, bool)) -> Option<T> {
        if q.0.is_empty() {
            return None;
        }
        let item = q.0.remove(0);
        self.pending.store(!q.0.is_empty(), Ordering::Release);
        Some(item)
    }

    /// The first item, without blocking.
    fn try_pop(&self) -> Option<T> {
        if !self.pending.load(Ordering::Acquire) {
            return None;
        }
        let mut q = self.lock();
        self.take_first(&mut q)
    }

    /// The first item, waiting until `deadline` (None: forever); `Err(true)` if the other side is
    /// gone, `Err(false)` on timeout.
    fn pop_until(&self, deadline: Option<Instant>) -> Result<T, bool> {
        let mut q = self.lock();
        loop {
            if let Some(item) = self.take_first(&mut q) {
                return Ok(item);
            }
            if q.1 {
                return Err(true);
            }
            q = match deadline {
                None => self
                    .ready
                    .wait(q)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(false);
                    }
                    self.ready
                        .wait_timeout(q, left)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    /// The sending side is gone: wake the receiver.
    fn close(&self) {
        self.lock().1 = true;
        self.ready.notify_all();
    }
}

/// The owner's side: sends events, waits for acknowledgements.
pub struct ThreadControl {
    name: String,
    events: Arc<Queue<ThreadEvent>>,
    wake: EventFd,
    acks: Arc<Queue<ThreadAck>>,
    stopped: bool,
}

/// The thread's side: receives events, sends acknowledgements.
pub struct ThreadMailbox {
    events: Arc<Queue<ThreadEvent>>,
    wake: EventFd,
    acks: Arc<Queue<ThreadAck>>,
}

impl Drop for ThreadControl {
    fn drop(&mut self) {
        self.events.close();
    }
}

impl Drop for ThreadMailbox {
    fn drop(&mut self) {
        self.acks.close();
    }
}

/// A connected pair for the thread called `name`.
///
/// # Errors
/// eventfd creation failed.
pub fn control_channel(name: &str) -> io::Result<(ThreadControl, ThreadMailbox)> {
    let wake = EventFd::new(libc::EFD_NONBLOCK)?;
    let (events, acks) = (Queue::new(), Queue::new());
    Ok((
        ThreadControl {
            name: name.to_owned(),
            events: Arc::clone(&events),
            wake: wake.try_clone()?,
            acks: Arc::clone(&acks),
            stopped: false,
        },
        ThreadMailbox { events, wake, acks },
    ))
}

impl ThreadControl {
    /// The thread's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends `event` without waiting (the caller then kicks the thread if it must, and calls
    /// [`ThreadControl::wait_ack`]).
    pub fn send(&self, event: ThreadEvent) {
        if self.events.push(event) {
            let _ignored = self.wake.write(1);
        }
    }

    /// Waits until `deadline` for the acknowledgement of `event`.
    ///
    /// # Errors
    /// [`AckError`]: timeout, the thread is gone, or it answered something else.
    pub fn wait_ack(
        &mut self,
        event: ThreadEvent,
        deadline: Instant,
    ) -> Result<ThreadAck, AckError> {
        if self.stopped {
            return Err(AckError::Gone {
                name: self.name.clone(),
            });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let ack = match self.acks.pop_until(Some(deadline)) {
            Ok(a) => a,
            Err(false) => {
                return Err(AckError::Timeout {
                    name: self.name.clone(),
                    event,
                    timeout_ms: left.as_millis(),
                })
            }
            Err(true) => {
                self.stopped = true;
                return Err(AckError::Gone {
                    name: self.name.clone(),
                });
            }
        };
        let expected = matches!(
            (event, &ack),
            (ThreadEvent::Pause, ThreadAck::Paused)
                | (ThreadEvent::Resume, ThreadAck::Resumed)
                | (ThreadEvent::Stop, ThreadAck::Stopped)
                | (ThreadEvent::SaveState, ThreadAck::State(_))
        );
        if ack == ThreadAck::Stopped {
            self.stopped = true;
        }
        if expected {
            Ok(ack)
        } else if self.stopped {
            Err(AckError::Gone {
                name: self.name.clone(),
            })
        } else {
            Err(AckError::Unexpected {
                name: self.name.clone(),
                event,
                got: ack,
            })
        }
    }

    /// Sends `event` and waits up to `timeout` for its acknowledgement.
    ///
    /// # Errors
    /// As [`ThreadControl::wait_ack`].
    pub fn request(
        &mut self,
        event: ThreadEvent,
        timeout: Duration,
    ) -> Result<ThreadAck, AckError> {
        self.send(event);
        self.wait_ack(event, Instant::now() + timeout)
    }

    /// Whether the thread has said it stopped (or is gone).
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }
}

impl ThreadMailbox {
    /// An eventfd that becomes readable when an event is waiting (for poll-based threads).
    pub fn fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// The next waiting event, if any (never blocks).
    pub fn try_next(&self) -> Option<ThreadEvent> {
        let _ignored = self.wake.read();
        self.events.try_pop()
    }

    /// The next waiting event without touching the eventfd (for threads woken by a signal, whose
    /// loop must not pay a system call per iteration).
    pub fn try_recv(&self) -> Option<ThreadEvent> {
        self.events.try_pop()
    }

    /// Blocks until the next event (a paused thread waits here); `Stop` if the owner is gone.
    pub fn next(&self) -> ThreadEvent {
        self.events.pop_until(None).unwrap_or(ThreadEvent::Stop)
    }

    /// Answers an event.
    pub fn ack(&self, ack: ThreadAck) {
        let _ignored = self.acks.push(ack);
    }

    /// Serves every waiting event of a poll-based device thread without blocking (pausing blocks in
    /// [`ThreadMailbox::stay_paused`]); `save` answers `SaveState`. `false` when the thread must end.
    pub fn serve_waiting(&self, mut save: impl FnMut() -> Vec<u8>) -> bool {
        while let Some(ev) = self.try_next() {
            match ev {
                ThreadEvent::Pause => {
                    self.ack(ThreadAck::Paused);
                    if !self.stay_paused(&mut save) {
                        return false;
                    }
                }
                ThreadEvent::Resume => self.ack(ThreadAck::Resumed),
                ThreadEvent::SaveState => self.ack(ThreadAck::State(save())),
                ThreadEvent::Stop => return false,
            }
        }
        true
    }

    /// Serves events while paused: blocks until `Resume` (returns `true`, acknowledged) or `Stop`
    /// (returns `false`, not yet acknowledged: the thread acknowledges when it has left its loop).
    /// `save` answers `SaveState` meanwhile.
    pub fn stay_paused(&self, mut save: impl FnMut() -> Vec<u8>) -> bool {
        loop {
            match self.next() {
                ThreadEvent::Resume => {
                    self.ack(ThreadAck::Resumed);
                    return true;
                }
                ThreadEvent::Stop => return false,
                ThreadEvent::Pause => self.ack(ThreadAck::Paused),
                ThreadEvent::SaveState => self.ack(ThreadAck::State(save())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// A worker in the shape of a device thread: counts "work" while running, none while paused.
    fn worker(mb: ThreadMailbox, work: Arc<AtomicU64>) {
        loop {
            match mb.try_next() {
                Some(ThreadEvent::Pause) => {
                    mb.ack(ThreadAck::Paused);
                    if !mb.stay_paused(|| b"state".to_vec()) {
                        break;
                    }
                }
                Some(ThreadEvent::Stop) => break,
                Some(ThreadEvent::Resume) => mb.ack(ThreadAck::Resumed),
                Some(ThreadEvent::SaveState) => mb.ack(ThreadAck::State(Vec::new())),
                None => {
                    work.fetch_add(1, Ordering::SeqCst);
                    std::thread::yield_now();
                }
            }
        }
        mb.ack(ThreadAck::Stopped);
    }

    #[test]
    fn pause_resume_stop_are_acknowledged() {
        let (mut ctl, mb) = control_channel("t").unwrap();
        let work = Arc::new(AtomicU64::new(0));
        let w = Arc::clone(&work);
        let h = spawn(ThreadKind::Device, "t".into(), move || worker(mb, w)).unwrap();
        let t = Duration::from_secs(10);
        assert_eq!(ctl.request(ThreadEvent::Pause, t), Ok(ThreadAck::Paused));
        // Acknowledged means stopped working: the count no longer moves.
        let frozen = work.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(work.load(Ordering::SeqCst), frozen);
        assert_eq!(
            ctl.request(ThreadEvent::SaveState, t),
            Ok(ThreadAck::State(b"state".to_vec()))
        );
        assert_eq!(ctl.request(ThreadEvent::Resume, t), Ok(ThreadAck::Resumed));
        let deadline = Instant::now() + t;
        while work.load(Ordering::SeqCst) == frozen && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(
            work.load(Ordering::SeqCst) > frozen,
            "runs again after resume"
        );
        assert_eq!(ctl.request(ThreadEvent::Stop, t), Ok(ThreadAck::Stopped));
        assert!(ctl.is_stopped());
        h.join().unwrap();
        assert!(matches!(
            ctl.request(ThreadEvent::Pause, t),
            Err(AckError::Gone { .. })
        ));
    }

    #[test]
    fn a_silent_thread_times_out_and_a_dead_one_is_gone() {
        let (mut ctl, mb) = control_channel("quiet").unwrap();
        assert!(matches!(
            ctl.request(ThreadEvent::Pause, Duration::from_millis(10)),
            Err(AckError::Timeout { .. })
        ));
        drop(mb);
        assert!(matches!(
            ctl.request(ThreadEvent::Pause, Duration::from_millis(10)),
            Err(AckError::Gone { .. })
        ));
    }

    #[test]
    fn a_held_thread_runs_only_once_released_and_with_its_value() {
        let ran = Arc::new(AtomicU64::new(0));
        let r = Arc::clone(&ran);
        let held = spawn_held(ThreadKind::Device, "held".into(), move |v: u64| {
            r.store(v, Ordering::SeqCst);
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            ran.load(Ordering::SeqCst),
            0,
            "nothing runs before the release"
        );
        let h = held.release(42).unwrap();
        h.join().unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 42);
    }

    #[test]
    fn a_held_thread_dropped_unreleased_ends_without_running() {
        let ran = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let (r, d) = (Arc::clone(&ran), Arc::clone(&dropped));
        struct OnDrop(Arc<AtomicU64>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.store(1, Ordering::SeqCst);
            }
        }
        let guard = OnDrop(d);
        let held = spawn_held(ThreadKind::Device, "unreleased".into(), move |v: u64| {
            let _g = &guard;
            r.store(v, Ordering::SeqCst);
        })
        .unwrap();
        // Drop joins the thread: returning at all shows it ended.
        drop(held);
        assert_eq!(ran.load(Ordering::SeqCst), 0, "its function never ran");
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            1,
            "its function was dropped"
        );
    }

    fn own_affinity() -> libc::cpu_set_t {
        // SAFETY: cpu_set_t is a plain bit array.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a writable cpu_set_t of the size passed; 0 is this thread.
        let rc =
            unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        assert_eq!(rc, 0);
        set
    }

    #[test]
    fn a_thread_spinning_away_leaves_the_callers_cpu_and_runs_with_its_own_affinity_again() {
        let before = own_affinity();
        let (tx, rx) = std::sync::mpsc::channel();
        let held = spawn_held(ThreadKind::Vcpu, "spin-away".into(), move |v: u64| {
            tx.send((v, own_affinity())).unwrap();
        })
        .unwrap();
        held.spin_away(Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(5));
        assert!(held.is_waiting_for_test(), "spinning runs nothing");
        held.release(9).unwrap().join().unwrap();
        let (v, after) = rx.recv().unwrap();
        assert_eq!(v, 9);
        let same = {
            // SAFETY: both are valid cpu_set_t values.
            unsafe { libc::CPU_EQUAL(&before, &after) }
        };
        assert!(same, "its affinity is back");
    }

    #[test]
    fn a_spinning_held_thread_runs_only_once_released_and_ends_if_dropped() {
        let ran = Arc::new(AtomicU64::new(0));
        let r = Arc::clone(&ran);
        let held = spawn_held(ThreadKind::Device, "spin".into(), move |v: u64| {
            r.store(v, Ordering::SeqCst);
        })
        .unwrap();
        held.spin(Duration::from_millis(20));
        held.spin(Duration::from_millis(20)); // told twice: still fine
        std::thread::sleep(Duration::from_millis(40)); // past the limit: asleep again
        assert_eq!(ran.load(Ordering::SeqCst), 0, "spinning runs nothing");
        held.spin(Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(ran.load(Ordering::SeqCst), 0, "spinning runs nothing");
        held.release(7).unwrap().join().unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 7);

        // Dropped while spinning: ends without running, without waiting out the limit.
        let r = Arc::clone(&ran);
        let held = spawn_held(ThreadKind::Device, "spin-drop".into(), move |v: u64| {
            r.store(v, Ordering::SeqCst);
        })
        .unwrap();
        held.spin(Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(5));
        let t = Instant::now();
        drop(held);
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "it did not wait out its spin"
        );
        assert_eq!(
            ran.load(Ordering::SeqCst),
            7,
            "the dropped thread never ran"
        );
    }
}
