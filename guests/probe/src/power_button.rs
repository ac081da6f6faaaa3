//! The ACPI power button as an event source (used by the event loop's `watch_power_button`).
//!
//! Fixed-hardware ACPI (FADT flag HW_REDUCED clear; domus-vmm, QEMU `-M pc`): enable the local
//! APIC, mask the 8259s, route the SCI (ISA IRQ SCI_INT, through the MADT override if any) on its
//! IOAPIC pin to `VECTOR_SCI` with the override's trigger/polarity, enter ACPI mode through
//! SMI_CMD if SCI_EN is clear, clear PM1_STS and set PM1_EN.PWRBTN_EN. The ring-0 SCI handler
//! records and clears PM1_STS; a press is PWRBTN_STS.
//!
//! Hardware-reduced ACPI (QEMU microvm): the power button is an event of the Generic Event Device
//! (ACPI0013): its interrupt (from `_CRS`) is routed to `VECTOR_SCI` and the handler reads its
//! event selector; a press is QEMU's power-down event bit (0x2, which QEMU's `_EVT` method maps to
//! `Notify(PWRB)`).

use crate::acpi::aml::find_ged;
use crate::acpi::{Acpi, Fadt, Madt, FADT_PWR_BUTTON};
use crate::apic::{mask_pic, IoApic, LocalApic, Route};
use crate::io::{inw, outb, outw};
use crate::layout::VECTOR_SCI;
use domus_probe::bytes::HEADER_LEN;

/// PM1_STS/PM1_EN power-button bit.
const PWRBTN: u16 = 1 << 8;
/// PM1_CNT.SCI_EN.
const SCI_EN: u16 = 1;
/// QEMU's GED power-down event bit (ACPI_GED_PWR_DOWN_EVT).
const GED_PWR_DOWN: u32 = 1 << 1;

/// Where the power-button event shows up.
#[derive(Clone, Copy)]
pub enum Button {
    /// PM1_STS.PWRBTN_STS (fixed hardware).
    Fixed,
    /// The GED event selector (hardware-reduced).
    Ged,
}

impl Button {
    /// Whether a press was seen since the last call (the SCI handler records it); `ged` are the
    /// GED events the caller took this round (`cpl0::take_sci_ged_events`; other GED events, such
    /// as CPU hotplug, are the caller's to dispatch).
    pub fn pressed(self, ged: u32) -> bool {
        match self {
            Self::Fixed => crate::cpl0::take_sci_pm1_status() & PWRBTN != 0,
            Self::Ged => ged & GED_PWR_DOWN != 0,
        }
    }
}

/// Programs the interrupt path; returns where presses show up and whether one is pending.
pub fn setup(acpi: &Acpi) -> Result<(Button, bool), &'static str> {
    let fadt = acpi.fadt.ok_or("no-fadt")?;
    let madt = acpi.madt.ok_or("no-madt")?;
    if fadt.is_hw_reduced() {
        return setup_ged(acpi, &madt).map(|pending| (Button::Ged, pending));
    }
    if fadt.flags & FADT_PWR_BUTTON != 0 {
        return Err("no-fixed-power-button");
    }
    let evt = u16::try_from(fadt.pm1a_evt)
        .ok()
        .filter(|&p| p != 0)
        .ok_or("no-pm1a-evt")?;
    let en = evt
        .checked_add(u16::from(fadt.pm1_evt_len.max(4) / 2))
        .ok_or("pm1-evt-out-of-range")?;
    let irq = u8::try_from(fadt.sci_int).map_err(|_| "sci-not-isa")?;
    let (gsi, flags) = madt.isa_irq(irq);
    // MPS INTI flags; "conforms" (0) means the SCI default: level, active low (ACPI 6.5 §5.2.12.5).
    let active_low = matches!(flags & 3, 0 | 3);
    let level = matches!((flags >> 2) & 3, 0 | 3);
    route_gsi(&madt, gsi, level, active_low)?;
    enter_acpi_mode(acpi, &fadt)?;
    crate::cpl0::set_pm1a_evt_port(evt);
    let status = inw(evt);
    outw(evt, status); // write-1-to-clear everything that was pending
    outw(en, inw(en) | PWRBTN);
    Ok((
        Button::Fixed,
        status & PWRBTN != 0 || inw(evt) & PWRBTN != 0,
    ))
}

/// Hardware-reduced: routes the Generic Event Device's interrupt; returns whether a power-down
/// event is already pending.
fn setup_ged(acpi: &Acpi, madt: &Madt) -> Result<bool, &'static str> {
    let dsdt = acpi.dsdt.ok_or("no-dsdt")?;
    let ged = find_ged(&dsdt[HEADER_LEN..]).ok_or("hw-reduced-acpi-without-ged")?;
    if ged.esel == 0 || ged.esel >= 0x1_0000_0000 {
        return Err("ged-register-out-of-range");
    }
    route_gsi(madt, ged.irq, !ged.edge, ged.active_low)?;
    let pending = crate::io::mmio_read32(ged.esel) & GED_PWR_DOWN != 0;
    crate::cpl0::set_ged_esel_addr(ged.esel);
    Ok(pending)
}

/// Routes `gsi` to `VECTOR_SCI` on the BSP (and enables the LAPIC, masks the 8259s).
pub fn route_gsi(madt: &Madt, gsi: u32, level: bool, active_low: bool) -> Result<(), &'static str> {
    let ioapic = madt
        .ioapics()
        .iter()
        .filter(|io| io.gsi_base <= gsi)
        .max_by_key(|io| io.gsi_base)
        .ok_or("no-ioapic-for-gsi")?;
    let regs = IoApic::new(ioapic.addr);
    let pin = gsi - ioapic.gsi_base;
    if pin >= regs.pins() {
        return Err("gsi-pin-out-of-range");
    }
    let lapic = LocalApic::new(madt.lapic_addr);
    lapic.enable();
    mask_pic();
    regs.route(
        pin,
        &Route {
            vector: VECTOR_SCI,
            level,
            active_low,
            dest: lapic.id(),
        },
    );
    Ok(())
}

/// Writes ACPI_ENABLE to SMI_CMD if the firmware left the machine in legacy mode.
fn enter_acpi_mode(acpi: &Acpi, fadt: &Fadt) -> Result<(), &'static str> {
    let cnt = u16::try_from(fadt.pm1a_cnt)
        .ok()
        .filter(|&p| p != 0)
        .ok_or("no-pm1a-cnt")?;
    if inw(cnt) & SCI_EN != 0 {
        return Ok(());
    }
    let smi = u16::try_from(fadt.smi_cmd)
        .ok()
        .filter(|&p| p != 0)
        .ok_or("sci-en-clear-no-smi-cmd")?;
    outb(smi, fadt.acpi_enable);
    for _ in 0..1000 {
        if inw(cnt) & SCI_EN != 0 {
            return Ok(());
        }
        crate::clock::delay_us(Some(acpi), 1000);
    }
    Err("acpi-enable-timeout")
}
