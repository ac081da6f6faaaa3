//! `probe=echo`: echo every byte received on the UART back, forever (polling LSR.DR).
//!
//! Output: `PROBE echo ready`, then the echoed bytes.

use super::Scenario;
use crate::cmdline::Args;
use crate::Machine;

/// The scenario entry.
pub const SCENARIO: Scenario = Scenario { name: "echo", run };

fn run(_machine: &Machine, _args: &Args<'_>) {
    crate::report!("echo ready");
    loop {
        if let Some(byte) = crate::serial::try_read_byte() {
            crate::serial::write_bytes(&[byte]);
        } else {
            core::hint::spin_loop();
        }
    }
}
