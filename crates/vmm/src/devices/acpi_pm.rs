//! ACPI fixed hardware (the machine model of the crate docs): PM1a event block (PM1_STS/PM1_EN at 0x600/0x602), PM1a control
//! (0x604), the PM timer (0x608, 3.579545 MHz, 32 bits) and the reset register (0xcf9).
//!
//! The power button is the fixed-hardware one (ACPI 6.4 §4.8.2.2.1): the host sets PWRBTN_STS; when
//! PWRBTN_EN is set the SCI (GSI 9) is pulsed — asserted and deasserted at once, because PVM's in-kernel
//! IOAPIC treats a level interrupt as EOI'd at delivery and would deliver a held line twice.

use std::time::Instant;

/// PM1a event block (PM1_STS at +0, PM1_EN at +2).
pub const PM1A_EVT_PORT: u16 = 0x600;
/// PM1a control block.
pub const PM1A_CNT_PORT: u16 = 0x604;
/// PM timer block.
pub const PM_TMR_PORT: u16 = 0x608;
/// Reset register (PCI reset control, 0xcf9).
pub const RESET_PORT: u16 = 0xcf9;
/// Value the FADT tells the guest to write to the reset register.
pub const RESET_VALUE: u8 = 0x06;
/// SCI interrupt (ISA IRQ 9 = GSI 9).
pub const SCI_IRQ: u8 = 9;

/// PM1_STS / PM1_EN: power button bit.
pub const PWRBTN: u16 = 1 << 8;
/// PM1_CNT: SCI_EN (always 1: no SMI_CMD, we are always in ACPI mode).
const SCI_EN: u16 = 1;
/// PM1_CNT: SLP_EN.
const SLP_EN: u16 = 1 << 13;
/// `\_S5_` SLP_TYP in the DSDT.
pub const SLP_TYP_S5: u16 = 5;
/// PM timer frequency.
const PM_TIMER_HZ: u128 = 3_579_545;
/// Writable PM1_STS / PM1_EN bits we model: TMR (0), GBL (5), PWRBTN (8), SLPBTN (9), RTC (10), WAK (15).
const PM1_BITS: u16 = 1 | (1 << 5) | PWRBTN | (1 << 9) | (1 << 10) | (1 << 15);

/// What a guest write asks the machine to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmAction {
    /// Nothing beyond the register update.
    None,
    /// Pulse the SCI.
    RaiseSci,
    /// S5 requested.
    PowerOff,
    /// Reset register written.
    Reset,
}

/// The PM1a registers and timer.
#[derive(Debug)]
pub struct AcpiPm {
    sts: u16,
    en: u16,
    cnt: u16,
    start: Instant,
    log: super::guest_log::GuestLog,
}

impl Default for AcpiPm {
    fn default() -> Self {
        Self::new()
    }
}

impl AcpiPm {
    /// Registers at reset (SCI_EN set).
    pub fn new() -> Self {
        Self {
            sts: 0,
            en: 0,
            cnt: SCI_EN,
            start: Instant::now(),
            log: super::guest_log::GuestLog::new("acpi-pm"),
        }
    }

    /// PM1 status, enable, control and the timer's elapsed time in ns (save state).
    pub fn snapshot(&self) -> [u64; 4] {
        let ns = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        [
            u64::from(self.sts),
            u64::from(self.en),
            u64::from(self.cnt),
            ns,
        ]
    }

    /// Restores what [`AcpiPm::snapshot`] returned; the PM timer continues from its saved value.
    pub fn restore(&mut self, s: [u64; 4]) {
        let reg = |v: u64| u16::try_from(v & 0xffff).unwrap_or(0);
        let [sts, en, cnt, ns] = s;
        self.sts = reg(sts);
        self.en = reg(en);
        self.cnt = reg(cnt);
        self.start = Instant::now()
            .checked_sub(std::time::Duration::from_nanos(ns))
            .unwrap_or_else(Instant::now);
    }

    /// Whether `port` belongs to this device.
    pub fn handles(port: u16) -> bool {
        (PM1A_EVT_PORT..PM_TMR_PORT + 4).contains(&port) || port == RESET_PORT
    }

    /// The host presses the power button: returns whether the SCI must be pulsed now.
    pub fn press_power_button(&mut self) -> PmAction {
        self.sts |= PWRBTN;
        self.sci_if_pending()
    }

    fn sci_if_pending(&self) -> PmAction {
        if self.sts & self.en & PWRBTN != 0 {
            PmAction::RaiseSci
        } else {
            PmAction::None
        }
    }

    fn timer(&self) -> u32 {
        let ticks = self.start.elapsed().as_nanos() * PM_TIMER_HZ / 1_000_000_000;
        u32::try_from(ticks & 0xffff_ffff).unwrap_or(0)
    }

    /// A guest read of `data.len()` bytes at `port`.
    pub fn read(&self, port: u16, data: &mut [u8]) {
        let (base, regs): (u16, [u8; 4]) = match port {
            PM1A_EVT_PORT..=0x603 => {
                let mut r = [0u8; 4];
                r[..2].copy_from_slice(&self.sts.to_le_bytes());
                r[2..].copy_from_slice(&self.en.to_le_bytes());
                (PM1A_EVT_PORT, r)
            }
            PM1A_CNT_PORT..=0x607 => {
                let c = (self.cnt | SCI_EN).to_le_bytes();
                (PM1A_CNT_PORT, [c[0], c[1], 0, 0])
            }
            PM_TMR_PORT..=0x60b => (PM_TMR_PORT, self.timer().to_le_bytes()),
            _ => (port, [0; 4]),
        };
        let off = usize::from(port - base);
        for (i, b) in data.iter_mut().enumerate() {
            *b = regs.get(off + i).copied().unwrap_or(0);
        }
    }

    /// A guest write; returns what the machine must do.
    pub fn write(&mut self, port: u16, data: &[u8]) -> PmAction {
        let mut v = [0u8; 4];
        for (d, s) in v.iter_mut().zip(data) {
            *d = *s;
        }
        let lo = u16::from_le_bytes([v[0], v[1]]);
        let hi = u16::from_le_bytes([v[2], v[3]]);
        match port {
            RESET_PORT => {
                // PCI reset control: bit 2 = reset CPU (0x06 / 0x0e); bit 1 alone only selects the type.
                if v[0] & 0x4 != 0 {
                    PmAction::Reset
                } else {
                    PmAction::None
                }
            }
            PM1A_EVT_PORT => {
                // Status bits are write-1-to-clear; a 32-bit write also sets PM1_EN.
                self.sts &= !(lo & PM1_BITS);
                if data.len() == 4 {
                    self.en = hi & PM1_BITS;
                    return self.sci_if_pending();
                }
                PmAction::None
            }
            0x601 => {
                self.sts &= !((u16::from(v[0]) << 8) & PM1_BITS);
                PmAction::None
            }
            0x602 => {
                self.en = if data.len() >= 2 {
                    lo & PM1_BITS
                } else {
                    (self.en & 0xff00) | u16::from(v[0])
                };
                self.sci_if_pending()
            }
            0x603 => {
                self.en = (self.en & 0x00ff) | ((u16::from(v[0]) << 8) & PM1_BITS);
                self.sci_if_pending()
            }
            PM1A_CNT_PORT | 0x605 => {
                let new = if port == PM1A_CNT_PORT && data.len() >= 2 {
                    lo
                } else if port == PM1A_CNT_PORT {
                    (self.cnt & 0xff00) | u16::from(v[0])
                } else {
                    (self.cnt & 0x00ff) | (u16::from(v[0]) << 8)
                };
                self.cnt = (new & !SLP_EN) | SCI_EN;
                let slp_typ = (new >> 10) & 0x7;
                if new & SLP_EN != 0 {
                    if slp_typ == SLP_TYP_S5 {
                        return PmAction::PowerOff;
                    }
                    self.log.guest_error(&format_args!(
                        "unsupported sleep state SLP_TYP={slp_typ} ignored"
                    ));
                }
                PmAction::None
            }
            _ => PmAction::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s5_poweroff_and_reset() {
        let mut pm = AcpiPm::new();
        assert_eq!(
            pm.write(PM1A_CNT_PORT, &0x3400u16.to_le_bytes()),
            PmAction::PowerOff
        );
        assert_eq!(
            pm.write(PM1A_CNT_PORT, &(0x2000u16 | (3 << 10)).to_le_bytes()),
            PmAction::None
        );
        assert_eq!(pm.write(RESET_PORT, &[0x06]), PmAction::Reset);
        assert_eq!(pm.write(RESET_PORT, &[0x02]), PmAction::None);
        let mut b = [0u8; 2];
        pm.read(PM1A_CNT_PORT, &mut b);
        assert_eq!(u16::from_le_bytes(b) & 1, 1, "SCI_EN reads 1");
    }

    #[test]
    fn power_button_raises_sci_only_when_enabled() {
        let mut pm = AcpiPm::new();
        assert_eq!(pm.press_power_button(), PmAction::None);
        // Enabling PWRBTN_EN while the status is pending raises the SCI.
        assert_eq!(pm.write(0x602, &PWRBTN.to_le_bytes()), PmAction::RaiseSci);
        let mut b = [0u8; 2];
        pm.read(PM1A_EVT_PORT, &mut b);
        assert_eq!(u16::from_le_bytes(b), PWRBTN);
        // Write-1-to-clear.
        pm.write(PM1A_EVT_PORT, &PWRBTN.to_le_bytes());
        pm.read(PM1A_EVT_PORT, &mut b);
        assert_eq!(u16::from_le_bytes(b), 0);
        assert_eq!(pm.press_power_button(), PmAction::RaiseSci);
    }

    #[test]
    fn timer_advances() {
        let pm = AcpiPm::new();
        let mut a = [0u8; 4];
        pm.read(PM_TMR_PORT, &mut a);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let mut b = [0u8; 4];
        pm.read(PM_TMR_PORT, &mut b);
        assert!(u32::from_le_bytes(b).wrapping_sub(u32::from_le_bytes(a)) >= 7000);
    }
}
