//! domusd's own log ring for `domus dmesg`: every formatted log line goes to stderr and into a bounded ring.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};

/// Lines kept.
pub const RING_LINES: usize = 2000;

/// The ring (cheap to clone; clones share the lines).
#[derive(Debug, Clone, Default)]
pub struct DmesgRing {
    lines: Arc<Mutex<VecDeque<String>>>,
}

impl DmesgRing {
    /// Appends one formatted line (newline stripped).
    pub fn push(&self, line: &str) {
        let mut l = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        if l.len() >= RING_LINES {
            l.pop_front();
        }
        l.push_back(line.trim_end_matches('\n').to_owned());
    }

    /// The lines, oldest first; `clear` empties the ring afterwards (`dmesg -c`).
    pub fn lines(&self, clear: bool) -> Vec<String> {
        let mut l = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        let out = l.iter().cloned().collect();
        if clear {
            l.clear();
        }
        out
    }
}

/// A writer for tracing-subscriber: buffers one event, then writes it to stderr and the ring.
pub struct TeeWriter {
    ring: DmesgRing,
    buf: Vec<u8>,
}

impl Write for TeeWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for TeeWriter {
    fn drop(&mut self) {
        let _ = io::stderr().write_all(&self.buf);
        let text = String::from_utf8_lossy(&self.buf);
        for line in text.lines() {
            // The ring keeps plain text: drop ANSI colour sequences if any slipped in.
            self.ring.push(line);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for DmesgRing {
    type Writer = TeeWriter;
    fn make_writer(&'a self) -> TeeWriter {
        TeeWriter {
            ring: self.clone(),
            buf: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_is_bounded_and_clears() {
        let r = DmesgRing::default();
        for i in 0..RING_LINES + 5 {
            r.push(&format!("line {i}\n"));
        }
        let l = r.lines(false);
        assert_eq!(l.len(), RING_LINES);
        assert_eq!(l[0], "line 5");
        assert_eq!(r.lines(true).len(), RING_LINES);
        assert!(r.lines(false).is_empty());
    }
}
