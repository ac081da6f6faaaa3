//! The vCPU threads as a set: started through [`crate::threads::spawn`], controlled with events that
//! each thread acknowledges. A kick (the vCPU signal) makes a thread in KVM_RUN look at its events.

use std::os::unix::thread::JoinHandleExt;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_ioctls::VcpuFd;
use vmm_sys_util::signal::Killable;

use super::shared::Shared;
use super::vcpu_thread;
use crate::devices::Devices;
use crate::threads::{self, AckError, ThreadAck, ThreadControl, ThreadEvent, ThreadKind};
use crate::vstate::vcpu::kick_signal;

/// How long vCPUs may take to acknowledge (they leave KVM_RUN within a kick).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(2);

struct VcpuThread {
    control: ThreadControl,
    handle: Option<JoinHandle<()>>,
}

/// Every vCPU thread of the machine.
#[derive(Default)]
pub struct Vcpus {
    threads: Vec<VcpuThread>,
}

impl Vcpus {
    /// Starts one thread per fd, each first restricted to its entry of `affinity` (when there is a
    /// non-empty one); with `paused`, every vCPU is paused before its first instruction (and this
    /// returns once each acknowledged).
    ///
    /// # Errors
    /// A thread could not be started, or did not acknowledge the initial pause.
    pub fn start(
        fds: Vec<VcpuFd>,
        devices: &Arc<Devices>,
        shared: &Arc<Shared>,
        paused: bool,
        affinity: &[Vec<u32>],
    ) -> std::io::Result<Self> {
        let mut set = Self::default();
        for (id, fd) in fds.into_iter().enumerate() {
            set.spawn_one(id, fd, devices, shared, paused, affinity)?;
        }
        if paused {
            set.wait_paused()?;
        }
        Ok(set)
    }

    /// Starts vCPU threads `0..count` that wait for their vCPU before running it (a restore:
    /// they exist before the image is read, so their start is no part of a live migration's
    /// downtime). [`HeldVcpus::release`] hands them their fds; dropping the set unreleased ends
    /// them without running anything.
    ///
    /// # Errors
    /// A thread could not be started (those already started end).
    pub fn start_held(
        count: usize,
        devices: &Arc<Devices>,
        shared: &Arc<Shared>,
        affinity: &[Vec<u32>],
    ) -> std::io::Result<HeldVcpus> {
        let mut held = HeldVcpus::default();
        for id in 0..count {
            let name = format!("vcpu{id}");
            let (control, mailbox) = threads::control_channel(&name)?;
            let body = thread_body(id, devices, shared, affinity, mailbox);
            let body = move |fd: VcpuFd| {
                // The guest runs from here on (unless started paused): the end of a live
                // migration's guest-visible downtime, which the main thread's "restored guest
                // running" line, written once it handed the vCPUs over, comes before.
                if id == 0 {
                    tracing::info!("restored vCPU thread running");
                }
                body(fd);
            };
            let thread = threads::spawn_held(ThreadKind::Vcpu, name, body)?;
            held.threads.push((control, thread));
        }
        Ok(held)
    }

    fn spawn_one(
        &mut self,
        id: usize,
        fd: VcpuFd,
        devices: &Arc<Devices>,
        shared: &Arc<Shared>,
        paused: bool,
        affinity: &[Vec<u32>],
    ) -> std::io::Result<()> {
        let name = format!("vcpu{id}");
        let (control, mailbox) = threads::control_channel(&name)?;
        if paused {
            control.send(ThreadEvent::Pause);
        }
        let body = thread_body(id, devices, shared, affinity, mailbox);
        let handle = threads::spawn(ThreadKind::Vcpu, name, move || body(fd))?;
        self.threads.push(VcpuThread {
            control,
            handle: Some(handle),
        });
        Ok(())
    }

    /// Waits until every vCPU acknowledged the initial pause.
    fn wait_paused(&mut self) -> std::io::Result<()> {
        let deadline = Instant::now() + ACK_TIMEOUT;
        for t in &mut self.threads {
            t.control
                .wait_ack(ThreadEvent::Pause, deadline)
                .map_err(std::io::Error::other)?;
        }
        Ok(())
    }

    /// Starts the thread of hot-plugged vCPU `id`, which must be the next index ([`Vcpus::len`]),
    /// pinned like the boot vCPUs (`affinity`).
    ///
    /// # Errors
    /// `id` is not the next index, or the thread could not be started.
    pub fn add(
        &mut self,
        id: usize,
        fd: VcpuFd,
        devices: &Arc<Devices>,
        shared: &Arc<Shared>,
        affinity: &[Vec<u32>],
    ) -> std::io::Result<()> {
        if id != self.threads.len() {
            return Err(std::io::Error::other(format!(
                "vCPU {id} cannot start before vCPU {}",
                self.threads.len()
            )));
        }
        self.spawn_one(id, fd, devices, shared, false, affinity)
    }

    /// Lets the parked thread of vCPU `id` run the guest again (the caller cleared its `offline`
    /// flag): a `Resume` it acknowledges.
    ///
    /// # Errors
    /// No such thread, or it did not acknowledge in time.
    pub fn unpark(&mut self, id: usize) -> Result<(), AckError> {
        let t = self.threads.get_mut(id).ok_or_else(|| AckError::Gone {
            name: format!("vcpu{id}"),
        })?;
        t.control.send(ThreadEvent::Resume);
        if let Some(h) = &t.handle {
            let _ignored = h.kill(kick_signal());
        }
        t.control
            .wait_ack(ThreadEvent::Resume, Instant::now() + ACK_TIMEOUT)
            .map(|_| ())
    }

    /// Number of vCPU threads.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// CPU time of vCPU `id` so far, in ns.
    pub fn cpu_time_ns(&self, id: usize) -> u64 {
        self.threads
            .get(id)
            .and_then(|t| t.handle.as_ref())
            .map_or(0, |h| crate::sys::thread_cpu_ns(h.as_pthread_t()))
    }

    /// Kicks vCPU `id` out of KVM_RUN (it looks at its events and pending NMIs before re-entering).
    pub fn kick(&self, id: usize) {
        if let Some(h) = self.threads.get(id).and_then(|t| t.handle.as_ref()) {
            let _ignored = h.kill(kick_signal());
        }
    }

    /// Sends `event` to every running vCPU, kicks it out of KVM_RUN, and waits for every
    /// acknowledgement.
    ///
    /// # Errors
    /// The first vCPU that did not acknowledge in time (or had already stopped).
    pub fn broadcast(&mut self, event: ThreadEvent) -> Result<Vec<ThreadAck>, AckError> {
        self.send_all(&[event]);
        self.wait_all(event)
    }

    /// Queues `events`, in order, to every running vCPU and kicks it out of KVM_RUN once; the
    /// acknowledgements come, in the same order, through [`Vcpus::wait_all`]. (A live migration
    /// queues `Pause` and `SaveState` together: each vCPU reports its state as soon as it
    /// stopped, while the main thread pauses the devices and sends the last dirty pages.)
    pub fn send_all(&self, events: &[ThreadEvent]) {
        for t in &self.threads {
            if t.control.is_stopped() {
                continue;
            }
            for e in events {
                t.control.send(*e);
            }
            if let Some(h) = &t.handle {
                let _ignored = h.kill(kick_signal());
            }
        }
    }

    /// Waits for every vCPU's next acknowledgement, which must be `event`'s.
    ///
    /// # Errors
    /// The first vCPU that did not acknowledge in time (or had already stopped).
    pub fn wait_all(&mut self, event: ThreadEvent) -> Result<Vec<ThreadAck>, AckError> {
        let deadline = Instant::now() + ACK_TIMEOUT;
        let mut acks = Vec::with_capacity(self.threads.len());
        let mut first_err = None;
        for t in &mut self.threads {
            if t.control.is_stopped() && event == ThreadEvent::Stop {
                continue;
            }
            match t.control.wait_ack(event, deadline) {
                Ok(a) => acks.push(a),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(acks), Err)
    }

    /// Stops every vCPU thread (bounded wait) and joins those that stopped.
    pub fn stop(&mut self) {
        if let Err(e) = self.broadcast(ThreadEvent::Stop) {
            tracing::warn!(error = %e, "a vCPU thread did not stop in time; exiting without it");
        }
        for t in &mut self.threads {
            if t.control.is_stopped() {
                if let Some(h) = t.handle.take() {
                    let _ignored = h.join();
                }
            }
        }
    }
}

/// What vCPU thread `id` runs once it has its fd: pinned (`affinity`, then a pending `vcpu-pin`)
/// before its first guest instruction, then [`vcpu_thread::run`].
fn thread_body(
    id: usize,
    devices: &Arc<Devices>,
    shared: &Arc<Shared>,
    affinity: &[Vec<u32>],
    mailbox: threads::ThreadMailbox,
) -> impl FnOnce(VcpuFd) + Send + 'static {
    let (d, s) = (Arc::clone(devices), Arc::clone(shared));
    let cpus: Vec<usize> = affinity
        .get(id)
        .into_iter()
        .flatten()
        .filter_map(|c| usize::try_from(*c).ok())
        .collect();
    move |fd| {
        // Pinned before its first guest instruction (`cpus`), not after domusd's first poll.
        if !cpus.is_empty() {
            if let Err(e) = crate::sys::set_affinity(crate::sys::current_tid(), &cpus) {
                tracing::warn!(vcpu = id, error = %e, "cannot pin the vCPU thread (cpus)");
            }
        }
        let pending = s.vcpus.get(id).and_then(|st| {
            st.pending_pin
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
        });
        if let Some(pin) = pending {
            if let Err(e) = crate::sys::set_affinity(crate::sys::current_tid(), &pin) {
                tracing::warn!(vcpu = id, error = %e, "cannot pin the vCPU thread (vcpu-pin)");
            }
        }
        vcpu_thread::run(id, fd, d, s, mailbox);
    }
}

/// vCPU threads started by [`Vcpus::start_held`], waiting for their fds.
#[derive(Default)]
pub struct HeldVcpus {
    threads: Vec<(ThreadControl, threads::Held<VcpuFd>)>,
}

impl HeldVcpus {
    /// Number of held threads.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// Makes every held thread wait for its fd busily for up to `limit` ([`threads::Held::spin`]):
    /// the release is near (a live migration's source paused the guest).
    pub fn spin(&self, limit: std::time::Duration) {
        for (_, held) in &self.threads {
            held.spin_away(limit);
        }
    }

    /// Hands each held thread its fd, in order, and starts a thread for each fd beyond them (vCPUs
    /// a restore creates after reading the image); with `paused`, every vCPU is paused before its
    /// first instruction (and this returns once each acknowledged), as [`Vcpus::start`].
    ///
    /// # Errors
    /// Fewer fds than held threads, or a thread could not be started or did not acknowledge the
    /// initial pause.
    pub fn release(
        self,
        fds: Vec<VcpuFd>,
        devices: &Arc<Devices>,
        shared: &Arc<Shared>,
        paused: bool,
        affinity: &[Vec<u32>],
    ) -> std::io::Result<Vcpus> {
        if fds.len() < self.threads.len() {
            return Err(std::io::Error::other(format!(
                "{} vCPUs for {} held vCPU threads",
                fds.len(),
                self.threads.len()
            )));
        }
        let mut set = Vcpus::default();
        let mut fds = fds.into_iter();
        for (control, held) in self.threads {
            if paused {
                control.send(ThreadEvent::Pause);
            }
            let Some(fd) = fds.next() else { break };
            let handle = held.release(fd)?;
            set.threads.push(VcpuThread {
                control,
                handle: Some(handle),
            });
        }
        for fd in fds {
            let id = set.threads.len();
            set.spawn_one(id, fd, devices, shared, paused, affinity)?;
        }
        if paused {
            set.wait_paused()?;
        }
        Ok(set)
    }
}
