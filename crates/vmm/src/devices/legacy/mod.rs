//! Legacy PC devices on port I/O: 16550 UART, i8042 (reset only), CMOS RTC, pvpanic.

pub mod cmos;
pub mod i8042;
pub mod pvpanic;
pub mod serial;
