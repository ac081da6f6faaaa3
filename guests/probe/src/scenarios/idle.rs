//! `probe=idle`: wait halted, interrupts enabled, until the ACPI power button; then power off.
//!
//! Runs on the shared event loop (`event_loop.rs`) with the power button as its source
//! (`power_button.rs` describes both ACPI flavours); a press already pending at setup counts.
//!
//! An NMI (`xl trigger DOM nmi`) is reported while waiting: `PROBE idle nmi count=N` (N taken since the
//! last report).
//!
//! An NMI (`xl trigger DOM nmi`) is reported while waiting: `PROBE idle nmi count=N` (N taken since the
//! last report).
//!
//! Output: `PROBE idle ready`, then `PROBE idle power-button` (and the probe powers off), or
//! `PROBE error idle reason=...` when the machine lacks what this needs.

use super::Scenario;
use crate::cmdline::Args;
use crate::event_loop::{EventLoop, Events, Flow};
use crate::Machine;

/// The scenario entry.
pub const SCENARIO: Scenario = Scenario { name: "idle", run };

fn stop_on_power_button(ev: &mut Events) -> Flow {
    if ev.nmis > 0 {
        crate::report!("idle nmi count={}", ev.nmis);
    }
    if ev.power_button {
        Flow::Stop
    } else {
        Flow::Continue
    }
}

fn run(machine: &Machine, args: &Args<'_>) {
    let mut lp = EventLoop::new();
    if let Err(reason) = lp.watch_power_button(machine) {
        crate::report!("error idle reason={reason}");
        return;
    }
    lp.watch_cpu_hotplug(machine);
    if let Err(reason) = lp.hook("idle", stop_on_power_button) {
        crate::report!("error idle reason={reason}");
        return;
    }
    lp.attach_drivers(machine, args);
    crate::report!("idle ready");
    lp.run();
    crate::report!("idle power-button");
}
