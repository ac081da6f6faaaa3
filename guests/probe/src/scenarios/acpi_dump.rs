//! `probe=acpi-dump [sig=XXXX]`: print every ACPI table the probe can reach, as hex, for
//! debugging a VMM's tables (and to capture test fixtures).
//!
//! Output per table: `PROBE acpi-dump sig=<SIG> addr=<hex> len=<bytes>`, then
//! `PROBE acpi-hex sig=<SIG> off=<hex> hex=<64 bytes as hex>` lines; finally
//! `PROBE acpi-dump tables=<n>`. `sig=` limits the dump to one signature (e.g. `sig=DSDT`).

use super::Scenario;
use crate::cmdline::Args;
use crate::Machine;
use core::fmt::Write;

/// The scenario entry.
pub const SCENARIO: Scenario = Scenario {
    name: "acpi-dump",
    run,
};

fn dump(table: &[u8], filter: Option<&str>) -> bool {
    let sig = core::str::from_utf8(&table[..4]).unwrap_or("????");
    if filter.is_some_and(|f| f != sig) {
        return false;
    }
    crate::report!(
        "acpi-dump sig={sig} addr={:#x} len={}",
        table.as_ptr() as usize,
        table.len()
    );
    for (i, chunk) in table.chunks(64).enumerate() {
        let mut hex = crate::serial::LineBuf::new();
        for b in chunk {
            let _ = write!(hex, "{b:02x}");
        }
        let hex = core::str::from_utf8(hex.as_bytes()).unwrap_or("");
        crate::report!("acpi-hex sig={sig} off={:#x} hex={hex}", i * 64);
    }
    true
}

fn run(machine: &Machine, args: &Args<'_>) {
    let Some(acpi) = machine.acpi.as_ref() else {
        crate::report!("error acpi-dump reason=no-acpi");
        return;
    };
    let filter = args.get("sig");
    let mut count = 0;
    for table in acpi.root.tables().chain(acpi.dsdt) {
        count += usize::from(dump(table, filter));
    }
    let root = acpi.root.table;
    count += usize::from(dump(root, filter));
    crate::report!("acpi-dump tables={count}");
}
