//! Test scaffolding for the device model (unit tests, and fuzz targets through the `test-utils`
//! feature): a test guest RAM, a configurable [`TestDevice`], a recording interrupt registrar, and
//! driver-side helpers that run the handshake through the transport's registers.
#![allow(clippy::expect_used)] // scaffolding: a failure here is a broken test setup

use std::sync::{Arc, Mutex};

use virtio_queue::mock::MockSplitQueue;
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::EventFd;

use super::device::{read_config_bytes, ActivateError, ConfigWrite, VirtioDevice};
use super::manager::EventRegistrar;
use super::mmio::{reg, status, MmioTransport};
use crate::vstate::memory::{GuestRam, RamBacking};

/// Guest RAM of `bytes` bytes for tests.
pub fn test_ram(bytes: u64) -> GuestRam {
    GuestRam::new(bytes, RamBacking::Anonymous).expect("test RAM")
}

#[derive(Default)]
struct Seen {
    activated: Option<u64>,
    resets: u32,
    refuse: bool,
}

/// What a [`TestDevice`] saw (shared with the test after the device moved into a transport).
#[derive(Clone, Default)]
pub struct DeviceProbe(Arc<Mutex<Seen>>);

impl DeviceProbe {
    /// Features of the last activation (None after a reset).
    pub fn activated(&self) -> Option<u64> {
        self.0.lock().expect("test scaffolding").activated
    }

    /// Resets seen.
    pub fn resets(&self) -> u32 {
        self.0.lock().expect("test scaffolding").resets
    }

    /// Makes the next activations fail.
    pub fn refuse_activation(&self) {
        self.0.lock().expect("test scaffolding").refuse = true;
    }
}

/// A device with a writable configuration space and any queues.
pub struct TestDevice {
    ty: u32,
    features: u64,
    config: Vec<u8>,
    queues: Vec<u16>,
    writable: bool,
    probe: DeviceProbe,
}

impl TestDevice {
    /// Type `ty`, offering `features`, configuration `config`, queues of the given maximum sizes.
    pub fn new(ty: u32, features: u64, config: Vec<u8>, queues: &[u16]) -> Self {
        Self {
            ty,
            features,
            config,
            queues: queues.to_vec(),
            writable: false,
            probe: DeviceProbe::default(),
        }
    }

    /// Accepts guest writes to its configuration space (read-only by default).
    #[must_use]
    pub fn with_writable_config(mut self) -> Self {
        self.writable = true;
        self
    }

    /// A handle on what the device sees.
    pub fn probe(&self) -> DeviceProbe {
        self.probe.clone()
    }
}

impl VirtioDevice for TestDevice {
    fn device_type(&self) -> u32 {
        self.ty
    }
    fn features(&self) -> u64 {
        self.features
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.queues
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) -> ConfigWrite {
        let Ok(start) = usize::try_from(offset) else {
            return ConfigWrite::Ignored;
        };
        if !self.writable {
            return ConfigWrite::Ignored;
        }
        match self.config.get_mut(start..start + data.len()) {
            Some(dst) => {
                dst.copy_from_slice(data);
                ConfigWrite::Applied
            }
            None => ConfigWrite::Ignored,
        }
    }
    fn activate(&mut self, features: u64) -> Result<(), ActivateError> {
        let mut s = self.probe.0.lock().expect("test scaffolding");
        if s.refuse {
            return Err(ActivateError::Features {
                features,
                why: "test refusal",
            });
        }
        s.activated = Some(features);
        Ok(())
    }
    fn reset(&mut self) {
        let mut s = self.probe.0.lock().expect("test scaffolding");
        s.activated = None;
        s.resets += 1;
    }
}

/// Records irqfd and ioeventfd registrations instead of talking to KVM.
#[derive(Default)]
pub struct RecordingRegistrar {
    /// (gsi) per irqfd.
    pub irqfds: Mutex<Vec<u32>>,
    /// (address, queue index) per ioeventfd.
    pub ioevents: Mutex<Vec<(u64, u32)>>,
}

impl EventRegistrar for RecordingRegistrar {
    fn register_irqfd(&self, _fd: &EventFd, gsi: u32) -> std::io::Result<()> {
        self.irqfds.lock().expect("test scaffolding").push(gsi);
        Ok(())
    }
    fn register_notify(&self, _fd: &EventFd, addr: u64, queue: u32) -> std::io::Result<()> {
        self.ioevents
            .lock()
            .expect("test scaffolding")
            .push((addr, queue));
        Ok(())
    }
}

fn wr(t: &MmioTransport, off: u64, v: u32) {
    t.write(off, &v.to_le_bytes());
}

fn lo(a: GuestAddress) -> u32 {
    u32::try_from(a.0 & 0xffff_ffff).expect("test scaffolding")
}

/// Where a queue's rings are (guest addresses below 4 GiB) and how many entries it has.
#[derive(Debug, Clone, Copy)]
pub struct QueueLayout {
    /// Queue index.
    pub index: u32,
    /// Entries.
    pub size: u16,
    /// Descriptor table.
    pub desc: GuestAddress,
    /// Available ring.
    pub avail: GuestAddress,
    /// Used ring.
    pub used: GuestAddress,
}

/// Runs the driver's handshake on `t` accepting `features` (VERSION_1 added) with `queues`; returns
/// whether the device is live afterwards.
pub fn handshake(t: &MmioTransport, features: u64, queues: &[QueueLayout]) -> bool {
    let ok = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
    wr(t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    wr(t, reg::DRIVER_FEATURES_SEL, 0);
    wr(t, reg::DRIVER_FEATURES, lo(GuestAddress(features)));
    wr(t, reg::DRIVER_FEATURES_SEL, 1);
    wr(
        t,
        reg::DRIVER_FEATURES,
        1 | lo(GuestAddress(features >> 32)),
    );
    wr(t, reg::STATUS, ok);
    for q in queues {
        wr(t, reg::QUEUE_SEL, q.index);
        wr(t, reg::QUEUE_NUM, u32::from(q.size));
        wr(t, reg::QUEUE_DESC_LOW, lo(q.desc));
        wr(t, reg::QUEUE_AVAIL_LOW, lo(q.avail));
        wr(t, reg::QUEUE_USED_LOW, lo(q.used));
        wr(t, reg::QUEUE_READY, 1);
    }
    wr(t, reg::STATUS, ok | status::DRIVER_OK);
    t.lock().live()
}

/// [`handshake`] with 16-entry queues at the mock queues' addresses; panics unless the device is live.
pub fn activate_with<M: vm_memory::GuestMemory>(
    t: &MmioTransport,
    features: u64,
    queues: &[(u32, &MockSplitQueue<'_, M>)],
) {
    let layouts: Vec<QueueLayout> = queues
        .iter()
        .map(|(index, mock)| QueueLayout {
            index: *index,
            size: 16,
            desc: mock.desc_table_addr(),
            avail: mock.avail_addr(),
            used: mock.used_addr(),
        })
        .collect();
    assert!(handshake(t, features, &layouts), "handshake failed");
}
