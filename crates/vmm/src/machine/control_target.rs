//! The machine side of the control protocol (see [`crate::control`]).

use std::cell::{Cell, RefCell};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use domus_vmm_api::{MachineState, OutcomeReply, StateReply, VcpuRunState, VcpuState};

use super::coredump::{self, CpuRegs};
use super::progress::Reporter;
use super::shared::Shared;
use super::vcpus::Vcpus;
use crate::control::{ControlTarget, Reply, Request};
use crate::devices::virtio::manager::DeviceManager;
use crate::devices::Devices;
use crate::outcome::{Outcome, Reason};
use crate::threads::ThreadEvent;
use crate::vstate::memory::GuestMem;

/// A vCPU counts as running when it used more than this share of the wall time since the previous
/// `state` (else it is blocked: halted, waiting for an interrupt).
const RUNNING_PERCENT: u128 = 50;

/// Control requests applied to the running machine.
pub struct Ctl<'a> {
    shared: &'a Arc<Shared>,
    devices: &'a Arc<Devices>,
    vcpus: &'a RefCell<Vcpus>,
    virtio: &'a RefCell<DeviceManager>,
    memory_mib: u64,
    mem: &'a GuestMem,
    acked: Cell<bool>,
    save: Option<super::save::SaveSources<'a>>,
    /// A live migration released the writable disks' locks ([`super::disk_locks`]): a resume
    /// takes them back first.
    locks_released: Cell<bool>,
    /// A live migration's stream is complete and dirty logging is still on
    /// ([`super::migrate::stop_tracking`]): turned off before the next request is handled.
    tracking: Cell<bool>,
    /// (when, CPU ns) per vCPU at the previous `state`.
    samples: RefCell<Vec<(Instant, u64)>>,
    /// How to create vCPUs for `set-vcpus`.
    factory: Option<&'a super::hotplug::VcpuFactory<'a>>,
    /// A file the client passed with the request being handled (SCM_RIGHTS): `dump-core` writes to
    /// it instead of creating its path (a sandboxed VMM cannot create files).
    passed: RefCell<Option<std::fs::File>>,
}

impl<'a> Ctl<'a> {
    /// The target for one machine.
    pub fn new(
        shared: &'a Arc<Shared>,
        devices: &'a Arc<Devices>,
        vcpus: &'a RefCell<Vcpus>,
        virtio: &'a RefCell<DeviceManager>,
        memory_mib: u64,
        mem: &'a GuestMem,
    ) -> Self {
        Self {
            shared,
            devices,
            vcpus,
            virtio,
            memory_mib,
            mem,
            acked: Cell::new(false),
            save: None,
            locks_released: Cell::new(false),
            tracking: Cell::new(false),
            samples: RefCell::new(Vec::new()),
            factory: None,
            passed: RefCell::new(None),
        }
    }

    /// Enables `save` (the VM and console the snapshot is taken from).
    #[must_use]
    pub fn with_save(mut self, src: super::save::SaveSources<'a>) -> Self {
        self.save = Some(src);
        self
    }

    /// `save`: pause, collect, write to `out`; resume afterwards only with `resume` and if the guest
    /// was running. A failure resumes a guest that was running (the domain stays as it was).
    fn save(
        &self,
        out: Option<std::fs::File>,
        resume: bool,
        progress: &Reporter<'_>,
    ) -> Result<Reply, String> {
        let out =
            out.ok_or("save: no descriptor came with the request (send one with SCM_RIGHTS)")?;
        let src = self
            .save
            .as_ref()
            .ok_or("save: not supported by this machine")?;
        if self.shared.should_stop() {
            return Err("the domain has stopped".into());
        }
        let was_paused = self.shared.is_paused();
        self.pause()?;
        let result =
            super::save::collect(src, self.vcpus, self.devices, self.memory_mib, was_paused)
                .and_then(|snap| super::save::write(out, &snap, self.mem, progress));
        if !was_paused && (resume || result.is_err()) {
            self.resume()?;
        }
        result.map(|_bytes| Reply::Done)
    }

    /// `migrate`: the live stream into `out`; the guest is left paused on success, running (if it
    /// was) on failure. A paused guest goes in one pass ([`super::migrate_paused`]) and stays paused.
    /// With `direct`, `out` is the go socket and the stream's descriptor comes on it
    /// ([`super::migrate_ready::receive_stream`]).
    fn migrate(
        &self,
        out: Option<std::fs::File>,
        downtime_ms: Option<u64>,
        direct: bool,
        progress: &Reporter<'_>,
    ) -> Result<Reply, String> {
        let out =
            out.ok_or("migrate: no descriptor came with the request (send one with SCM_RIGHTS)")?;
        let (out, go) = if direct {
            (super::migrate_ready::receive_stream(&out)?, Some(out))
        } else {
            (out, None)
        };
        let src = self
            .save
            .as_ref()
            .ok_or("migrate: not supported by this machine")?;
        if self.shared.should_stop() {
            return Err("the domain has stopped".into());
        }
        if self.shared.is_paused() {
            super::disk_locks::release(src.disks);
            self.locks_released.set(true);
            let result = super::migrate_paused::send(
                src,
                self.vcpus,
                self.devices,
                self.memory_mib,
                out,
                progress,
            );
            return result
                .map(Reply::Migrate)
                .map_err(|e| match self.take_locks_back() {
                    Ok(()) => e,
                    Err(l) => format!("{e}; the guest stays paused without its disks' locks: {l}"),
                });
        }
        // Once paused (in-flight disk requests drained), the writable disks' locks go to the target.
        let pause = || {
            self.pause_then(true)?;
            super::disk_locks::release(src.disks);
            self.locks_released.set(true);
            Ok(())
        };
        let result = super::migrate::send(
            src,
            self.vcpus,
            self.devices,
            self.memory_mib,
            (super::progress::Counting::new(out, progress), go.as_ref()),
            downtime_ms.unwrap_or(super::migrate::DEFAULT_DOWNTIME_MS),
            &pause,
        );
        match result {
            Ok(r) => {
                self.tracking.set(true);
                Ok(Reply::Migrate(r))
            }
            Err(e) => {
                self.resume()?;
                Err(e)
            }
        }
    }

    /// Takes back the writable disks' locks a migration released (refused while another VMM holds
    /// one).
    fn take_locks_back(&self) -> Result<(), String> {
        if self.locks_released.get() {
            if let Some(src) = &self.save {
                super::disk_locks::take(src.disks)?;
            }
            self.locks_released.set(false);
            tracing::info!("disk locks taken back");
        }
        Ok(())
    }

    /// With `set-vcpus` (ACPI CPU hotplug).
    #[must_use]
    pub fn with_hotplug(mut self, factory: &'a super::hotplug::VcpuFactory<'a>) -> Self {
        self.factory = Some(factory);
        self
    }

    /// Whether a client acknowledged the outcome.
    pub fn is_acked(&self) -> bool {
        self.acked.get()
    }

    fn state(&self) -> StateReply {
        let state = if self.shared.outcome().is_some() {
            MachineState::Shutdown
        } else if self.shared.is_paused() {
            MachineState::Paused
        } else {
            MachineState::Running
        };
        let now = Instant::now();
        let vcpus = self.vcpus.borrow();
        let mut samples = self.samples.borrow_mut();
        let started = self.shared.started;
        samples.resize(vcpus.len(), (started, 0));
        let list = self
            .shared
            .vcpus
            .iter()
            .enumerate()
            .map(|(id, s)| {
                let cpu_ns = vcpus.cpu_time_ns(id);
                let (then, then_ns) = samples.get(id).copied().unwrap_or((started, 0));
                let wall = now.saturating_duration_since(then).as_nanos().max(1);
                let busy = u128::from(cpu_ns.saturating_sub(then_ns));
                if let Some(slot) = samples.get_mut(id) {
                    *slot = (now, cpu_ns);
                }
                let state = if s.offline.load(Ordering::SeqCst) {
                    VcpuRunState::Offline
                } else if s.parked.load(Ordering::SeqCst) {
                    VcpuRunState::Paused
                } else if busy * 100 > wall * RUNNING_PERCENT {
                    VcpuRunState::Running
                } else {
                    VcpuRunState::Blocked
                };
                VcpuState {
                    id: u32::try_from(id).unwrap_or(u32::MAX),
                    cpu_time_ns: cpu_ns,
                    state,
                }
            })
            .collect();
        let virtio = self.virtio.borrow();
        let balloon = virtio.balloon().map(|b| domus_vmm_api::BalloonState {
            ram_mib: b.ram_mib(),
            target_mib: b.target_mib(),
            actual_mib: b.actual_mib(),
        });
        StateReply {
            state,
            outcome: self.shared.outcome(),
            pid: std::process::id(),
            vcpus: list,
            memory_mib: balloon.map_or(self.memory_mib, |b| b.actual_mib),
            balloon,
            uptime_ms: u64::try_from(self.shared.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            disks: virtio.disk_stats(),
            nics: virtio.nic_stats(),
        }
    }

    /// `dump-core`: stops the vCPUs (unless paused already), writes the core, lets them run again.
    fn dump_core(&self, path: &str) -> Result<Reply, String> {
        let path = std::path::Path::new(path);
        if !path.is_absolute() {
            return Err(format!(
                "dump-core: {} is not an absolute path",
                path.display()
            ));
        }
        let was_paused = self.shared.is_paused();
        if !was_paused {
            self.pause()?;
        }
        let cpus: Result<Vec<CpuRegs>, String> = self
            .shared
            .vcpus
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.offline.load(Ordering::SeqCst))
            .map(|(i, s)| {
                s.parked_regs
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .ok_or_else(|| {
                        format!("dump-core: the registers of vCPU {i} could not be read")
                    })
            })
            .collect();
        let passed = self.passed.borrow_mut().take();
        let written = cpus.and_then(|cpus| {
            match passed {
                Some(file) => {
                    coredump::write_to(file, &path.display().to_string(), &cpus, self.mem)
                }
                None => coredump::write(path, &cpus, self.mem),
            }
            .map_err(|e| anyhow_chain(&e))
        });
        if !was_paused {
            self.resume()?;
        }
        written.map(|()| Reply::Done)
    }

    /// Marks an NMI for vCPU `vcpu` and kicks its thread out of KVM_RUN until it took it (the thread
    /// injects it with KVM_NMI before re-entering the guest).
    fn nmi(&self, vcpu: u32) -> Result<Reply, String> {
        if self.shared.outcome().is_some() {
            return Err("the domain has stopped".into());
        }
        let i = usize::try_from(vcpu).map_err(|_| format!("no vCPU {vcpu}"))?;
        let Some(s) = self.shared.vcpus.get(i) else {
            return Err(format!("no vCPU {vcpu}"));
        };
        s.nmi_pending.store(true, Ordering::SeqCst);
        if self.shared.is_paused() {
            // Taken when the domain is unpaused.
            return Ok(Reply::Done);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while s.nmi_pending.load(Ordering::SeqCst) {
            if Instant::now() >= deadline {
                return Err(format!("vCPU {vcpu} did not take the NMI within 2 s"));
            }
            self.vcpus.borrow().kick(i);
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(Reply::Done)
    }

    /// Pauses the vCPUs, then the device threads; returns once every one acknowledged.
    fn pause(&self) -> Result<Reply, String> {
        self.pause_then(false)
    }

    /// [`Ctl::pause`]; with `save_state`, each vCPU's `SaveState` is queued right behind its
    /// `Pause`, and the caller collects the answers ([`Vcpus::wait_all`]): a live migration's
    /// stop-and-copy ([`super::migrate::send`]), where the vCPUs report their state while the
    /// devices pause and the last dirty pages go out. On an error no answer is left pending.
    fn pause_then(&self, save_state: bool) -> Result<Reply, String> {
        if self.shared.should_stop() {
            return Err("the domain has stopped".into());
        }
        if self.shared.is_paused() {
            // After migrating a paused domain whose target then failed: the locks come back, the
            // guest stays paused.
            self.take_locks_back()
                .map_err(|e| format!("the guest stays paused without its disks' locks: {e}"))?;
            if save_state {
                self.vcpus.borrow().send_all(&[ThreadEvent::SaveState]);
            }
            return Ok(Reply::Done);
        }
        let events: &[ThreadEvent] = if save_state {
            &[ThreadEvent::Pause, ThreadEvent::SaveState]
        } else {
            &[ThreadEvent::Pause]
        };
        let drop_states = || {
            if save_state {
                let _ignored = self.vcpus.borrow_mut().wait_all(ThreadEvent::SaveState);
            }
        };
        self.vcpus.borrow().send_all(events);
        let paused = self.vcpus.borrow_mut().wait_all(ThreadEvent::Pause);
        if let Err(e) = paused {
            drop_states();
            return Err(format!("vCPUs did not pause: {e}"));
        }
        if let Err(e) = self.virtio.borrow_mut().broadcast(ThreadEvent::Pause) {
            drop_states();
            return Err(format!("devices did not pause: {e}"));
        }
        self.shared.set_paused(true);
        Ok(Reply::Done)
    }

    /// `destroy-unlocked`: pauses the guest if it runs (device threads drain their in-flight requests
    /// first), releases every disk lock, then stops like `destroy`. The reply tells the supervisor
    /// the disks are free while this process still has to exit.
    fn destroy_unlocked(&self) -> Result<Reply, String> {
        let src = self
            .save
            .as_ref()
            .ok_or("destroy-unlocked: this machine does not know its disks")?;
        if self.shared.should_stop() {
            return Err("the domain has stopped".into());
        }
        if !self.shared.is_paused() {
            self.pause()?;
        }
        super::disk_locks::release_all(src.disks)?;
        self.shared.finish(Outcome::new(
            Reason::Poweroff,
            "destroyed on the control socket",
        ));
        self.acked.set(true);
        Ok(Reply::Done)
    }

    /// Resumes the device threads, then the vCPUs (after taking back the disk locks a live
    /// migration released: refused, the guest staying paused, when another VMM holds one).
    fn resume(&self) -> Result<Reply, String> {
        if !self.shared.is_paused() {
            return Ok(Reply::Done);
        }
        self.take_locks_back()
            .map_err(|e| format!("the guest stays paused: {e}"))?;
        self.virtio
            .borrow_mut()
            .broadcast(ThreadEvent::Resume)
            .map_err(|e| format!("devices did not resume: {e}"))?;
        self.vcpus
            .borrow_mut()
            .broadcast(ThreadEvent::Resume)
            .map_err(|e| format!("vCPUs did not resume: {e}"))?;
        self.shared.set_paused(false);
        Ok(Reply::Done)
    }
}

impl ControlTarget for Ctl<'_> {
    fn handle_with_file(
        &self,
        req: &Request,
        file: Option<std::fs::File>,
    ) -> Result<Reply, String> {
        self.handle_with_progress(req, file, &mut |_| {})
    }

    fn handle_with_progress(
        &self,
        req: &Request,
        file: Option<std::fs::File>,
        progress: &mut dyn FnMut(&domus_vmm_api::Progress),
    ) -> Result<Reply, String> {
        // Whatever comes after a live migration (`resume` when the target failed, `destroy` when
        // it runs), dirty logging goes off first.
        if self.tracking.replace(false) {
            if let Some(src) = &self.save {
                super::migrate::stop_tracking(src);
            }
        }
        let reporter = Reporter::new(Some(progress), req.progress_ms());
        match req {
            Request::Save { resume, .. } => self.save(file, *resume, &reporter),
            Request::Migrate {
                downtime_ms,
                direct,
                ..
            } => self.migrate(file, *downtime_ms, *direct, &reporter),
            other => {
                *self.passed.borrow_mut() = file;
                let reply = self.handle(other);
                self.passed.borrow_mut().take();
                reply
            }
        }
    }

    fn handle(&self, req: &Request) -> Result<Reply, String> {
        match req {
            Request::Save { .. } | Request::Migrate { .. } => Err(format!(
                "{}: no descriptor came with the request",
                req.name()
            )),
            Request::State => Ok(Reply::State(self.state())),
            Request::Pause => self.pause(),
            Request::Resume => self.resume(),
            Request::PowerButton => {
                if self.shared.is_paused() {
                    return Err("the domain is paused: resume it first".into());
                }
                self.devices.power_button();
                Ok(Reply::Done)
            }
            Request::Reset => {
                self.shared.finish(Outcome::new(
                    Reason::Reboot,
                    "reset requested on the control socket",
                ));
                Ok(Reply::Done)
            }
            Request::Destroy => {
                self.shared.finish(Outcome::new(
                    Reason::Poweroff,
                    "destroyed on the control socket",
                ));
                self.acked.set(true);
                Ok(Reply::Done)
            }
            Request::DestroyUnlocked => self.destroy_unlocked(),
            Request::Outcome => Ok(Reply::Outcome(OutcomeReply {
                outcome: self.shared.outcome(),
            })),
            Request::AckOutcome => {
                if self.shared.outcome().is_none() {
                    return Err("the domain is still running: no outcome to acknowledge".into());
                }
                self.acked.set(true);
                Ok(Reply::Done)
            }
            Request::DumpCore { path } => {
                if self.shared.outcome().is_some() {
                    return Err("the domain has stopped".into());
                }
                self.dump_core(path)
            }
            Request::Nmi { vcpu } => self.nmi(*vcpu),
            Request::Sysrq { key } => {
                let byte = u8::try_from(*key)
                    .ok()
                    .filter(|b| b.is_ascii_graphic())
                    .ok_or_else(|| {
                        format!("sysrq key {key:?} is not a printable ASCII character")
                    })?;
                if self.shared.outcome().is_some() {
                    return Err("the domain has stopped".into());
                }
                self.devices.serial_break(byte)?;
                Ok(Reply::Done)
            }
            Request::SetVcpus { online } => {
                if self.shared.should_stop() {
                    return Err("the domain has stopped".into());
                }
                if self.shared.is_paused() {
                    return Err("the domain is paused: unpause it before changing its vCPUs".into());
                }
                let f = self.factory.ok_or("this machine has no CPU hotplug")?;
                super::hotplug::set_online(f, self.devices, self.shared, self.vcpus, *online)?;
                Ok(Reply::Done)
            }
            Request::BalloonSet { target_mib } => {
                if self.shared.outcome().is_some() {
                    return Err("the domain has stopped".into());
                }
                let virtio = self.virtio.borrow();
                let b = virtio
                    .balloon()
                    .ok_or("this machine has no balloon device")?;
                b.set_target_mib(*target_mib).map_err(|e| e.to_string())?;
                tracing::info!(target_mib, "balloon target set");
                Ok(Reply::Done)
            }
            Request::VcpuPin { vcpu, cpus } => {
                let s = usize::try_from(*vcpu)
                    .ok()
                    .and_then(|i| self.shared.vcpus.get(i))
                    .ok_or_else(|| format!("no vCPU {vcpu}"))?;
                // The control socket exists a moment before the vCPU threads record their ids:
                // a pin that comes that early waits for its thread (an offline vCPU has none).
                let deadline = Instant::now() + Duration::from_secs(2);
                while s.tid.load(Ordering::SeqCst) == 0
                    && !s.offline.load(Ordering::SeqCst)
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let tid = s.tid.load(Ordering::SeqCst);
                let cpus: Vec<usize> = cpus.iter().map(|&c| c as usize).collect();
                if tid == 0 && s.offline.load(Ordering::SeqCst) {
                    // Never plugged in: its thread takes the pin when it starts.
                    *s.pending_pin
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(cpus);
                    return Ok(Reply::Done);
                }
                crate::sys::set_affinity(tid, &cpus)
                    .map_err(|e| format!("cannot pin vCPU {vcpu}: {e}"))?;
                Ok(Reply::Done)
            }
        }
    }
}

/// An error and its causes, `: `-separated.
fn anyhow_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
