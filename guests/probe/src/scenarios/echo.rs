//! `probe=echo`: echo every byte received on COM1 back, forever.
//!
//! Output: `PROBE echo ready`, then the echoed bytes. A line BREAK (LSR.BI with its NUL character) is
//! reported as `PROBE echo break`, and the byte after it, as Linux's 8250 console would take it for
//! SysRq, as `PROBE echo sysrq key=K` instead of being echoed. Bytes are read by polling LSR.DR; between
//! bursts the vCPU sleeps in `sti; hlt` (so a long-running echo domain costs no CPU) when the
//! machine has an IOAPIC: COM1's receive interrupt (ISA IRQ 4, routed per the MADT) wakes it,
//! and a periodic local-APIC timer (~16 ms at KVM's 1 GHz APIC bus) wakes it anyway, so a lost
//! interrupt only delays an echo. Without an IOAPIC it polls continuously.

use super::Scenario;
use crate::apic::{mask_pic, IoApic, LocalApic, Route};
use crate::cmdline::Args;
use crate::layout::{VECTOR_COM1, VECTOR_TIMER};
use crate::serial::{enable_rx_interrupt, try_read_with_status, write_bytes, LSR_BREAK};
use crate::Machine;

/// The scenario entry.
pub const SCENARIO: Scenario = Scenario { name: "echo", run };

/// COM1's ISA IRQ.
const COM1_IRQ: u8 = 4;
/// APIC timer period in bus ticks / 16.
const TIMER_COUNT: u32 = 1 << 20;

/// Routes COM1's interrupt and starts the safety-net timer; false if there is no IOAPIC for it.
fn setup_wakeups(machine: &Machine) -> bool {
    let Some(madt) = machine.acpi.as_ref().and_then(|a| a.madt) else {
        return false;
    };
    let (gsi, flags) = madt.isa_irq(COM1_IRQ);
    let Some(ioapic) = madt
        .ioapics()
        .iter()
        .filter(|io| io.gsi_base <= gsi)
        .max_by_key(|io| io.gsi_base)
    else {
        return false;
    };
    let regs = IoApic::new(ioapic.addr);
    let pin = gsi - ioapic.gsi_base;
    if pin >= regs.pins() {
        return false;
    }
    let lapic = LocalApic::new(madt.lapic_addr);
    lapic.enable();
    mask_pic();
    // MPS INTI flags; "conforms" (0) on the ISA bus means edge, active high.
    let route = Route {
        vector: VECTOR_COM1,
        level: (flags >> 2) & 3 == 3,
        active_low: flags & 3 == 3,
        dest: lapic.id(),
    };
    regs.route(pin, &route);
    enable_rx_interrupt();
    lapic.start_periodic_timer(VECTOR_TIMER, TIMER_COUNT);
    true
}

fn run(machine: &Machine, _args: &Args<'_>) {
    let sleep = setup_wakeups(machine);
    crate::report!("echo ready");
    let mut after_break = false;
    loop {
        while let Some((byte, lsr)) = try_read_with_status() {
            if lsr & LSR_BREAK != 0 {
                crate::report!("echo break");
                after_break = true;
            } else if after_break {
                crate::report!("echo sysrq key={}", char::from(byte));
                after_break = false;
            } else {
                write_bytes(&[byte]);
            }
        }
        if sleep {
            crate::syscall::wait_for_interrupt();
        } else {
            core::hint::spin_loop();
        }
    }
}
