//! Ending the run: ACPI S5 poweroff, reset (i8042, FADT RESET_REG, port 0xcf9), pvpanic crash.
//!
//! Each path tries what the machine model offers and falls through to a harder stop, so a
//! scenario always ends instead of hanging: poweroff that did not take effect is reported and
//! halts; reset ends in a triple fault; crash signals pvpanic, then triple-faults.

use crate::acpi::{Acpi, Gas};
use crate::io::{allow_ports, inb, inw, mmio_write8, outb, outw, rdtsc};
use crate::syscall;

/// PM1_CNT.SLP_EN.
const SLP_EN: u16 = 1 << 13;
/// PM1_CNT.SLP_TYP field.
const SLP_TYP_SHIFT: u16 = 10;
/// Hardware-reduced SLEEP_CONTROL_REG: SLP_TYP in bits 2-4, SLP_EN bit 5.
const SLEEP_CTL_SLP_EN: u8 = 1 << 5;
/// The pvpanic ISA port; bit 0 = "guest panicked".
const PVPANIC_PORT: u16 = 0x505;
/// i8042 command/status port.
const I8042_CMD: u16 = 0x64;
/// How long to wait (TSC cycles, ~1-2 s) for the VMM to act on a poweroff/reset/crash write
/// before reporting that it did not and trying the next way. Generous: a VMM that handles the
/// write in another thread (QEMU) may let the vCPU run on for a while, more so on a busy host.
const ACT_TIMEOUT_CYCLES: u64 = 5_000_000_000;

/// Spins for about `cycles` TSC cycles (CPL3, native).
pub fn spin_cycles(cycles: u64) {
    let start = rdtsc();
    while rdtsc().wrapping_sub(start) < cycles {
        core::hint::spin_loop();
    }
}

fn write_gas8(gas: Gas, value: u8) {
    match gas.space {
        1 => {
            if let Ok(port) = u16::try_from(gas.address) {
                allow_ports(port, 1);
                outb(port, value);
            }
        }
        0 => mmio_write8(gas.address, value),
        _ => {}
    }
}

/// Asks for ACPI S5 (soft off). Returns only if that is impossible or did not take effect.
fn enter_s5(acpi: &Acpi) -> Result<(), &'static str> {
    let fadt = acpi.fadt.ok_or("no-fadt")?;
    let (typ_a, typ_b) = acpi.s5.ok_or("no-s5-package")?;
    if fadt.is_hw_reduced() {
        let ctl = fadt.sleep_control.ok_or("no-sleep-control-reg")?;
        write_gas8(ctl, (typ_a << 2) | SLEEP_CTL_SLP_EN);
    } else {
        for (port, typ) in [(fadt.pm1a_cnt, typ_a), (fadt.pm1b_cnt, typ_b)] {
            if port == 0 || port > 0xffff {
                continue;
            }
            let port = port as u16;
            allow_ports(port, 2);
            let cnt = inw(port) & !(7 << SLP_TYP_SHIFT) & !SLP_EN;
            outw(port, cnt | (u16::from(typ) << SLP_TYP_SHIFT) | SLP_EN);
        }
    }
    Ok(())
}

/// Powers the machine off through ACPI S5.
pub fn poweroff(acpi: Option<&Acpi>) -> ! {
    let result = acpi.ok_or("no-acpi").and_then(enter_s5);
    spin_cycles(ACT_TIMEOUT_CYCLES);
    match result {
        Err(reason) => crate::report!("error poweroff-failed reason={reason}"),
        Ok(()) => crate::report!("error poweroff-failed reason=still-running"),
    }
    syscall::halt_forever()
}

/// Resets the machine: i8042 pulse-reset, then FADT RESET_REG, then port 0xcf9, then a triple fault.
pub fn reboot(acpi: Option<&Acpi>) -> ! {
    allow_ports(I8042_CMD, 1);
    for _ in 0..1000 {
        if inb(I8042_CMD) & 0x02 == 0 {
            break; // input buffer empty
        }
    }
    outb(I8042_CMD, 0xfe);
    spin_cycles(ACT_TIMEOUT_CYCLES);
    crate::report!("error reboot-ignored via=i8042");
    if let Some((gas, value)) = acpi.and_then(|a| a.fadt).and_then(|f| f.reset) {
        write_gas8(gas, value);
        spin_cycles(ACT_TIMEOUT_CYCLES);
        crate::report!("error reboot-ignored via=reset-reg");
    }
    allow_ports(0xcf9, 1);
    outb(0xcf9, 0x02);
    outb(0xcf9, 0x06);
    spin_cycles(ACT_TIMEOUT_CYCLES);
    crate::report!("error reboot-ignored via=cf9");
    syscall::triple_fault()
}

/// Signals a guest crash through pvpanic; without a pvpanic device, triple-faults instead.
pub fn crash() -> ! {
    allow_ports(PVPANIC_PORT, 1);
    outb(PVPANIC_PORT, 1);
    spin_cycles(ACT_TIMEOUT_CYCLES);
    syscall::triple_fault()
}

/// Whether a pvpanic device answers at 0x505 (it reads back its supported-event bits).
pub fn has_pvpanic() -> bool {
    allow_ports(PVPANIC_PORT, 1);
    let features = inb(PVPANIC_PORT);
    features != 0xff && features & 1 != 0
}
