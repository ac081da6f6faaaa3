//! The Domus probe guest: a tiny PVH kernel whose ring 0 only sets up and whose work runs at CPL3.
//!
//! Boot: `boot.rs` (ring 0, assembly) enters long mode, loads GDT/IDT/TSS and `iretq`s to CPL3,
//! where [`probe_main`] installs the IDT gates, reads start_info and ACPI, and runs the scenario
//! named by `probe=<name>` on the command line (`scenarios/`). Results are serial lines
//! `PROBE <scenario> key=value ...`. See README.md for the scenarios and the syscall convention.
//!
//! Under PVM, ring 0 runs in KVM's instruction emulator and CPL3 runs natively, hence the split.
#![no_std]
#![no_main]

mod acpi;
mod apic;
mod boot;
mod clock;
mod cpl0;
mod cpu_hotplug;
mod event_loop;
mod io;
mod layout;
mod power;
mod power_button;
mod pvh;
mod scenarios;
mod serial;
mod smp;
mod sync;
mod syscall;
mod virtio;

use acpi::Acpi;
use cmdline::Args;
use domus_probe::{cmdline, memmap};
use pvh::BootInfo;

/// What the probe learned at boot; every scenario gets it.
pub struct Machine {
    /// start_info contents (command line, memory map); `None` if start_info was unusable.
    pub boot: Option<BootInfo>,
    /// ACPI tables, parsed.
    pub acpi: Option<Acpi>,
}

/// Fixed ports CPL3 uses: UART (serial.rs), i8042, RTC, 8259 PICs, pvpanic, reset control.
const FIXED_PORTS: &[(u16, u16)] = &[
    (0x20, 2),
    (0xa0, 2),
    (0x60, 1),
    (0x64, 1),
    (0x70, 2),
    (0x505, 1),
    (0xcf9, 1),
];

/// Allows the PM ports the FADT names.
fn allow_acpi_ports(acpi: &Acpi) {
    let Some(f) = acpi.fadt else { return };
    for (port, len) in [
        (f.pm1a_evt, u32::from(f.pm1_evt_len.max(4))),
        (f.pm1a_cnt, 2),
        (f.pm1b_cnt, 2),
        (f.pm_tmr, 4),
        (f.smi_cmd, 1),
    ] {
        if port != 0 && port <= 0xffff {
            io::allow_ports(port as u16, len as u16);
        }
    }
}

/// CPL3 entry of the bootstrap processor (called from boot.rs with start_info's address).
extern "C" fn probe_main(start_info: u32) -> ! {
    cpl0::install_idt();
    serial::init();
    FIXED_PORTS
        .iter()
        .for_each(|&(port, count)| io::allow_ports(port, count));
    let boot = match BootInfo::read(u64::from(start_info)) {
        Ok(info) => Some(info),
        Err(e) => {
            report!("error start-info {e:?}");
            None
        }
    };
    let acpi = Acpi::discover(boot.as_ref().map_or(0, |b| b.rsdp_paddr));
    if acpi.is_none() {
        report!("error acpi reason=no-valid-rsdp");
    }
    if let Some(acpi) = &acpi {
        allow_acpi_ports(acpi);
        if let Some(madt) = acpi.madt {
            cpl0::set_lapic_base(madt.lapic_addr);
        }
    }
    let machine = Machine { boot, acpi };
    let cmdline = machine.boot.as_ref().map_or("", |b| b.cmdline());
    let args = Args::parse(cmdline);
    scenarios::run(&machine, &args);
    power::poweroff(machine.acpi.as_ref())
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    serial::force_unlock();
    match info.location() {
        Some(at) => report!(
            "fatal panic at={}:{} msg=\"{}\"",
            at.file(),
            at.line(),
            info.message()
        ),
        None => report!("fatal panic msg=\"{}\"", info.message()),
    }
    power::crash()
}
