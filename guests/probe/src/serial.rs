//! The 16550 UART at 0x3f8 (COM1), polled from CPL3, and the `report!` line writer.
//!
//! Every port access from CPL3 is a VM exit (~25 µs under PVM), so output is written in bursts:
//! once LSR.THRE says the transmitter is empty, up to 16 bytes (the FIFO depth) go out without
//! polling again. Lines from several vCPUs never interleave: a spin lock covers a whole line.

use crate::io::{allow_ports, inb, outb, outsb};
use crate::sync::SpinLock;
use core::fmt;

const COM1: u16 = 0x3f8;
const THR: u16 = COM1; // transmit holding / receive buffer
const IER: u16 = COM1 + 1;
const FCR: u16 = COM1 + 2;
const LCR: u16 = COM1 + 3;
const MCR: u16 = COM1 + 4;
const LSR: u16 = COM1 + 5;
const LSR_DATA_READY: u8 = 0x01;
const LSR_THR_EMPTY: u8 = 0x20;
const FIFO_DEPTH: usize = 16;

/// Transmit state: bytes that may still be written before LSR must be polled again.
struct Uart {
    room: usize,
}

static UART: SpinLock<Uart> = SpinLock::new(Uart { room: 0 });

/// Allows the UART's ports and sets 8N1 with FIFOs on and interrupts off.
pub fn init() {
    allow_ports(COM1, 8);
    outb(IER, 0);
    outb(LCR, 0x03);
    outb(FCR, 0x07);
    outb(MCR, 0x03);
}

impl Uart {
    fn put(&mut self, byte: u8) {
        if self.room == 0 {
            while inb(LSR) & LSR_THR_EMPTY == 0 {
                core::hint::spin_loop();
            }
            self.room = FIFO_DEPTH;
        }
        outb(THR, byte);
        self.room -= 1;
    }

    /// Writes `bytes` in FIFO-sized bursts: one LSR poll, then one `rep outsb` per burst.
    fn put_all(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.room == 0 {
                while inb(LSR) & LSR_THR_EMPTY == 0 {
                    core::hint::spin_loop();
                }
                self.room = FIFO_DEPTH;
            }
            let (burst, rest) = bytes.split_at(bytes.len().min(self.room));
            outsb(THR, burst);
            self.room -= burst.len();
            bytes = rest;
        }
    }
}

/// Writes raw bytes to the console (no line lock beyond this call).
pub fn write_bytes(bytes: &[u8]) {
    UART.with(|uart| bytes.iter().for_each(|&b| uart.put(b)));
}

/// Enables the "received data available" interrupt (IER bit 0) and the OUT2 gate that PC
/// hardware puts in front of the UART's IRQ line.
pub fn enable_rx_interrupt() {
    outb(MCR, 0x0b);
    outb(IER, 0x01);
}

/// Breaks the console lock for a fatal report (the faulting code may have held it).
pub fn force_unlock() {
    UART.force_unlock();
}

/// LSR's Break Interrupt bit: the character at the top of the FIFO is a line BREAK's NUL.
pub const LSR_BREAK: u8 = 0x10;

/// Returns a received byte with the line status it arrived with, if one is waiting.
pub fn try_read_with_status() -> Option<(u8, u8)> {
    let lsr = inb(LSR);
    (lsr & LSR_DATA_READY != 0).then(|| (inb(THR), lsr))
}

/// A fixed-size line buffer for `core::fmt` output (over-long lines are cut, never an error).
pub struct LineBuf {
    buf: [u8; 256],
    len: usize,
}

impl LineBuf {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self {
            buf: [0; 256],
            len: 0,
        }
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Writes `PROBE <formatted>\r\n` as one uninterrupted line (CR LF, as a serial console needs: clients such as
/// `domus console` put the terminal in raw mode and pass bytes through unchanged).
pub fn report_line(args: fmt::Arguments<'_>) {
    let mut line = LineBuf::new();
    // LineBuf::write_str never fails; a formatting trait error would only cut the line.
    let _ = fmt::write(&mut line, args);
    UART.with(|uart| {
        uart.put_all(b"PROBE ");
        uart.put_all(line.as_bytes());
        uart.put_all(b"\r\n");
    });
}

/// Prints one machine-readable `PROBE ...` line on the console.
#[macro_export]
macro_rules! report {
    ($($arg:tt)*) => {
        $crate::serial::report_line(format_args!($($arg)*))
    };
}
