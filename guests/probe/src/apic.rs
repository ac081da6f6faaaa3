//! Local APIC (xAPIC, MMIO), IOAPIC and 8259 programming, done from CPL3.
//!
//! The APIC pages are identity mapped and user-accessible, so CPL3 programs them directly (each
//! access is an MMIO exit handled by KVM's in-kernel irqchip). Only the EOI inside interrupt
//! handlers is written from ring 0 (cpl0.rs).

use crate::io::{mmio_read32, mmio_write32, outb};
use crate::layout::VECTOR_SPURIOUS;

const LAPIC_ID: u64 = 0x20;
const LAPIC_SVR: u64 = 0xf0;
const LAPIC_LVT_TIMER: u64 = 0x320;
const LAPIC_TIMER_INITIAL: u64 = 0x380;
const LAPIC_TIMER_DIVIDE: u64 = 0x3e0;
const LVT_TIMER_PERIODIC: u32 = 1 << 17;
const LAPIC_ICR_LOW: u64 = 0x300;
const LAPIC_ICR_HIGH: u64 = 0x310;
const ICR_BUSY: u32 = 1 << 12;
const ICR_INIT: u32 = 0x500;
const ICR_STARTUP: u32 = 0x600;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_LEVEL_TRIGGER: u32 = 1 << 15;

/// The local APIC of the CPU that uses it.
#[derive(Clone, Copy)]
pub struct LocalApic {
    base: u64,
}

impl LocalApic {
    /// The local APIC at `base` (from the MADT).
    pub const fn new(base: u64) -> Self {
        Self { base }
    }

    /// This CPU's APIC id.
    pub fn id(&self) -> u32 {
        mmio_read32(self.base + LAPIC_ID) >> 24
    }

    /// Software-enables the APIC with the probe's spurious vector.
    pub fn enable(&self) {
        mmio_write32(self.base + LAPIC_SVR, 0x100 | u32::from(VECTOR_SPURIOUS));
    }

    /// Starts the APIC timer in periodic mode: `vector` every `count` ticks of the bus clock
    /// divided by 16.
    pub fn start_periodic_timer(&self, vector: u8, count: u32) {
        mmio_write32(self.base + LAPIC_TIMER_DIVIDE, 0x3); // divide by 16
        mmio_write32(
            self.base + LAPIC_LVT_TIMER,
            LVT_TIMER_PERIODIC | u32::from(vector),
        );
        mmio_write32(self.base + LAPIC_TIMER_INITIAL, count);
    }

    /// Stops the APIC timer (a CPU about to halt for good).
    pub fn stop_timer(&self) {
        mmio_write32(self.base + LAPIC_TIMER_INITIAL, 0);
        mmio_write32(self.base + LAPIC_LVT_TIMER, 1 << 16); // masked
    }

    fn wait_icr_idle(&self) {
        for _ in 0..100_000 {
            if mmio_read32(self.base + LAPIC_ICR_LOW) & ICR_BUSY == 0 {
                return;
            }
            core::hint::spin_loop();
        }
    }

    fn send_ipi(&self, apic_id: u32, command: u32) {
        mmio_write32(self.base + LAPIC_ICR_HIGH, apic_id << 24);
        mmio_write32(self.base + LAPIC_ICR_LOW, command);
        self.wait_icr_idle();
    }

    /// INIT (level assert, then de-assert) to `apic_id` (Intel SDM vol. 3 §8.4.4.1).
    pub fn send_init(&self, apic_id: u32) {
        self.send_ipi(apic_id, ICR_INIT | ICR_LEVEL_ASSERT | ICR_LEVEL_TRIGGER);
        self.send_ipi(apic_id, ICR_INIT | ICR_LEVEL_TRIGGER);
    }

    /// STARTUP IPI: the AP starts in real mode at `vector << 12`.
    pub fn send_startup(&self, apic_id: u32, vector: u8) {
        self.send_ipi(apic_id, ICR_STARTUP | ICR_LEVEL_ASSERT | u32::from(vector));
    }
}

/// Masks every line of both 8259 PICs (otherwise ISA interrupts arrive as low vectors).
pub fn mask_pic() {
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
}

/// An IOAPIC's indirect register window.
#[derive(Clone, Copy)]
pub struct IoApic {
    base: u64,
}

/// How an IOAPIC pin is routed.
pub struct Route {
    /// IDT vector.
    pub vector: u8,
    /// Level-triggered (else edge).
    pub level: bool,
    /// Active-low (else active-high).
    pub active_low: bool,
    /// Destination APIC id (physical mode).
    pub dest: u32,
}

impl IoApic {
    /// The IOAPIC at `base`.
    pub const fn new(base: u64) -> Self {
        Self { base }
    }

    fn read(&self, reg: u32) -> u32 {
        mmio_write32(self.base, reg);
        mmio_read32(self.base + 0x10)
    }

    fn write(&self, reg: u32, value: u32) {
        mmio_write32(self.base, reg);
        mmio_write32(self.base + 0x10, value);
    }

    /// Number of redirection entries (pins).
    pub fn pins(&self) -> u32 {
        ((self.read(1) >> 16) & 0xff) + 1
    }

    /// Programs and unmasks redirection entry `pin`.
    pub fn route(&self, pin: u32, route: &Route) {
        let low = u32::from(route.vector)
            | (u32::from(route.active_low) << 13)
            | (u32::from(route.level) << 15);
        self.write(0x10 + 2 * pin + 1, route.dest << 24);
        self.write(0x10 + 2 * pin, low);
    }
}
