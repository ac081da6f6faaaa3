//! The pvpanic ISA device (QEMU docs/specs/pvpanic.rst) at port 0x505: reads return the supported events
//! (bit 0 PANICKED, bit 1 CRASH_LOADED); a write with either bit set reports a guest crash.

/// The port.
pub const PORT: u16 = 0x505;
/// Supported events.
pub const EVENTS: u8 = 0b11;

/// Whether a written value reports a crash.
pub fn is_crash(value: u8) -> bool {
    value & EVENTS != 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn bits() {
        assert!(super::is_crash(1));
        assert!(super::is_crash(2));
        assert!(!super::is_crash(0));
        assert!(!super::is_crash(4));
    }
}
