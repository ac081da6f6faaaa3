//! The probe's one event loop for long-running scenarios: sources (console input with its line
//! status, the ACPI power button, ACPI CPU hotplug, NMIs, interrupts and a safety-net timer) are
//! turned into an
//! [`Events`] record each round, and
//! every hook a scenario or driver registered (`domus_probe::hooks`) runs on it; any hook can end
//! the loop. Between rounds the vCPU sleeps in `sti; hlt` when some interrupt can wake it (an
//! IOAPIC route or the local APIC timer), else it polls.
//!
//! A new long-running scenario or driver registers a hook (and, if it needs one, a source) instead
//! of writing its own loop.

use crate::apic::{mask_pic, IoApic, LocalApic, Route};
use crate::layout::{VECTOR_COM1, VECTOR_TIMER};
use crate::power_button::Button;
use crate::serial::{enable_rx_interrupt, try_read_with_status};
use crate::Machine;
pub use domus_probe::hooks::Flow;
use domus_probe::hooks::Hooks;

/// Most hooks one loop runs.
pub const MAX_HOOKS: usize = 8;
/// Console bytes delivered per round.
pub const CONSOLE_BURST: usize = 64;
/// APIC timer period while polling continuously (~260 µs: above PVM's 200 µs floor).
pub const BUSY_TIMER_COUNT: u32 = 1 << 14;
/// TSC cycles between interrupt windows while polling continuously (~10 ms at 2 GHz).
pub const BUSY_CHECK_CYCLES: u64 = 20_000_000;
/// COM1's ISA IRQ.
const COM1_IRQ: u8 = 4;
/// APIC timer period in bus ticks / 16 (~16 ms at KVM's 1 GHz APIC bus).
const TIMER_COUNT: u32 = 1 << 20;

/// What one round of the loop saw.
pub struct Events {
    /// Console bytes received this round (`console_len` of them).
    pub console: [u8; CONSOLE_BURST],
    /// The line status register each of them arrived with (LSR.BI marks a BREAK's NUL).
    pub console_lsr: [u8; CONSOLE_BURST],
    /// How many of `console` are valid.
    pub console_len: usize,
    /// The power button was pressed.
    pub power_button: bool,
    /// NMIs taken since the previous round.
    pub nmis: u64,
    /// Rounds so far (the first is 0).
    pub round: u64,
}

impl Events {
    /// The console bytes of this round.
    pub fn console_bytes(&self) -> &[u8] {
        &self.console[..self.console_len]
    }

    /// The console bytes of this round with their line status.
    pub fn console_with_status(&self) -> impl Iterator<Item = (u8, u8)> + '_ {
        self.console_bytes()
            .iter()
            .copied()
            .zip(self.console_lsr.iter().copied())
    }
}

/// A loop being set up, then run.
pub struct EventLoop {
    hooks: Hooks<Events, MAX_HOOKS>,
    console: bool,
    button: Option<Button>,
    pending_press: bool,
    sleep: bool,
    busy: bool,
    cpus: Option<crate::cpu_hotplug::Hotplug>,
}

impl Default for EventLoop {
    fn default() -> Self {
        Self::new()
    }
}

impl EventLoop {
    /// A loop with no sources and no hooks.
    pub const fn new() -> Self {
        Self {
            hooks: Hooks::new(),
            console: false,
            button: None,
            pending_press: false,
            sleep: false,
            busy: false,
            cpus: None,
        }
    }

    /// ACPI CPU hotplug as a source (`cpu_hotplug.rs`): the GED interrupt makes the loop scan the
    /// CPU register block and bring CPUs up or down. A machine without CPU hotplug is not an
    /// error (nothing to watch); one whose hotplug cannot be used is reported once.
    pub fn watch_cpu_hotplug(&mut self, machine: &Machine) {
        match crate::cpu_hotplug::setup(machine) {
            Ok(h) => {
                self.cpus = Some(h);
                self.sleep = true;
            }
            Err("no-cpu-hotplug") => {}
            Err(reason) => crate::report!("error cpu-hotplug reason={reason}"),
        }
    }

    /// Registers a hook (run every round, in registration order).
    pub fn hook(
        &mut self,
        name: &'static str,
        run: fn(&mut Events) -> Flow,
    ) -> Result<(), &'static str> {
        self.hooks
            .register(name, run)
            .map_err(|_full| "too-many-hooks")
    }

    /// Console input as a source: COM1's receive interrupt routed through the IOAPIC (per the
    /// MADT) plus the safety-net timer, so the loop can sleep; without an IOAPIC it polls.
    pub fn watch_console(&mut self, machine: &Machine) {
        self.console = true;
        if route_com1(machine) {
            enable_rx_interrupt();
            self.watch_timer(machine);
        }
    }

    /// The local APIC's periodic timer (~16 ms) as a wake-up, so polling hooks run even when no
    /// other interrupt comes (a loop that polls continuously keeps its faster timer).
    pub fn watch_timer(&mut self, machine: &Machine) {
        if self.busy {
            return;
        }
        if let Some(madt) = machine.acpi.as_ref().and_then(|a| a.madt) {
            let lapic = LocalApic::new(madt.lapic_addr);
            lapic.enable();
            lapic.start_periodic_timer(VECTOR_TIMER, TIMER_COUNT);
            self.sleep = true;
        }
    }

    /// The ACPI power button as a source (SCI or GED interrupt routed; see `power_button.rs`).
    pub fn watch_power_button(&mut self, machine: &Machine) -> Result<(), &'static str> {
        let acpi = machine.acpi.as_ref().ok_or("no-acpi")?;
        let (button, pending) = crate::power_button::setup(acpi)?;
        self.button = Some(button);
        self.pending_press = pending;
        self.sleep = true;
        Ok(())
    }

    /// Never sleeps between rounds: for hooks that poll a device (a NIC's used rings), where
    /// waking only on the next interrupt or timer tick would add milliseconds of latency. CPL3 runs
    /// with interrupts off, so every [`BUSY_CHECK_CYCLES`] the loop opens the interrupt window
    /// once (`sti; hlt; cli`) to take the power button's SCI; a fast local-APIC timer (~260 µs)
    /// keeps a tick pending, so that window returns at once.
    pub fn poll_continuously(&mut self, machine: &Machine) {
        if let Some(madt) = machine.acpi.as_ref().and_then(|a| a.madt) {
            let lapic = LocalApic::new(madt.lapic_addr);
            lapic.enable();
            lapic.start_periodic_timer(VECTOR_TIMER, BUSY_TIMER_COUNT);
            self.sleep = true;
        }
        self.busy = true;
    }

    /// The drivers every long-running scenario services (today the balloon, see
    /// `virtio/balloon.rs`): registered as hooks; a failure is reported, never fatal.
    pub fn attach_drivers(&mut self, machine: &Machine, args: &crate::cmdline::Args<'_>) {
        if let Err(reason) = crate::virtio::balloon::attach(self, machine, args) {
            crate::report!("error balloon reason={reason}");
        }
    }

    /// Runs rounds until a hook says [`Flow::Stop`].
    pub fn run(&mut self) {
        let mut ev = Events {
            console: [0; CONSOLE_BURST],
            console_lsr: [0; CONSOLE_BURST],
            console_len: 0,
            power_button: false,
            nmis: 0,
            round: 0,
        };
        let mut last_window = crate::io::rdtsc();
        loop {
            ev.console_len = 0;
            if self.console {
                while ev.console_len < CONSOLE_BURST {
                    let Some((b, lsr)) = try_read_with_status() else {
                        break;
                    };
                    ev.console[ev.console_len] = b;
                    ev.console_lsr[ev.console_len] = lsr;
                    ev.console_len += 1;
                }
            }
            let ged = crate::cpl0::take_sci_ged_events();
            ev.power_button = core::mem::take(&mut self.pending_press)
                || self.button.is_some_and(|b| b.pressed(ged));
            if let Some(h) = &self.cpus {
                if ged & crate::cpu_hotplug::GED_CPU_HOTPLUG != 0 || ev.round == 0 {
                    h.scan();
                }
            }
            // The NMI handler also ends a pending `hlt`, so an NMI starts a round at once.
            ev.nmis = crate::cpl0::take_nmi_count();
            if self.hooks.dispatch(&mut ev) == Flow::Stop {
                return;
            }
            ev.round += 1;
            // More console input may be waiting behind a full burst: no sleep before reading it.
            if ev.console_len == CONSOLE_BURST {
                continue;
            }
            if self.busy {
                let now = crate::io::rdtsc();
                if self.sleep && now.wrapping_sub(last_window) > BUSY_CHECK_CYCLES {
                    last_window = now;
                    crate::syscall::wait_for_interrupt();
                }
            } else if self.sleep {
                crate::syscall::wait_for_interrupt();
            } else {
                core::hint::spin_loop();
            }
        }
    }
}

/// Routes COM1's interrupt to the BSP; false if there is no IOAPIC for it.
fn route_com1(machine: &Machine) -> bool {
    let Some(madt) = machine.acpi.as_ref().and_then(|a| a.madt) else {
        return false;
    };
    let (gsi, flags) = madt.isa_irq(COM1_IRQ);
    let Some(ioapic) = madt
        .ioapics()
        .iter()
        .filter(|io| io.gsi_base <= gsi)
        .max_by_key(|io| io.gsi_base)
    else {
        return false;
    };
    let regs = IoApic::new(ioapic.addr);
    let pin = gsi - ioapic.gsi_base;
    if pin >= regs.pins() {
        return false;
    }
    let lapic = LocalApic::new(madt.lapic_addr);
    lapic.enable();
    mask_pic();
    // MPS INTI flags; "conforms" (0) on the ISA bus means edge, active high.
    let route = Route {
        vector: VECTOR_COM1,
        level: (flags >> 2) & 3 == 3,
        active_low: flags & 3 == 3,
        dest: lapic.id(),
    };
    regs.route(pin, &route);
    true
}
