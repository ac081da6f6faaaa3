//! Virtio devices on the virtio-mmio transport (virtio 1.2 §4.2, modern interface only).
//!
//! The machine has a fixed virtio-mmio window (the machine model of the crate docs): slot `i` is the 4 KiB page at
//! [`WINDOW_BASE`] + `i` · [`SLOT_SIZE`] and interrupts on GSI [`FIRST_GSI`] + `i` (edge, active high);
//! each slot is announced in the DSDT as an `LNRO0005` device. Register accesses exit to the vCPU
//! thread ([`mmio::MmioTransport`]); queue notifications do not: `QueueNotify` is an ioeventfd that a
//! device thread waits on, and the device interrupts through an irqfd.
//!
//! Guest mistakes (bad descriptors, out-of-range sectors, a half-finished handshake) never stop the
//! VMM: the request completes with an error status, or the device sets DEVICE_NEEDS_RESET. Warnings
//! about them are rate limited ([`guest_error`]) so a hostile guest cannot flood the log.

pub mod block;
pub mod mmio;

use std::sync::atomic::{AtomicU64, Ordering};

/// Base of the virtio-mmio window.
pub const WINDOW_BASE: u64 = 0xd000_0000;
/// Bytes per slot.
pub const SLOT_SIZE: u64 = 0x1000;
/// First GSI of the window's devices.
pub const FIRST_GSI: u32 = 10;
/// Slots that have a GSI of their own (GSIs 10..=23).
pub const MAX_DEVICES: usize = 14;

/// Guest address of slot `i`.
pub fn slot_base(i: usize) -> u64 {
    WINDOW_BASE + SLOT_SIZE * i as u64
}

/// GSI of slot `i`.
pub fn slot_gsi(i: usize) -> u32 {
    FIRST_GSI + u32::try_from(i).unwrap_or(0)
}

static GUEST_ERRORS: AtomicU64 = AtomicU64::new(0);

/// Logs a guest-caused error: the first 20, then every 1000th (with the running count).
pub fn guest_error(device: &str, what: &dyn std::fmt::Display) {
    let n = GUEST_ERRORS.fetch_add(1, Ordering::Relaxed);
    if n < 20 || n % 1000 == 0 {
        tracing::warn!(device, count = n + 1, "guest error: {what}");
    }
}

/// Already-encoded AML (a list of `Device` objects).
pub struct RawAml(pub Vec<u8>);

impl acpi_tables::Aml for RawAml {
    fn to_aml_bytes(&self, sink: &mut dyn acpi_tables::AmlSink) {
        sink.vec(&self.0);
    }
}

/// The DSDT's `Device (VRnn)` entries for `slots` virtio-mmio slots: `_HID "LNRO0005"`, `_UID n`,
/// `_CRS` with the 4 KiB register window and an edge-triggered, active-high GSI.
pub fn dsdt_devices(slots: usize) -> Option<RawAml> {
    use acpi_tables::{aml, Aml};
    if slots == 0 {
        return None;
    }
    let mut bytes = Vec::new();
    for i in 0..slots.min(MAX_DEVICES) {
        let base = u32::try_from(slot_base(i)).unwrap_or(0);
        let mem = aml::Memory32Fixed::new(true, base, u32::try_from(SLOT_SIZE).unwrap_or(0));
        let irq = aml::Interrupt::new(true, true, false, false, slot_gsi(i));
        let crs = aml::ResourceTemplate::new(vec![&mem, &irq]);
        let hid = aml::Name::new("_HID".into(), &"LNRO0005");
        let uid_v = u32::try_from(i).unwrap_or(0);
        let uid = aml::Name::new("_UID".into(), &uid_v);
        let crs = aml::Name::new("_CRS".into(), &crs);
        let name = format!("VR{i:02X}");
        aml::Device::new(name.as_str().into(), vec![&hid, &uid, &crs]).to_aml_bytes(&mut bytes);
    }
    Some(RawAml(bytes))
}
