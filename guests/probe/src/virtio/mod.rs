//! Finding virtio-mmio devices (virtio 1.2 §4.2). Drivers (virtio-blk, issue 6) build on this.
//!
//! Devices come from the DSDT's `LNRO0005` entries (how domus-vmm and QEMU microvm announce
//! them); without any, the probe scans domus-vmm's fixed window (0xd000_0000, 4 KiB slots, 32
//! slots) for the magic value "virt". Every register page is identity mapped, uncached and
//! user-accessible, so drivers run entirely at CPL3 and poll their used rings.

pub mod blk;

use crate::acpi::aml::{find_mmio_devices, MmioDevice};
use crate::acpi::Acpi;
use crate::io::mmio_read32;
use domus_probe::bytes::HEADER_LEN;

/// "virt" in little endian: the MagicValue register.
pub const MAGIC: u32 = 0x7472_6976;
/// domus-vmm's virtio-mmio window (its crate docs' machine model).
pub const WINDOW_BASE: u64 = 0xd000_0000;
/// Slot size and count of that window.
pub const WINDOW_SLOT: u64 = 0x1000;
/// Slots in the window.
pub const WINDOW_SLOTS: u64 = 32;
/// Most devices the probe tracks.
pub const MAX_DEVICES: usize = 32;

/// Register offsets (virtio 1.2 §4.2.2).
pub mod reg {
    /// MagicValue.
    pub const MAGIC: u64 = 0x000;
    /// Version (1 legacy, 2 modern).
    pub const VERSION: u64 = 0x004;
    /// DeviceID (0 = no device behind this transport).
    pub const DEVICE_ID: u64 = 0x008;
}

/// A virtio-mmio transport that answered with the magic value.
#[derive(Clone, Copy, Default)]
pub struct Transport {
    /// Register base.
    pub base: u64,
    /// Interrupt (GSI) from ACPI, 0 if unknown.
    pub irq: u32,
    /// Transport version (1 legacy, 2 modern).
    pub version: u32,
    /// Virtio device type (2 = block, 1 = net, ...).
    pub device_id: u32,
}

/// The transports found, in ascending address order (domus-vmm: slot order = config order;
/// QEMU microvm fills its transports from the top, so there its first `-device` comes last).
pub struct Devices {
    list: [Transport; MAX_DEVICES],
    len: usize,
}

impl Devices {
    /// The transports with a device behind them (DeviceID != 0).
    pub fn transports(&self) -> &[Transport] {
        &self.list[..self.len]
    }

    fn probe(&mut self, dev: MmioDevice) {
        if self.len == MAX_DEVICES || self.list[..self.len].iter().any(|t| t.base == dev.base) {
            return;
        }
        if dev.base == 0 || dev.base >= 0x1_0000_0000 || mmio_read32(dev.base + reg::MAGIC) != MAGIC
        {
            return;
        }
        let device_id = mmio_read32(dev.base + reg::DEVICE_ID);
        if device_id == 0 {
            return;
        }
        let version = mmio_read32(dev.base + reg::VERSION);
        self.list[self.len] = Transport {
            base: dev.base,
            irq: dev.irq,
            version,
            device_id,
        };
        self.len += 1;
    }
}

/// Finds the virtio-mmio devices of this machine.
pub fn discover(acpi: Option<&Acpi>) -> Devices {
    let mut devices = Devices {
        list: [Transport::default(); MAX_DEVICES],
        len: 0,
    };
    let dsdt = acpi.and_then(|a| a.dsdt);
    if let Some(dsdt) = dsdt {
        find_mmio_devices(&dsdt[HEADER_LEN..], b"LNRO0005", |d| devices.probe(d));
    }
    if devices.len == 0 {
        for slot in 0..WINDOW_SLOTS {
            let base = WINDOW_BASE + slot * WINDOW_SLOT;
            devices.probe(MmioDevice { base, irq: 0 });
        }
    }
    devices.list[..devices.len].sort_unstable_by_key(|t| t.base);
    devices
}
