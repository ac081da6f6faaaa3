//! `probe=fault kind=<pf|gp|ud|panic>`: trigger a fatal error at CPL3 to exercise the fatal path.
//!
//! Output: `PROBE fault kind=<kind>`, then the fatal report — `PROBE fatal vector=<14|13|6> ...`
//! for an exception (#PF reading above 4 GiB, #GP on a port the I/O bitmap denies, #UD from a
//! `ud2` with an unknown syscall number) or `PROBE fatal panic at=... msg="..."` — and a crash
//! (pvpanic, else triple fault), as any unexpected fault would end.

use super::Scenario;
use crate::cmdline::Args;
use crate::Machine;

/// The scenario entry.
pub const SCENARIO: Scenario = Scenario { name: "fault", run };

fn run(_machine: &Machine, args: &Args<'_>) {
    let kind = args.get("kind").unwrap_or("pf");
    match kind {
        "pf" | "gp" | "ud" | "panic" => crate::report!("fault kind={kind}"),
        other => {
            crate::report!("error bad-argument key=kind value={other}");
            return;
        }
    }
    match kind {
        // SAFETY: deliberately faults: nothing is mapped above 4 GiB, so ring 0 reports #PF and
        // never returns here.
        "pf" => unsafe {
            core::ptr::read_volatile(0x1_0000_0000usize as *const u64);
        },
        // Port 0x80 is never allowed in the I/O bitmap: #GP.
        "gp" => crate::io::outb(0x80, 0),
        // SAFETY: deliberately faults: syscall number u64::MAX is rejected as a fatal #UD.
        "ud" => unsafe { core::arch::asm!("ud2", in("rax") u64::MAX, options(nostack)) },
        _ => panic!("deliberate panic from probe=fault"),
    }
    crate::report!("error fault-did-not-fault kind={kind}");
}
