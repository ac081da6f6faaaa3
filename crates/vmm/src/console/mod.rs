//! Where the guest's console (the 16550) goes, and where its input comes from (`--console`).
//!
//! - `stdio`: output to our stdout, input from our stdin.
//! - `pty`: a pseudo-terminal; its path is printed on stderr (`console pty: /dev/pts/N`).
//! - `unix:PATH`: we listen on PATH; any number of clients may connect at any time. Each first receives
//!   the backlog (the last [`BACKLOG_BYTES`] of output), then live output; what a client sends is typed
//!   into the UART.
//!
//! Memory is bounded whatever the guest or the clients do: the backlog is a fixed-size ring, and each
//! client has at most [`CLIENT_QUEUE_BYTES`] queued; a client that falls further behind loses the oldest
//! bytes (counted) rather than stalling the guest.

pub mod hub;

use std::path::PathBuf;
use std::str::FromStr;

pub use hub::{ConsoleHub, ConsoleSink};

/// Output kept for late clients.
pub const BACKLOG_BYTES: usize = 64 * 1024;
/// Output queued per slow client.
pub const CLIENT_QUEUE_BYTES: usize = 256 * 1024;

/// The `--console` choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleMode {
    /// Our stdin/stdout.
    Stdio,
    /// A new pseudo-terminal.
    Pty,
    /// A listening unix socket at this path.
    Unix(PathBuf),
}

/// A `--console` value that is none of the accepted forms.
#[derive(Debug, thiserror::Error)]
#[error("bad --console value {0:?}: expected stdio, pty or unix:PATH")]
pub struct ConsoleModeError(String);

impl FromStr for ConsoleMode {
    type Err = ConsoleModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stdio" => Ok(Self::Stdio),
            "pty" => Ok(Self::Pty),
            _ => match s.strip_prefix("unix:") {
                Some(p) if !p.is_empty() => Ok(Self::Unix(PathBuf::from(p))),
                _ => Err(ConsoleModeError(s.to_owned())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_modes() {
        assert_eq!("stdio".parse::<ConsoleMode>().unwrap(), ConsoleMode::Stdio);
        assert_eq!("pty".parse::<ConsoleMode>().unwrap(), ConsoleMode::Pty);
        assert_eq!(
            "unix:/tmp/c.sock".parse::<ConsoleMode>().unwrap(),
            ConsoleMode::Unix("/tmp/c.sock".into())
        );
        assert!("unix:".parse::<ConsoleMode>().is_err());
        assert!("tcp:1".parse::<ConsoleMode>().is_err());
    }
}
