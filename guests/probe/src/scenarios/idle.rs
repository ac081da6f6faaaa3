//! `probe=idle`: wait halted, interrupts enabled, until the ACPI power button; then power off.
//!
//! Setup (fixed-hardware ACPI, FADT flag HW_REDUCED clear): enable the local APIC, mask the 8259s,
//! route the SCI (ISA IRQ SCI_INT, through the MADT override if any) on its IOAPIC pin to
//! `VECTOR_SCI` with the override's trigger/polarity, enter ACPI mode through SMI_CMD if SCI_EN
//! is clear, clear PM1_STS and set PM1_EN.PWRBTN_EN. Then loop on the `sti; hlt` syscall; the
//! ring-0 SCI handler records and clears PM1_STS. A power-button press pending before setup counts.
//!
//! Output: `PROBE idle ready`, then `PROBE idle power-button` (and the probe powers off), or
//! `PROBE error idle reason=...` when the machine lacks what this needs.

use super::Scenario;
use crate::acpi::{Acpi, Fadt, Madt, FADT_PWR_BUTTON};
use crate::apic::{mask_pic, IoApic, LocalApic, Route};
use crate::cmdline::Args;
use crate::io::{inw, outb, outw};
use crate::layout::VECTOR_SCI;
use crate::Machine;

/// The scenario entry.
pub const SCENARIO: Scenario = Scenario { name: "idle", run };

/// PM1_STS/PM1_EN power-button bit.
const PWRBTN: u16 = 1 << 8;
/// PM1_CNT.SCI_EN.
const SCI_EN: u16 = 1;

fn run(machine: &Machine, _args: &Args<'_>) {
    let setup = machine.acpi.as_ref().ok_or("no-acpi").and_then(setup);
    let pending = match setup {
        Ok(pending) => pending,
        Err(reason) => {
            crate::report!("error idle reason={reason}");
            return;
        }
    };
    crate::report!("idle ready");
    if !pending {
        while crate::cpl0::take_sci_pm1_status() & PWRBTN == 0 {
            crate::syscall::wait_for_interrupt();
        }
    }
    crate::report!("idle power-button");
}

/// Programs the interrupt path; returns whether a power-button press is already pending.
fn setup(acpi: &Acpi) -> Result<bool, &'static str> {
    let fadt = acpi.fadt.ok_or("no-fadt")?;
    let madt = acpi.madt.ok_or("no-madt")?;
    if fadt.is_hw_reduced() {
        return Err("hw-reduced-acpi");
    }
    if fadt.flags & FADT_PWR_BUTTON != 0 {
        return Err("no-fixed-power-button");
    }
    let evt = u16::try_from(fadt.pm1a_evt)
        .ok()
        .filter(|&p| p != 0)
        .ok_or("no-pm1a-evt")?;
    let en = evt + u16::from(fadt.pm1_evt_len.max(4) / 2);
    route_sci(&fadt, &madt)?;
    enter_acpi_mode(acpi, &fadt)?;
    crate::cpl0::set_pm1a_evt_port(evt);
    let status = inw(evt);
    outw(evt, status); // write-1-to-clear everything that was pending
    outw(en, inw(en) | PWRBTN);
    Ok(status & PWRBTN != 0 || inw(evt) & PWRBTN != 0)
}

/// Routes the SCI's GSI to `VECTOR_SCI` on the BSP.
fn route_sci(fadt: &Fadt, madt: &Madt) -> Result<(), &'static str> {
    let irq = u8::try_from(fadt.sci_int).map_err(|_| "sci-not-isa")?;
    let (gsi, flags) = madt.isa_irq(irq);
    let ioapic = madt
        .ioapics()
        .iter()
        .filter(|io| io.gsi_base <= gsi)
        .max_by_key(|io| io.gsi_base)
        .ok_or("no-ioapic-for-sci")?;
    let regs = IoApic::new(ioapic.addr);
    let pin = gsi - ioapic.gsi_base;
    if pin >= regs.pins() {
        return Err("sci-pin-out-of-range");
    }
    // MPS INTI flags; "conforms" (0) means the SCI default: level, active low (ACPI 6.5 §5.2.12.5).
    let active_low = matches!(flags & 3, 0 | 3);
    let level = matches!((flags >> 2) & 3, 0 | 3);
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
