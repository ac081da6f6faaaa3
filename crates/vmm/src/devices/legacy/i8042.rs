//! The i8042 keyboard controller, reduced to what a PC guest uses to reset the machine: command 0xfe
//! ("pulse output line 0", the CPU reset line) written to port 0x64. No keyboard is attached.

/// Data port.
pub const DATA_PORT: u16 = 0x60;
/// Status / command port.
pub const CMD_PORT: u16 = 0x64;
/// Pulse the reset line.
const CMD_RESET_CPU: u8 = 0xfe;

/// Outcome of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum I8042Action {
    /// Nothing.
    None,
    /// Reset the machine.
    Reset,
}

/// Reads return an empty controller (no output byte pending, no keyboard).
pub fn read(_port: u16) -> u8 {
    0
}

/// Handles a guest write.
pub fn write(port: u16, value: u8) -> I8042Action {
    if port == CMD_PORT && value == CMD_RESET_CPU {
        I8042Action::Reset
    } else {
        I8042Action::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command() {
        assert_eq!(write(CMD_PORT, 0xfe), I8042Action::Reset);
        assert_eq!(write(DATA_PORT, 0xfe), I8042Action::None);
        assert_eq!(write(CMD_PORT, 0x20), I8042Action::None);
        assert_eq!(read(CMD_PORT), 0);
    }
}
