//! `probe=echo`: echo every byte received on COM1 back, forever.
//!
//! Output: `PROBE echo ready`, then the echoed bytes. A line BREAK (LSR.BI with its NUL character) is
//! reported as `PROBE echo break`, and the byte after it, as Linux's 8250 console would take it for
//! SysRq, as `PROBE echo sysrq key=K` instead of being echoed. Runs on the shared event loop
//! (`event_loop.rs`) with console input as its source: bytes are read by polling LSR.DR; between
//! bursts the vCPU sleeps in `sti; hlt` (so a long-running echo domain costs no CPU) when the
//! machine has an IOAPIC: COM1's receive interrupt (ISA IRQ 4, routed per the MADT) wakes it,
//! and a periodic local-APIC timer (~16 ms at KVM's 1 GHz APIC bus) wakes it anyway, so a lost
//! interrupt only delays an echo. Without an IOAPIC it polls continuously.

use core::sync::atomic::{AtomicBool, Ordering};

use super::Scenario;
use crate::cmdline::Args;
use crate::event_loop::{EventLoop, Events, Flow};
use crate::serial::{write_bytes, LSR_BREAK};
use crate::Machine;

/// The scenario entry.
pub const SCENARIO: Scenario = Scenario { name: "echo", run };

/// The previous byte was a BREAK: the next one is a SysRq key (kept across rounds).
static AFTER_BREAK: AtomicBool = AtomicBool::new(false);

fn echo(ev: &mut Events) -> Flow {
    for (byte, lsr) in ev.console_with_status() {
        if lsr & LSR_BREAK != 0 {
            crate::report!("echo break");
            AFTER_BREAK.store(true, Ordering::Relaxed);
        } else if AFTER_BREAK.swap(false, Ordering::Relaxed) {
            crate::report!("echo sysrq key={}", char::from(byte));
        } else {
            write_bytes(&[byte]);
        }
    }
    Flow::Continue
}

fn run(machine: &Machine, args: &Args<'_>) {
    let mut lp = EventLoop::new();
    lp.watch_console(machine);
    lp.watch_cpu_hotplug(machine);
    if let Err(reason) = lp.hook("echo", echo) {
        crate::report!("error echo reason={reason}");
        return;
    }
    lp.attach_drivers(machine, args);
    crate::report!("echo ready");
    lp.run();
}
