//! The 16550 UART at 0x3f8 / IRQ 4 (vm-superio's `Serial`), with a bounded input queue in front of its
//! 64-byte receive FIFO: console input that arrives faster than the guest reads is held here and fed
//! in as the guest drains the FIFO.

use std::collections::VecDeque;
use std::io::Write;

use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

/// Base port.
pub const COM1_PORT: u16 = 0x3f8;
/// ISA IRQ / GSI.
pub const COM1_IRQ: u32 = 4;
/// Input bytes held beyond the FIFO; more is dropped (a client cannot grow our memory).
const MAX_PENDING_INPUT: usize = 64 * 1024;

/// Interrupt trigger: an eventfd registered with KVM as an irqfd on GSI 4.
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.write(1)
    }
}

/// The UART plus its pending input.
pub struct SerialDevice<W: Write> {
    uart: Serial<IrqTrigger, NoEvents, W>,
    pending: VecDeque<u8>,
    dropped_input: u64,
}

impl<W: Write> SerialDevice<W> {
    /// A UART raising `irq` and writing to `out`.
    pub fn new(irq: IrqTrigger, out: W) -> Self {
        Self {
            uart: Serial::new(irq, out),
            pending: VecDeque::new(),
            dropped_input: 0,
        }
    }

    /// Guest read of register `offset` (0-7).
    pub fn read(&mut self, offset: u8) -> u8 {
        let v = self.uart.read(offset);
        if offset == 0 {
            self.refill();
        }
        v
    }

    /// Guest write of register `offset`.
    pub fn write(&mut self, offset: u8, value: u8) {
        if let Err(e) = self.uart.write(offset, value) {
            tracing::debug!(error = ?e, "serial write failed");
        }
    }

    /// Bytes typed on the console, for the guest to read.
    pub fn enqueue_input(&mut self, bytes: &[u8]) {
        let room = MAX_PENDING_INPUT.saturating_sub(self.pending.len());
        let take = bytes.len().min(room);
        self.pending.extend(bytes.iter().take(take));
        self.dropped_input += u64::try_from(bytes.len() - take).unwrap_or(0);
        self.refill();
    }

    /// Input bytes dropped because the queue was full.
    pub fn dropped_input(&self) -> u64 {
        self.dropped_input
    }

    fn refill(&mut self) {
        let room = self.uart.fifo_capacity();
        if room == 0 || self.pending.is_empty() {
            return;
        }
        let n = room.min(self.pending.len());
        let chunk: Vec<u8> = self.pending.drain(..n).collect();
        if let Err(e) = self.uart.enqueue_raw_bytes(&chunk) {
            tracing::debug!(error = ?e, "serial input enqueue failed");
        }
    }

    /// The output sink.
    pub fn writer(&self) -> &W {
        self.uart.writer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_bounded_input() {
        let mut s = SerialDevice::new(
            IrqTrigger(EventFd::new(libc::EFD_NONBLOCK).unwrap()),
            Vec::new(),
        );
        s.write(0, b'A');
        assert_eq!(s.writer(), &b"A".to_vec());
        let big = vec![b'x'; MAX_PENDING_INPUT + 1000];
        s.enqueue_input(&big);
        assert_eq!(s.dropped_input(), 1000);
        // Guest reads drain the FIFO and pull more from the pending queue.
        let mut got = 0;
        while got < 2000 && s.read(5) & 1 != 0 {
            assert_eq!(s.read(0), b'x');
            got += 1;
        }
        assert_eq!(got, 2000);
    }
}
