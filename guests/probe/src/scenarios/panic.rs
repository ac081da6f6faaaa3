//! `probe=panic`: announce, then signal a crash through pvpanic (write 1 to port 0x505).
//!
//! Output: `PROBE panic pvpanic=<present|absent>`. Without a pvpanic device the probe
//! triple-faults instead.

use super::Scenario;
use crate::cmdline::Args;
use crate::Machine;

/// The scenario entry.
pub const SCENARIO: Scenario = Scenario { name: "panic", run };

fn run(_machine: &Machine, _args: &Args<'_>) {
    let present = if crate::power::has_pvpanic() {
        "present"
    } else {
        "absent"
    };
    crate::report!("panic pvpanic={present}");
    crate::power::crash()
}
