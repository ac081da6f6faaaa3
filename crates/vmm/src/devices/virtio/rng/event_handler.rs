//! The virtio-rng device thread: fills the driver's device-writable buffers with bytes from the host's
//! entropy source (getrandom(2), the kernel CSPRNG: no file descriptor, never blocks after boot), at
//! most the configured rate ([`TokenBucket`]). A buffer may get fewer bytes than its size (the used
//! length says how many, virtio 1.2 §5.4.6); with the bucket empty the thread stops taking requests
//! and sleeps on a timer until enough tokens are back.
//!
//! Control events as for the block device ([`crate::threads`]); requests are served synchronously,
//! so nothing is in flight when `Pause` is acknowledged.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use virtio_queue::QueueOwnedT;
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::timerfd::TimerFd;

use super::rate::TokenBucket;
use crate::devices::virtio::mmio::MmioTransport;
use crate::threads::{ThreadAck, ThreadMailbox};

/// Most bytes given to one request (bounds the work per chain).
pub const MAX_REQUEST_BYTES: u64 = 64 << 10;
/// When throttled, wait until at least this many bytes are available (fewer, larger fills).
const THROTTLE_CHUNK: u64 = 256;

/// What the queue pass ended on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Nothing left to do.
    Idle,
    /// Requests are waiting but the bucket is empty: try again after this long.
    Throttled(Duration),
}

/// Fills the chains available on `t`'s queue from `entropy`, within `bucket`.
pub fn process(
    t: &MmioTransport,
    bucket: &mut TokenBucket,
    entropy: &mut dyn FnMut(&mut [u8]) -> std::io::Result<()>,
) -> Pass {
    let mut buf = [0u8; 4096];
    loop {
        let now = Instant::now();
        let (generation, head, ranges) = {
            let mut st = t.lock();
            if !st.live() {
                t.log()
                    .guest_error(&"queue notified before DRIVER_OK (or after NEEDS_RESET)");
                return Pass::Idle;
            }
            let st = &mut *st;
            let Some(queue) = st.queues.get_mut(0) else {
                return Pass::Idle;
            };
            let mut iter = match queue.iter(t.ram().mmap()) {
                Ok(it) => it,
                Err(e) => {
                    t.needs_reset(st, &format_args!("available ring unusable: {e}"));
                    return Pass::Idle;
                }
            };
            let Some(chain) = iter.next() else {
                return Pass::Idle;
            };
            let granted = bucket.take(MAX_REQUEST_BYTES, now);
            if granted == 0 {
                iter.go_to_previous_position();
                return Pass::Throttled(bucket.wait_for(THROTTLE_CHUNK, now));
            }
            let head = chain.head_index();
            // Device-writable descriptors, trimmed to what the bucket granted.
            let mut left = granted;
            let mut ranges = Vec::new();
            for d in chain {
                if !d.is_write_only() {
                    t.log()
                        .guest_error(&"device-readable descriptor in an entropy request");
                    continue;
                }
                let n = u64::from(d.len()).min(left);
                if n > 0 {
                    ranges.push((d.addr(), n));
                    left -= n;
                }
            }
            // Give back what this request could not use.
            bucket.refund(left);
            (st.generation, head, ranges)
        };
        let mut used: u64 = 0;
        for (gpa, len) in ranges {
            let mut done = 0u64;
            while done < len {
                let k = usize::try_from((len - done).min(buf.len() as u64)).unwrap_or(0);
                let Some(chunk) = buf.get_mut(..k) else { break };
                if let Err(e) = entropy(chunk) {
                    t.log().host_error("getrandom", &e);
                    break;
                }
                let at = vm_memory::GuestAddress(gpa.0.wrapping_add(done));
                if t.ram().write_slice(chunk, at).is_err() {
                    t.log().guest_error(&format_args!(
                        "entropy buffer at {:#x} (+{len}) is outside guest RAM",
                        gpa.0
                    ));
                    break;
                }
                done += k as u64;
            }
            used += done;
            if done < len {
                break;
            }
        }
        t.add_used(0, head, generation, u32::try_from(used).unwrap_or(0));
    }
}

/// What the device thread needs (moved into it).
pub struct Worker {
    /// Transport (queue, status, interrupt).
    pub transport: Arc<MmioTransport>,
    /// Bytes per second (0 = unlimited).
    pub rate_bytes_per_sec: u64,
    /// Queue notifications.
    pub notify: EventFd,
    /// Control events.
    pub events: ThreadMailbox,
}

impl Worker {
    /// Runs until a `Stop` event (or the owner going away); acknowledges `Stop` last.
    pub fn run(self) {
        let mut timer = match TimerFd::new() {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(dev = %self.transport.name(), error = %e, "cannot create a timerfd; entropy device stops");
                self.events.ack(ThreadAck::Stopped);
                return;
            }
        };
        let mut bucket = TokenBucket::new(self.rate_bytes_per_sec, Instant::now());
        let mut entropy = crate::sys::fill_random;
        let mut fds =
            [self.notify.as_raw_fd(), self.events.fd(), timer.as_raw_fd()].map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
        let mut throttled = false;
        loop {
            if crate::sys::poll(&mut fds).is_err() {
                tracing::error!(dev = %self.transport.name(), "poll failed; device stops");
                break;
            }
            if fds[1].revents != 0 && !self.control() {
                break;
            }
            let mut work = false;
            if fds[2].revents != 0 {
                let _ignored = timer.wait();
                throttled = false;
                work = true;
            }
            if fds[0].revents != 0 {
                let _ignored = self.notify.read();
                work = !throttled;
            }
            if work {
                if let Pass::Throttled(wait) = process(&self.transport, &mut bucket, &mut entropy) {
                    throttled = true;
                    let wait = wait.max(Duration::from_millis(1));
                    if let Err(e) = timer.reset(wait, None) {
                        self.transport
                            .log()
                            .host_error("arming the throttle timer", &e);
                    }
                }
            }
        }
        self.events.ack(ThreadAck::Stopped);
    }

    /// Serves the waiting control events; `false` when the thread must end.
    fn control(&self) -> bool {
        self.events.serve_waiting(|| self.transport.save_state())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::rng::device::RngDevice;
    use crate::devices::virtio::test_utils::{activate_with, test_ram};
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestAddress;

    const NEXT: u16 = 1;
    const WRITE: u16 = 2;

    fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
    }

    fn counter() -> impl FnMut(&mut [u8]) -> std::io::Result<()> {
        let mut n = 0u8;
        move |b: &mut [u8]| {
            for x in b {
                n = n.wrapping_add(1);
                *x = n;
            }
            Ok(())
        }
    }

    #[test]
    fn fills_writable_buffers_and_honours_the_rate() {
        let ram = test_ram(1 << 20);
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let t = MmioTransport::new(
            "rng".into(),
            Box::new(RngDevice::default()),
            ram.clone(),
            irq,
        )
        .unwrap();
        let mem = ram.mmap();
        let mock = MockSplitQueue::create(mem, GuestAddress(0x1_0000), 16);
        activate_with(&t, 0, &[(0, &mock)]);
        // One chain of two writable buffers (16 + 32 bytes), then a second chain of 100 bytes.
        mock.add_desc_chains(
            &[
                desc(0x2_0000, 16, NEXT | WRITE, 1),
                desc(0x2_1000, 32, WRITE, 0),
                desc(0x2_2000, 100, WRITE, 0),
            ],
            0,
        )
        .unwrap();
        let mut bucket = TokenBucket::new(60, Instant::now());
        let mut src = counter();
        // 48 bytes for the first chain, the 12 left of the burst for the second, then throttled.
        let pass = process(&t, &mut bucket, &mut src);
        assert!(matches!(pass, Pass::Idle), "{pass:?}");
        let used = mock.used();
        assert_eq!(used.idx().load(), 2);
        let e0 = used.ring().ref_at(0).unwrap().load();
        let e1 = used.ring().ref_at(1).unwrap().load();
        assert_eq!((e0.id(), e0.len()), (0, 48));
        assert_eq!((e1.id(), e1.len()), (2, 12));
        let mut a = [0u8; 16];
        ram.read_slice(&mut a, GuestAddress(0x2_0000)).unwrap();
        assert_eq!(a[0], 1);
        let mut b = [0u8; 4];
        ram.read_slice(&mut b, GuestAddress(0x2_1000)).unwrap();
        assert_eq!(b[0], 17, "the second buffer continues the stream");
        // A third request while the bucket is empty stays on the ring.
        mock.add_desc_chains(&[desc(0x2_3000, 8, WRITE, 0)], 3)
            .unwrap();
        let pass = process(&t, &mut bucket, &mut src);
        assert!(
            matches!(pass, Pass::Throttled(d) if d > Duration::ZERO),
            "{pass:?}"
        );
        assert_eq!(mock.used().idx().load(), 2);
        // Unlimited: served.
        let mut free = TokenBucket::new(0, Instant::now());
        assert_eq!(process(&t, &mut free, &mut src), Pass::Idle);
        assert_eq!(mock.used().idx().load(), 3);
        assert_eq!(t.log().guest_errors(), 0);
    }

    #[test]
    fn readable_descriptors_are_skipped_and_counted() {
        let ram = test_ram(1 << 20);
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let t = MmioTransport::new(
            "rng".into(),
            Box::new(RngDevice::default()),
            ram.clone(),
            irq,
        )
        .unwrap();
        let mock = MockSplitQueue::create(ram.mmap(), GuestAddress(0x1_0000), 16);
        activate_with(&t, 0, &[(0, &mock)]);
        mock.add_desc_chains(
            &[desc(0x2_0000, 16, NEXT, 1), desc(0x2_1000, 8, WRITE, 0)],
            0,
        )
        .unwrap();
        let mut free = TokenBucket::new(0, Instant::now());
        process(&t, &mut free, &mut counter());
        let e = mock.used().ring().ref_at(0).unwrap().load();
        assert_eq!(e.len(), 8);
        assert_eq!(t.log().guest_errors(), 1);
    }
}
