//! Delays: the ACPI PM timer (3.579545 MHz, FADT PM_TMR_BLK) when there is one, else the TSC
//! with a conservative frequency guess (waits may then last longer than asked, never shorter on
//! machines up to 4 GHz).

use crate::acpi::Acpi;
use crate::io::{inl, rdtsc};

/// ACPI PM timer frequency in Hz.
const PM_TIMER_HZ: u64 = 3_579_545;
/// Assumed TSC rate when there is no PM timer.
const TSC_GUESS_HZ: u64 = 4_000_000_000;

/// Busy-waits about `us` microseconds (CPL3).
pub fn delay_us(acpi: Option<&Acpi>, us: u64) {
    delay_us_with(acpi.and_then(|a| a.fadt).map_or(0, |f| f.pm_tmr), us);
}

/// Busy-waits about `us` microseconds with the PM timer at port `pm_tmr` (0: the TSC guess).
pub fn delay_us_with(pm_tmr: u32, us: u64) {
    match pm_tmr {
        port @ 1..=0xffff => {
            // The timer is at least 24 bits wide; count elapsed ticks modulo 2^24.
            let ticks = us.saturating_mul(PM_TIMER_HZ) / 1_000_000;
            let mut last = inl(port as u16) & 0xff_ffff;
            let mut elapsed = 0u64;
            while elapsed < ticks {
                let now = inl(port as u16) & 0xff_ffff;
                elapsed += u64::from(now.wrapping_sub(last) & 0xff_ffff);
                last = now;
            }
        }
        _ => {
            let cycles = us.saturating_mul(TSC_GUESS_HZ / 1_000_000);
            let start = rdtsc();
            while rdtsc().wrapping_sub(start) < cycles {
                core::hint::spin_loop();
            }
        }
    }
}
