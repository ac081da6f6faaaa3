//! Finding virtio-mmio devices (virtio 1.2 §4.2) and the probe's virtio drivers.
//!
//! Devices come from the DSDT's `LNRO0005` entries (how domus-vmm and QEMU microvm announce
//! them); without any, the probe scans domus-vmm's fixed window (0xd000_0000, 4 KiB slots, 32
//! slots) for the magic value "virt". Every register page is identity mapped, uncached and
//! user-accessible, so drivers run entirely at CPL3 and poll their used rings. What is found goes
//! into the library's [`Registry`], where drivers look their devices up by type
//! ([`DEVICE_BLOCK`], [`DEVICE_RNG`], ...). The generic parts of a driver (feature negotiation,
//! one split queue) are in [`queue`]; each driver is one file.

pub mod balloon;
pub mod blk;
pub mod net;
pub mod queue;
pub mod rng;

use crate::acpi::aml::{find_mmio_devices, MmioDevice};
use crate::acpi::Acpi;
use crate::io::mmio_read32;
use domus_probe::bytes::HEADER_LEN;
pub use domus_probe::registry::{Device as Transport, Registry};

/// "virt" in little endian: the MagicValue register.
pub const MAGIC: u32 = 0x7472_6976;
/// domus-vmm's virtio-mmio window (its crate docs' machine model).
pub const WINDOW_BASE: u64 = 0xd000_0000;
/// Slot size and count of that window.
pub const WINDOW_SLOT: u64 = 0x1000;
/// Slots in the window.
pub const WINDOW_SLOTS: u64 = 32;

/// Virtio device type of a block device.
pub const DEVICE_BLOCK: u32 = 2;
/// Virtio device type of an entropy source.
pub const DEVICE_RNG: u32 = 4;

/// Register offsets (virtio 1.2 §4.2.2).
pub mod reg {
    /// MagicValue.
    pub const MAGIC: u64 = 0x000;
    /// Version (1 legacy, 2 modern).
    pub const VERSION: u64 = 0x004;
    /// DeviceID (0 = no device behind this transport).
    pub const DEVICE_ID: u64 = 0x008;
}

/// Reads a transport's identity into `registry` (skipped: no magic, DeviceID 0, outside 4 GiB).
fn probe(registry: &mut Registry, dev: MmioDevice) {
    if registry.contains(dev.base) {
        return;
    }
    if dev.base == 0 || dev.base >= 0x1_0000_0000 || mmio_read32(dev.base + reg::MAGIC) != MAGIC {
        return;
    }
    let t = Transport {
        base: dev.base,
        irq: dev.irq,
        version: mmio_read32(dev.base + reg::VERSION),
        device_id: mmio_read32(dev.base + reg::DEVICE_ID),
    };
    // A full registry or an empty transport just is not listed.
    let _ignored = registry.add(t);
}

/// Finds the virtio-mmio devices of this machine, ascending address (domus-vmm: slot order =
/// config order; QEMU microvm fills its transports from the top, so there its first `-device`
/// comes last).
pub fn discover(acpi: Option<&Acpi>) -> Registry {
    let mut registry = Registry::new();
    let dsdt = acpi.and_then(|a| a.dsdt);
    if let Some(dsdt) = dsdt {
        find_mmio_devices(&dsdt[HEADER_LEN..], b"LNRO0005", |d| {
            probe(&mut registry, d)
        });
    }
    if registry.all().is_empty() {
        for slot in 0..WINDOW_SLOTS {
            let base = WINDOW_BASE + slot * WINDOW_SLOT;
            probe(&mut registry, MmioDevice { base, irq: 0 });
        }
    }
    registry
}
