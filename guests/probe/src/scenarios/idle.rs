//! `probe=idle` (being written).

use super::Scenario;
use crate::cmdline::Args;
use crate::Machine;

/// The scenario entry.
pub const SCENARIO: Scenario = Scenario { name: "idle", run };

fn run(_machine: &Machine, _args: &Args<'_>) {
    crate::report!("error not-implemented name=idle");
}
