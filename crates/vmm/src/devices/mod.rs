//! The machine's port-I/O devices and the dispatch of vCPU I/O exits to them.
//!
//! The in-kernel irqchip and PIT handle 0x20/0xa0/0x40-0x43/0x61/0x4d0 themselves; everything else that
//! exits to us lands in [`Devices::pio_read`] / [`Devices::pio_write`]. Unknown ports read as all ones
//! and ignore writes, like an empty ISA bus. A guest write can end the domain: that comes back as a
//! [`PioAction::Stop`] with the outcome.

pub mod acpi_pm;
pub mod cpu_hotplug;
pub mod guest_log;
pub mod legacy;
pub mod virtio;

use std::sync::{Arc, Mutex, MutexGuard};

use acpi_pm::{AcpiPm, PmAction};
use legacy::cmos::Cmos;
use legacy::serial::{SerialDevice, COM1_PORT};
use legacy::{i8042, pvpanic};

use crate::console::ConsoleSink;
use crate::outcome::{Outcome, Reason};

/// The result of a guest port write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PioAction {
    /// Keep running.
    Continue,
    /// The guest stopped the machine.
    Stop(Outcome),
}

/// The port devices' saved state.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LegacySnapshot {
    /// The 16550.
    pub serial: legacy::serial::SerialSnapshot,
    /// CMOS index register.
    pub cmos_index: u8,
    /// CMOS RAM.
    pub cmos_ram: Vec<u8>,
    /// ACPI PM1 status, enable, control, timer ns.
    pub acpi_pm: [u64; 4],
    /// The CPU hotplug register block and GED (absent in images of machines without it).
    #[serde(default)]
    pub cpu_hotplug: Option<cpu_hotplug::CpuHotplugSnapshot>,
}

/// Pulses the SCI line (GSI 9).
pub type SciLine = Box<dyn Fn() + Send + Sync>;

/// Parks the thread of a vCPU the guest ejected.
pub type EjectHook = Box<dyn Fn(u32) + Send + Sync>;

/// The CPU hotplug register block, the GED's interrupt line and what to do on an eject.
struct Hotplug {
    state: Mutex<cpu_hotplug::CpuHotplug>,
    ged: SciLine,
    on_eject: EjectHook,
}

/// All port-I/O devices (and the MMIO ones the vCPU threads serve: virtio, CPU hotplug).
pub struct Devices {
    serial: Mutex<SerialDevice<ConsoleSink>>,
    cmos: Mutex<Cmos>,
    pm: Mutex<AcpiPm>,
    sci: SciLine,
    virtio: Vec<Arc<virtio::mmio::MmioTransport>>,
    hotplug: Option<Hotplug>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Device state stays consistent across a panic elsewhere (the VMM aborts on panic anyway).
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Devices {
    /// The device set around a UART and an SCI line.
    pub fn new(serial: SerialDevice<ConsoleSink>, sci: SciLine) -> Self {
        Self {
            serial: Mutex::new(serial),
            cmos: Mutex::new(Cmos::new()),
            pm: Mutex::new(AcpiPm::new()),
            sci,
            virtio: Vec::new(),
            hotplug: None,
        }
    }

    /// Adds the CPU hotplug register block and GED: `ged` pulses the GED's GSI, `on_eject` parks
    /// the thread of a vCPU the guest ejected.
    #[must_use]
    pub fn with_cpu_hotplug(
        mut self,
        state: cpu_hotplug::CpuHotplug,
        ged: SciLine,
        on_eject: EjectHook,
    ) -> Self {
        self.hotplug = Some(Hotplug {
            state: Mutex::new(state),
            ged,
            on_eject,
        });
        self
    }

    /// The CPU hotplug state (to plan and mark insertions and removals), if the machine has it.
    pub fn cpu_hotplug(&self) -> Option<MutexGuard<'_, cpu_hotplug::CpuHotplug>> {
        self.hotplug.as_ref().map(|h| lock(&h.state))
    }

    /// Pulses the GED interrupt (after queuing an event in the register block).
    pub fn raise_ged(&self) {
        if let Some(h) = &self.hotplug {
            (h.ged)();
        }
    }

    /// The hotplug device and the offset inside it, for an MMIO address in one of its windows:
    /// (`true` = GED window, else the CPU register block).
    fn hotplug_window(&self, addr: u64) -> Option<(&Hotplug, bool, u64)> {
        use cpu_hotplug::{CPU_HP_ADDR, CPU_HP_SIZE, GED_ADDR, GED_SIZE};
        let h = self.hotplug.as_ref()?;
        if (GED_ADDR..GED_ADDR + GED_SIZE).contains(&addr) {
            Some((h, true, addr - GED_ADDR))
        } else if (CPU_HP_ADDR..CPU_HP_ADDR + CPU_HP_SIZE).contains(&addr) {
            Some((h, false, addr - CPU_HP_ADDR))
        } else {
            None
        }
    }

    /// Adds the virtio-mmio transports, slot order (slot i at `virtio::slot_base(i)`).
    #[must_use]
    pub fn with_virtio(mut self, transports: Vec<Arc<virtio::mmio::MmioTransport>>) -> Self {
        self.virtio = transports;
        self
    }

    fn virtio_slot(&self, addr: u64) -> Option<(&virtio::mmio::MmioTransport, u64)> {
        let off = addr.checked_sub(virtio::WINDOW_BASE)?;
        let slot = usize::try_from(off / virtio::SLOT_SIZE).ok()?;
        self.virtio
            .get(slot)
            .map(|t| (&**t, off % virtio::SLOT_SIZE))
    }

    /// A guest MMIO read outside RAM and the in-kernel devices: a virtio slot, else open bus.
    pub fn mmio_read(&self, addr: u64, data: &mut [u8]) {
        if let Some((h, ged, off)) = self.hotplug_window(addr) {
            let mut st = lock(&h.state);
            if ged {
                st.ged_read(off, data);
            } else {
                st.read(off, data);
            }
            return;
        }
        match self.virtio_slot(addr) {
            Some((t, off)) => t.read(off, data),
            None => data.fill(0xff),
        }
    }

    /// A guest MMIO write outside RAM and the in-kernel devices.
    pub fn mmio_write(&self, addr: u64, data: &[u8]) {
        if let Some((h, ged, off)) = self.hotplug_window(addr) {
            if ged {
                return;
            }
            let action = lock(&h.state).write(off, data);
            if let cpu_hotplug::HotplugAction::Ejected(id) = action {
                (h.on_eject)(id);
            }
            return;
        }
        if let Some((t, off)) = self.virtio_slot(addr) {
            t.write(off, data);
        }
    }

    /// A guest `in`.
    pub fn pio_read(&self, port: u16, data: &mut [u8]) {
        let first = match port {
            COM1_PORT..=0x3ff => {
                Some(lock(&self.serial).read(u8::try_from(port - COM1_PORT).unwrap_or(0)))
            }
            i8042::DATA_PORT | i8042::CMD_PORT => Some(i8042::read(port)),
            legacy::cmos::INDEX_PORT | legacy::cmos::DATA_PORT => Some(lock(&self.cmos).read(port)),
            pvpanic::PORT => Some(pvpanic::EVENTS),
            p if AcpiPm::handles(p) => {
                lock(&self.pm).read(port, data);
                return;
            }
            _ => None,
        };
        match first {
            Some(v) => {
                data.fill(0);
                if let Some(b) = data.first_mut() {
                    *b = v;
                }
            }
            None => data.fill(0xff),
        }
    }

    /// A guest `out`.
    pub fn pio_write(&self, port: u16, data: &[u8]) -> PioAction {
        let v = data.first().copied().unwrap_or(0);
        match port {
            COM1_PORT..=0x3ff => {
                lock(&self.serial).write(u8::try_from(port - COM1_PORT).unwrap_or(0), v)
            }
            i8042::DATA_PORT | i8042::CMD_PORT
                if i8042::write(port, v) == i8042::I8042Action::Reset =>
            {
                return PioAction::Stop(Outcome::new(
                    Reason::Reboot,
                    "i8042 reset (0xfe to port 0x64)",
                ));
            }
            legacy::cmos::INDEX_PORT | legacy::cmos::DATA_PORT => lock(&self.cmos).write(port, v),
            pvpanic::PORT if pvpanic::is_crash(v) => {
                return PioAction::Stop(Outcome::new(
                    Reason::Crash,
                    format!("pvpanic event {v:#x}"),
                ));
            }
            p if AcpiPm::handles(p) => {
                let action = lock(&self.pm).write(port, data);
                return self.pm_action(action);
            }
            _ => {}
        }
        PioAction::Continue
    }

    fn pm_action(&self, action: PmAction) -> PioAction {
        match action {
            PmAction::None => PioAction::Continue,
            PmAction::RaiseSci => {
                (self.sci)();
                PioAction::Continue
            }
            PmAction::PowerOff => PioAction::Stop(Outcome::new(
                Reason::Poweroff,
                "ACPI S5 (PM1a_CNT SLP_TYP=5)",
            )),
            PmAction::Reset => PioAction::Stop(Outcome::new(
                Reason::Reboot,
                "ACPI reset register (0x06 to port 0xcf9)",
            )),
        }
    }

    /// The host presses the ACPI power button.
    pub fn power_button(&self) {
        let action = lock(&self.pm).press_power_button();
        if action == PmAction::RaiseSci {
            (self.sci)();
        }
    }

    /// A serial line BREAK followed by `key` (`xl sysrq`).
    ///
    /// # Errors
    /// The console input queue is full.
    pub fn serial_break(&self, key: u8) -> Result<(), &'static str> {
        lock(&self.serial).send_break(key)
    }

    /// The port devices' save state (i8042 and pvpanic have none).
    pub fn snapshot(&self) -> LegacySnapshot {
        let (cmos_index, cmos_ram) = lock(&self.cmos).snapshot();
        LegacySnapshot {
            serial: lock(&self.serial).snapshot(),
            cmos_index,
            cmos_ram,
            acpi_pm: lock(&self.pm).snapshot(),
            cpu_hotplug: self.cpu_hotplug().map(|h| h.snapshot()),
        }
    }

    /// Restores the CMOS, ACPI PM and CPU hotplug state (the UART is built from its state: see
    /// [`SerialDevice::from_snapshot`]).
    ///
    /// # Errors
    /// The image's CPU hotplug block does not fit this machine (another `maxvcpus`, or one side
    /// without it).
    pub fn restore(&self, s: &LegacySnapshot) -> Result<(), String> {
        lock(&self.cmos).restore(s.cmos_index, &s.cmos_ram);
        lock(&self.pm).restore(s.acpi_pm);
        match (s.cpu_hotplug.as_ref(), self.cpu_hotplug()) {
            (Some(snap), Some(mut hp)) => hp.restore(snap),
            (None, None) => Ok(()),
            (Some(_), None) => Err("the image has CPU hotplug, this machine has not".into()),
            // An image from before CPU hotplug: the boot CPUs stay as configured.
            (None, Some(_)) => Ok(()),
        }
    }

    /// Puts the UART in the image's state (a machine built before its image was read).
    ///
    /// # Errors
    /// The image's UART state is malformed.
    pub fn restore_serial(&self, s: &legacy::serial::SerialSnapshot) -> Result<(), String> {
        lock(&self.serial).restore(s)
    }

    /// The virtio-mmio transports, slot order.
    pub fn virtio(&self) -> &[Arc<virtio::mmio::MmioTransport>] {
        &self.virtio
    }

    /// Bytes typed on the console.
    pub fn console_input(&self, bytes: &[u8]) {
        lock(&self.serial).enqueue_input(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::ConsoleHub;
    use legacy::serial::IrqTrigger;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use vmm_sys_util::eventfd::EventFd;

    fn devices() -> (Devices, Arc<AtomicU32>, ConsoleHub) {
        let hub = ConsoleHub::new(false);
        let serial = SerialDevice::new(
            IrqTrigger(EventFd::new(libc::EFD_NONBLOCK).unwrap()),
            ConsoleSink(hub.clone()),
        );
        let pulses = Arc::new(AtomicU32::new(0));
        let p = pulses.clone();
        let d = Devices::new(
            serial,
            Box::new(move || {
                p.fetch_add(1, Ordering::SeqCst);
            }),
        );
        (d, pulses, hub)
    }

    #[test]
    fn outcomes_from_ports() {
        let (d, _, _) = devices();
        assert_eq!(
            d.pio_write(0x64, &[0xfe]),
            PioAction::Stop(Outcome::new(
                Reason::Reboot,
                "i8042 reset (0xfe to port 0x64)"
            ))
        );
        assert!(matches!(
            d.pio_write(0x505, &[1]),
            PioAction::Stop(Outcome {
                reason: Reason::Crash,
                ..
            })
        ));
        assert!(matches!(
            d.pio_write(0x604, &0x3400u16.to_le_bytes()),
            PioAction::Stop(Outcome {
                reason: Reason::Poweroff,
                ..
            })
        ));
        assert!(matches!(
            d.pio_write(0xcf9, &[6]),
            PioAction::Stop(Outcome {
                reason: Reason::Reboot,
                ..
            })
        ));
        assert_eq!(d.pio_write(0x80, &[1]), PioAction::Continue);
        let mut b = [0u8; 1];
        d.pio_read(0x505, &mut b);
        assert_eq!(b[0], 3);
        let mut w = [0u8; 4];
        d.pio_read(0xcfc, &mut w);
        assert_eq!(w, [0xff; 4]);
    }

    #[test]
    fn power_button_pulses_sci_when_enabled() {
        let (d, pulses, _) = devices();
        d.power_button();
        assert_eq!(pulses.load(Ordering::SeqCst), 0);
        d.pio_write(0x600, &0x100u16.to_le_bytes());
        d.pio_write(0x602, &0x100u16.to_le_bytes());
        d.power_button();
        assert_eq!(pulses.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn serial_output_reaches_console() {
        let (d, _, hub) = devices();
        d.pio_write(0x3f8, b"h");
        d.pio_write(0x3f8, b"i");
        assert_eq!(hub.stats().0, 2);
    }
}
