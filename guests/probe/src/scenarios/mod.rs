//! Scenario dispatch: `probe=<name>` picks one entry of [`SCENARIOS`].
//!
//! Adding a scenario is one file: write `scenarios/<name>.rs` with a `pub const SCENARIO:
//! Scenario` and list it below. A scenario that returns is followed by an ACPI poweroff.

mod acpi_dump;
mod blk;
mod blk_hostile;
mod cpuid;
mod echo;
mod fault;
mod hello;
mod idle;
mod loop_;
mod mem_soak;
mod net;
mod panic;
mod poweroff;
mod reboot;
mod rng;
mod smp;
mod syscall;
mod triple_fault;
mod virtio_scan;

use crate::cmdline::Args;
use crate::Machine;

/// One named scenario.
pub struct Scenario {
    /// The `probe=` value that selects it.
    pub name: &'static str,
    /// Runs it; returning means "power off now".
    pub run: fn(&Machine, &Args<'_>),
}

/// Every scenario the probe knows.
pub const SCENARIOS: &[Scenario] = &[
    hello::SCENARIO,
    poweroff::SCENARIO,
    reboot::SCENARIO,
    panic::SCENARIO,
    triple_fault::SCENARIO,
    smp::SCENARIO,
    loop_::SCENARIO,
    idle::SCENARIO,
    echo::SCENARIO,
    syscall::SCENARIO,
    cpuid::SCENARIO,
    virtio_scan::SCENARIO,
    fault::SCENARIO,
    acpi_dump::SCENARIO,
    blk::SUM,
    blk::FILL,
    blk::RO,
    blk::ZERO,
    blk::BENCH,
    blk_hostile::SCENARIO,
    rng::SCENARIO,
    net::ECHO,
    net::PING,
    net::TX,
    net::RX,
    net::HOSTILE,
    mem_soak::SCENARIO,
];

/// Runs the scenario the command line names, or reports that it does not exist.
pub fn run(machine: &Machine, args: &Args<'_>) {
    let name = args.scenario();
    match SCENARIOS.iter().find(|s| s.name == name) {
        Some(scenario) => (scenario.run)(machine, args),
        None => crate::report!("error unknown-scenario name={name}"),
    }
}
