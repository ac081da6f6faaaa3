//! The NIC's device thread: one poll loop over the TAP, the three queue notifications, the control
//! mailbox and the rate limiter's timer. Receive runs while the driver has buffers posted (else
//! the TAP is not polled for input at all), transmit until the ring is empty, the TAP's queue is
//! full (then the TAP is polled for output) or the rate limit holds it (then the timer wakes it).
//! While the TAP streams, receive is read in batches ([`super::moderation::RxHold`]), and the
//! thread asks for a short scheduling slice so that it runs soon after it wakes
//! ([`super::moderation::request_slice`]).
//!
//! Control events as for the other devices ([`crate::threads`]): frames are moved synchronously,
//! so nothing is in flight when `Pause` is acknowledged.

use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use virtio_queue::QueueT;
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::timerfd::TimerFd;

use super::ctrl::{self, Effect};
use super::moderation::{self, RxHold};
use super::rate::CreditLimiter;
use super::rx::{Rx, RxPass};
use super::tx::{Tx, TxPass};
use super::{NetShared, CTRL_QUEUE};
use crate::devices::virtio::mmio::MmioTransport;
use crate::threads::{ThreadAck, ThreadMailbox};
use crate::vstate::memory::Direction;

/// What the device thread needs (moved into it).
pub struct Worker {
    /// Transport (queues, status, interrupt).
    pub transport: Arc<MmioTransport>,
    /// TAP, features, filter.
    pub shared: Arc<NetShared>,
    /// QueueNotify of receiveq1, transmitq1, controlq.
    pub notify: [EventFd; 3],
    /// Control events.
    pub events: ThreadMailbox,
    /// `rate=`, if any.
    pub limiter: Option<CreditLimiter>,
}

const TAP: usize = 0;
const RXQ: usize = 1;
const TXQ: usize = 2;
const CTRLQ: usize = 3;
const EVENTS: usize = 4;
const TIMER: usize = 5;

/// How long the thread keeps looking (poll with no timeout) after the guest last sent a frame before
/// it sleeps. A request/response exchange (ping, RPC) then finds the answer and the guest's next
/// request without a thread wake-up, which on a virtualised host costs more than the frame itself;
/// a quiet NIC spins once for this long and sleeps. Only transmits open the window: a host → guest
/// stream keeps the thread busy by itself, and spinning there takes a CPU from the sender and the
/// vCPU (measured: −25 % on two CPUs). `DOMUS_NET_SPIN_US` overrides it (0: never spin).
fn spin_window() -> Duration {
    static SPIN: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *SPIN.get_or_init(|| {
        let us = std::env::var("DOMUS_NET_SPIN_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(50);
        Duration::from_micros(us)
    })
}

impl Worker {
    /// Runs until a `Stop` event (or the owner going away); acknowledges `Stop` last.
    pub fn run(mut self) {
        let name = self.transport.name().to_owned();
        let mut timer = match TimerFd::new() {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(dev = %name, error = %e, "cannot create a timerfd; NIC stops");
                self.events.ack(ThreadAck::Stopped);
                return;
            }
        };
        let origin = Instant::now();
        let (mut rx, mut tx) = (Rx::new(), Tx::new());
        let mut ctrl_buf = Vec::with_capacity(ctrl::MAX_COMMAND_BYTES);
        let (mut rx_wait, mut tx_throttled, mut tx_blocked, mut tap_broken) =
            (false, false, false, false);
        let spin = spin_window();
        let mut last_sent = origin.checked_sub(spin).unwrap_or(origin);
        // Where the time goes (logged when the NIC stops): polls allowed to sleep, receive passes that
        // ran out of guest buffers.
        let (mut sleeps, mut rx_dry) = (0u64, 0u64);
        let mut hold = RxHold::from_env();
        if let Some(slice) = moderation::slice_from_env() {
            if let Err(e) = moderation::request_slice(slice) {
                tracing::warn!(dev = %name, error = %e, "cannot shorten the device thread's scheduling slice");
            }
        }
        let raw = [
            self.shared.tap.as_fd().as_raw_fd(),
            self.notify[0].as_raw_fd(),
            self.notify[1].as_raw_fd(),
            self.notify[2].as_raw_fd(),
            self.events.fd(),
            timer.as_raw_fd(),
        ];
        loop {
            let mut tap_events = 0;
            let held = hold.remaining(Instant::now());
            if !rx_wait && !tap_broken && held.is_none() {
                tap_events |= libc::POLLIN;
            }
            if tx_blocked && !tap_broken {
                tap_events |= libc::POLLOUT;
            }
            let mut fds = raw.map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
            fds[TAP].events = tap_events;
            if tap_events == 0 {
                fds[TAP].fd = -1;
            }
            let spinning = last_sent.elapsed() < spin;
            sleeps += u64::from(!spinning);
            let timeout = if spinning { Some(Duration::ZERO) } else { held };
            if crate::sys::ppoll_timeout(&mut fds, timeout).is_err() {
                tracing::error!(dev = %name, "poll failed; NIC stops");
                break;
            }
            if fds[EVENTS].revents != 0 {
                // Nothing in flight while paused or saved: held receive chains go back first.
                rx.release(&self.transport);
                if !self.control() {
                    break;
                }
            }
            if fds[RXQ].revents != 0 {
                let _ignored = self.notify[0].read();
                Rx::no_kicks(&self.transport);
                rx_wait = false;
            }
            if fds[CTRLQ].revents != 0 {
                let _ignored = self.notify[2].read();
                self.process_ctrl(&mut ctrl_buf);
            }
            if fds[TIMER].revents != 0 {
                let _ignored = timer.wait();
                tx_throttled = false;
            }
            if fds[TXQ].revents != 0 {
                let _ignored = self.notify[1].read();
            }
            if fds[TAP].revents & libc::POLLOUT != 0 {
                tx_blocked = false;
            }
            if fds[TAP].revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                tracing::error!(dev = %name, tap = %self.shared.tap.name(), "the TAP device is gone; the NIC stops moving frames");
                tap_broken = true;
            }
            let sent = tx.frames;
            if !tx_throttled && !tx_blocked && !tap_broken {
                let now = origin.elapsed();
                match tx.process(&self.transport, &self.shared, self.limiter.as_mut(), now) {
                    TxPass::Idle => {}
                    TxPass::More => {
                        // Come back at once: the TXQ eventfd may not fire again.
                        let _ignored = self.notify[1].write(1);
                    }
                    TxPass::Blocked => tx_blocked = true,
                    TxPass::Throttled(wait) => {
                        tx_throttled = true;
                        let wait = wait.max(Duration::from_micros(100));
                        if let Err(e) = timer.reset(wait, None) {
                            self.transport.log().host_error("arming the rate timer", &e);
                        }
                    }
                }
            }
            if !rx_wait && !tap_broken && hold.remaining(Instant::now()).is_none() {
                let before = rx.moved();
                match rx.process(&self.transport, &self.shared) {
                    // A full batch did not drain the TAP: no hold then.
                    RxPass::Drained if rx.moved() - before < super::rx::BATCH as u64 => {
                        hold.after_pass(rx.moved() - before, Instant::now());
                    }
                    RxPass::Drained => hold.clear(),
                    RxPass::NoBuffers => {
                        rx_dry += 1;
                        hold.clear();
                        // Kicks on again; if buffers came meanwhile, try again next round.
                        if Rx::want_kicks(&self.transport) {
                            let _ignored = self.notify[0].write(1);
                        }
                        rx_wait = true;
                    }
                    RxPass::Broken => tap_broken = true,
                }
            }
            if tx.frames != sent {
                last_sent = Instant::now();
            }
        }
        tracing::info!(dev = %name, rx_frames = rx.frames, rx_dropped = rx.dropped, rx_coalesced_frames = rx.coalesced_frames, rx_coalesced_datagrams = rx.coalesced_datagrams, tx_frames = tx.frames, tx_dropped = tx.dropped, sleeps, rx_dry, "NIC stopped");
        self.events.ack(ThreadAck::Stopped);
    }

    /// Serves the control queue (virtio 1.2 §5.1.6.5).
    fn process_ctrl(&self, buf: &mut Vec<u8>) {
        let t = &self.transport;
        loop {
            let mut guard = t.lock();
            if !guard.live() {
                return;
            }
            let generation = guard.generation;
            let Some(q) = guard.queues.get_mut(CTRL_QUEUE) else {
                return;
            };
            let Some(chain) = q.pop_descriptor_chain(t.ram().mmap()) else {
                return;
            };
            drop(guard);
            let head = chain.head_index();
            buf.clear();
            let mut ack = None;
            let mut bad = None;
            for d in chain {
                if d.is_write_only() {
                    if ack.is_none() && d.len() >= 1 {
                        ack = Some(d.addr());
                    }
                    continue;
                }
                let n = d.len() as usize;
                if ack.is_some() || buf.len() + n > ctrl::MAX_COMMAND_BYTES {
                    bad = Some("control command malformed or too long");
                    break;
                }
                let at = buf.len();
                buf.resize(at + n, 0);
                if t.ram().read_slice(&mut buf[at..], d.addr()).is_err() {
                    bad = Some("control command outside guest RAM");
                    break;
                }
            }
            let Some(ack_gpa) = ack.filter(|_| bad.is_none()) else {
                t.log()
                    .guest_error(&bad.unwrap_or("control command without an ack byte"));
                t.add_used(CTRL_QUEUE, head, generation, 0);
                continue;
            };
            let (mut status, effect) = {
                let mut filter = self.shared.filter();
                ctrl::apply(buf, &mut filter, self.shared.features())
            };
            match effect {
                Effect::None | Effect::Mac(_) => {}
                Effect::AnnounceAck => self.shared.set_announce(false),
                Effect::Offloads(v) => {
                    if let Err(e) = self.shared.set_rx_offloads(v) {
                        t.log().host_error("TUNSETOFFLOAD", &e);
                        status = ctrl::ERR;
                    }
                }
            }
            if t.ram().iovec(ack_gpa, 1, Direction::DeviceWrites).is_err()
                || t.ram().write_slice(&[status], ack_gpa).is_err()
            {
                t.log().guest_error(&"control ack outside guest RAM");
                t.add_used(CTRL_QUEUE, head, generation, 0);
                continue;
            }
            t.add_used(CTRL_QUEUE, head, generation, 1);
        }
    }

    /// Serves the waiting control events; `false` when the thread must end.
    fn control(&self) -> bool {
        self.events.serve_waiting(|| self.transport.save_state())
    }
}

/// Asks the driver to announce itself (after a migration): sets VIRTIO_NET_S_ANNOUNCE and raises
/// the configuration interrupt, if the driver negotiated GUEST_ANNOUNCE.
pub fn announce(t: &MmioTransport, net: &NetShared) {
    if net.features() & super::features::GUEST_ANNOUNCE == 0 {
        return;
    }
    net.set_announce(true);
    let mut st = t.lock();
    t.config_changed(&mut st);
}
