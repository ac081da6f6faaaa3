//! ACPI CPU hotplug without an AML interpreter: the probe drives domus-vmm's CPU hotplug register
//! block itself (layout in the VMM's `devices/cpu_hotplug.rs`; found in the DSDT as the
//! SystemMemory OperationRegion `PRST`), woken by the Generic Event Device's interrupt (`ACPI0013`,
//! routed to the SCI vector, whose handler collects the event selector).
//!
//! On a CPU-hotplug event (and once at setup) [`Hotplug::scan`] walks every possible CPU (the
//! MADT's enabled and Online Capable entries): an inserting CPU is started with INIT-SIPI-SIPI (the
//! SMP bring-up code) and prints `PROBE cpu <apic id> up` from the new CPU itself; a removing CPU
//! is asked to leave (it stops its timer and halts for good with interrupts off), then ejected
//! (CEJ0), and the probe prints `PROBE cpu <apic id> down`. Each event is acknowledged in the block.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::apic::LocalApic;
use crate::io::{mmio_read32, mmio_write32};
use crate::layout::{MAX_CPUS, VECTOR_TIMER};
use crate::Machine;

/// GED event bit for CPU hotplug (the VMM's `GED_CPU_HOTPLUG`).
pub const GED_CPU_HOTPLUG: u32 = 1 << 3;
/// Register offsets and status bits (the VMM's register block).
const REG_CSEL: u64 = 0;
const REG_STATUS: u64 = 4;
const CPEN: u32 = 1 << 0;
const CINS: u32 = 1 << 1;
const CRMV: u32 = 1 << 2;
const CEJ0: u32 = 1 << 3;
/// An online AP's wake-up period (APIC timer count, divide 16; ~16 ms at KVM's 1 GHz bus).
const AP_TIMER_COUNT: u32 = 1 << 20;

/// Per CPU slot: asked to leave.
static LEAVE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Per CPU slot: running the probe's AP loop (set by the AP, cleared when it leaves).
static RUNNING: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Local APIC base for the APs.
static LAPIC: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
/// APIC id per CPU slot (the MADT's possible list), for APs to find their slot.
static IDS: crate::sync::SpinLock<[u32; MAX_CPUS]> =
    crate::sync::SpinLock::new([u32::MAX; MAX_CPUS]);

fn slot_of(apic_id: u32) -> Option<usize> {
    IDS.with(|ids| ids.iter().position(|&i| i == apic_id))
}

/// The register block and what the probe needs to act on it.
pub struct Hotplug {
    regs: u64,
    lapic_base: u64,
    pm_tmr: u32,
    possible: usize,
    own_id: u32,
}

/// Finds the register block and the GED, routes the GED's interrupt to the SCI vector and prints
/// `PROBE cpus possible=N online=M`. `Err` when the machine has no CPU hotplug (`no-cpu-hotplug`) or
/// it cannot be used.
pub fn setup(machine: &Machine) -> Result<Hotplug, &'static str> {
    let acpi = machine.acpi.as_ref().ok_or("no-acpi")?;
    let madt = acpi.madt.ok_or("no-madt")?;
    let dsdt = acpi.dsdt.ok_or("no-dsdt")?;
    let body = &dsdt[domus_probe::bytes::HEADER_LEN..];
    let regs = crate::acpi::aml::find_memory_region(body, b"PRST").ok_or("no-cpu-hotplug")?;
    let ged = crate::acpi::aml::find_ged(body).ok_or("no-ged")?;
    if regs >= 0x1_0000_0000 || ged.esel == 0 || ged.esel >= 0x1_0000_0000 {
        return Err("hotplug-registers-out-of-range");
    }
    if !crate::smp::trampoline_is_ram(machine) {
        return Err("trampoline-page-not-ram");
    }
    crate::power_button::route_gsi(&madt, ged.irq, !ged.edge, ged.active_low)?;
    crate::cpl0::set_ged_esel_addr(ged.esel);
    let possible = madt.possible_ids();
    IDS.with(|ids| {
        for (slot, id) in ids.iter_mut().zip(possible) {
            *slot = *id;
        }
    });
    LAPIC.store(madt.lapic_addr, Ordering::SeqCst);
    let own_id = LocalApic::new(madt.lapic_addr).id();
    crate::report!(
        "cpus possible={} online={}",
        possible.len(),
        madt.enabled_cpus
    );
    Ok(Hotplug {
        regs,
        lapic_base: madt.lapic_addr,
        pm_tmr: acpi.fadt.map_or(0, |f| f.pm_tmr),
        possible: possible.len(),
        own_id,
    })
}

impl Hotplug {
    fn status(&self, slot: usize) -> u32 {
        mmio_write32(self.regs + REG_CSEL, slot as u32);
        mmio_read32(self.regs + REG_STATUS) & 0xff
    }

    fn command(&self, slot: usize, bits: u32) {
        mmio_write32(self.regs + REG_CSEL, slot as u32);
        mmio_write32(self.regs + REG_STATUS, bits);
    }

    /// Acts on every inserting and removing CPU (the register block's CSEL is the CPU's ACPI UID,
    /// its slot in the MADT).
    pub fn scan(&self) {
        for slot in 0..self.possible {
            let Some(apic_id) = IDS.with(|ids| ids.get(slot).copied()) else {
                continue;
            };
            let st = self.status(slot);
            if st & CINS != 0 && st & CPEN != 0 {
                self.plug(slot, apic_id);
                self.command(slot, CINS);
            }
            if st & CRMV != 0 {
                self.unplug(slot, apic_id);
            }
        }
    }

    fn plug(&self, slot: usize, apic_id: u32) {
        if apic_id == self.own_id || RUNNING[slot].load(Ordering::SeqCst) {
            return;
        }
        LEAVE[slot].store(false, Ordering::SeqCst);
        let pm = self.pm_tmr;
        let wait = move |us: u64| crate::clock::delay_us_with(pm, us);
        let job = crate::smp::ApJob {
            announce: announce_up,
            work: online_loop,
        };
        if let Err(e) = crate::smp::start_one(self.lapic_base, slot, apic_id, &wait, job) {
            crate::report!("error cpu-hotplug reason={e:?} apic_id={apic_id}");
        }
    }

    fn unplug(&self, slot: usize, apic_id: u32) {
        if apic_id == self.own_id {
            // The boot CPU stays; withdraw the request.
            self.command(slot, CRMV);
            return;
        }
        if RUNNING[slot].load(Ordering::SeqCst) {
            LEAVE[slot].store(true, Ordering::SeqCst);
            // The AP wakes on its timer at least every ~16 ms; allow 10 s for a busy host.
            for _ in 0..10_000 {
                if !RUNNING[slot].load(Ordering::SeqCst) {
                    break;
                }
                crate::clock::delay_us_with(self.pm_tmr, 1000);
            }
            if RUNNING[slot].load(Ordering::SeqCst) {
                crate::report!("error cpu-hotplug reason=no-leave apic_id={apic_id}");
                return;
            }
        }
        self.command(slot, CRMV);
        self.command(slot, CEJ0);
        crate::report!("cpu {apic_id} down");
    }
}

fn announce_up(apic_id: u32) {
    if let Some(slot) = slot_of(apic_id) {
        RUNNING[slot].store(true, Ordering::SeqCst);
    }
    crate::report!("cpu {apic_id} up");
}

/// An online AP: sleeps between timer ticks until asked to leave, then stops its timer, says so
/// and halts for good with interrupts off (a later INIT-SIPI starts it again).
fn online_loop(apic_id: u32) {
    let Some(slot) = slot_of(apic_id) else {
        return;
    };
    let lapic = LocalApic::new(LAPIC.load(Ordering::SeqCst));
    lapic.enable();
    lapic.start_periodic_timer(VECTOR_TIMER, AP_TIMER_COUNT);
    while !LEAVE[slot].load(Ordering::SeqCst) {
        crate::syscall::wait_for_interrupt();
    }
    lapic.stop_timer();
    RUNNING[slot].store(false, Ordering::SeqCst);
}
