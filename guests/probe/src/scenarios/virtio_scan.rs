//! `probe=virtio-scan`: list the virtio-mmio devices the probe finds (see `virtio/`).
//!
//! Output: one `PROBE virtio-scan dev=<i> addr=<hex> irq=<gsi> version=<1|2> device_id=<id>`
//! per device (ascending address), then `PROBE virtio-scan devices=<n>`.

use super::Scenario;
use crate::cmdline::Args;
use crate::Machine;

/// The scenario entry.
pub const SCENARIO: Scenario = Scenario {
    name: "virtio-scan",
    run,
};

fn run(machine: &Machine, _args: &Args<'_>) {
    let devices = crate::virtio::discover(machine.acpi.as_ref());
    for (i, t) in devices.all().iter().enumerate() {
        crate::report!(
            "virtio-scan dev={i} addr={:#x} irq={} version={} device_id={}",
            t.base,
            t.irq,
            t.version,
            t.device_id
        );
    }
    crate::report!("virtio-scan devices={}", devices.all().len());
}
