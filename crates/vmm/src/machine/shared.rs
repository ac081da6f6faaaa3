//! State shared between the vCPU threads and the main loop: the outcome (first one wins), the stop
//! flag, the wake-up eventfd, whether the domain is paused, and per-vCPU status for `state`.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use vmm_sys_util::eventfd::EventFd;

use crate::outcome::Outcome;

/// One vCPU thread's status.
#[derive(Debug, Default)]
pub struct VcpuStatus {
    /// Kernel thread id (0 until the thread started).
    pub tid: AtomicI32,
    /// The thread is parked because of a pause.
    pub parked: AtomicBool,
    /// The thread has left its loop.
    pub exited: AtomicBool,
    /// An NMI is to be injected before the thread's next KVM_RUN.
    pub nmi_pending: AtomicBool,
    /// The vCPU is not online (never plugged in, or ejected by the guest): its thread, if it has
    /// one, stays out of KVM_RUN until it is plugged in again.
    pub offline: AtomicBool,
    /// A `vcpu-pin` for a vCPU whose thread does not exist yet (never plugged in): applied when the
    /// thread starts, after the `cpus` pinning.
    pub pending_pin: Mutex<Option<Vec<usize>>>,
    /// Its registers, saved each time it parks for a pause (for `dump-core`).
    pub parked_regs: Mutex<Option<super::coredump::CpuRegs>>,
}

/// Shared machine state.
pub struct Shared {
    outcome: Mutex<Option<Outcome>>,
    stop: AtomicBool,
    paused: AtomicBool,
    /// Per vCPU.
    pub vcpus: Vec<VcpuStatus>,
    /// Written when the machine stops (wakes the main loop).
    pub wake: EventFd,
    /// When the machine was built.
    pub started: Instant,
    /// The host's KVM is PVM (found once at setup; only used to explain crashes).
    pub host_is_pvm: bool,
    /// The MSRs a vCPU's saved state includes (KVM_GET_MSR_INDEX_LIST).
    pub msr_list: Vec<u32>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// State for `vcpus` possible vCPUs (`maxvcpus`; those not online at boot are marked
    /// [`VcpuStatus::offline`] by the caller).
    ///
    /// # Errors
    /// eventfd creation failed.
    pub fn new(vcpus: u32, host_is_pvm: bool) -> std::io::Result<Self> {
        Ok(Self {
            outcome: Mutex::new(None),
            stop: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            vcpus: (0..vcpus).map(|_| VcpuStatus::default()).collect(),
            wake: EventFd::new(libc::EFD_NONBLOCK)?,
            started: Instant::now(),
            host_is_pvm,
            msr_list: Vec::new(),
        })
    }

    /// Records the outcome (the first one wins) and asks everything to stop.
    pub fn finish(&self, outcome: Outcome) {
        {
            let mut o = lock(&self.outcome);
            if o.is_none() {
                tracing::info!(reason = ?outcome.reason, detail = %outcome.detail, "domain stopped");
                *o = Some(outcome);
            }
        }
        self.stop.store(true, Ordering::SeqCst);
        let _ignored = self.wake.write(1);
    }

    /// The outcome so far.
    pub fn outcome(&self) -> Option<Outcome> {
        lock(&self.outcome).clone()
    }

    /// Whether vCPUs must stop.
    pub fn should_stop(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Records whether the domain is paused (every vCPU and device thread acknowledged).
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::SeqCst);
    }

    /// Whether the domain is paused.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }
}
