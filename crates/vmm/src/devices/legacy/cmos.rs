//! CMOS RTC (MC146818) at ports 0x70 (index, bit 7 = NMI mask) / 0x71 (data): the time-of-day registers
//! report the host's UTC time in BCD, 24-hour mode; the other 128 bytes of CMOS RAM are plain storage.

use std::time::{SystemTime, UNIX_EPOCH};

/// Index port.
pub const INDEX_PORT: u16 = 0x70;
/// Data port.
pub const DATA_PORT: u16 = 0x71;

/// The CMOS chip.
#[derive(Debug)]
pub struct Cmos {
    index: u8,
    ram: [u8; 128],
}

impl Default for Cmos {
    fn default() -> Self {
        Self::new()
    }
}

fn bcd(v: u64) -> u8 {
    let v = u8::try_from(v % 100).unwrap_or(0);
    ((v / 10) << 4) | (v % 10)
}

/// (year, month, day) from days since 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u64::try_from(m).unwrap_or(1),
        u64::try_from(d).unwrap_or(1),
    )
}

impl Cmos {
    /// A CMOS with empty RAM.
    pub fn new() -> Self {
        Self {
            index: 0,
            ram: [0; 128],
        }
    }

    /// The index register and RAM (save state).
    pub fn snapshot(&self) -> (u8, Vec<u8>) {
        (self.index, self.ram.to_vec())
    }

    /// Restores what [`Cmos::snapshot`] returned (a RAM image of another size is cut or padded).
    pub fn restore(&mut self, index: u8, ram: &[u8]) {
        self.index = index;
        for (d, s) in self
            .ram
            .iter_mut()
            .zip(ram.iter().chain(std::iter::repeat(&0)))
        {
            *d = *s;
        }
    }

    /// Guest read.
    pub fn read(&self, port: u16) -> u8 {
        if port == INDEX_PORT {
            return self.index;
        }
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let days = i64::try_from(secs / 86_400).unwrap_or(0);
        let tod = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        let year = u64::try_from(year).unwrap_or(2000);
        match self.index {
            0x00 => bcd(tod % 60),
            0x02 => bcd(tod / 60 % 60),
            0x04 => bcd(tod / 3600),
            0x06 => bcd(u64::try_from((days + 4).rem_euclid(7)).unwrap_or(0) + 1),
            0x07 => bcd(day),
            0x08 => bcd(month),
            0x09 => bcd(year % 100),
            0x32 => bcd(year / 100),
            0x0a => 0x26, // divider on, 1024 Hz, update not in progress
            0x0b => 0x02, // 24-hour mode, BCD, no interrupts
            0x0c => 0,
            0x0d => 0x80, // valid RAM and time
            i => self.ram.get(usize::from(i)).copied().unwrap_or(0),
        }
    }

    /// Guest write.
    pub fn write(&mut self, port: u16, value: u8) {
        if port == INDEX_PORT {
            self.index = value & 0x7f;
        } else if let Some(r) = self.ram.get_mut(usize::from(self.index)) {
            *r = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn registers() {
        let mut c = Cmos::new();
        c.write(INDEX_PORT, 0x8d);
        assert_eq!(c.read(INDEX_PORT), 0x0d);
        assert_eq!(c.read(DATA_PORT), 0x80);
        c.write(INDEX_PORT, 0x32);
        assert!(c.read(DATA_PORT) >= 0x20);
        c.write(INDEX_PORT, 0x40);
        c.write(DATA_PORT, 0x5a);
        assert_eq!(c.read(DATA_PORT), 0x5a);
    }
}
