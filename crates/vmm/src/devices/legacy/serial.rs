//! The 16550 UART at 0x3f8 / IRQ 4 (vm-superio's `Serial`), with a bounded input queue in front of its
//! 64-byte receive FIFO: console input that arrives faster than the guest reads is held here and fed
//! in as the guest drains the FIFO.
//!
//! A line BREAK (`xl sysrq`: Linux's 8250 driver turns a break followed by a key into SysRq) is added
//! around vm-superio, which has no break condition: a break is a NUL character received with LSR's
//! Break Interrupt bit (BI, bit 4) set — 16550 datasheet: "BI is set whenever the received data input is
//! held in the spacing state for longer than a full word transmission time", a zero character is loaded
//! into the FIFO, and BI is reported while that character is at the top of the FIFO. The break is only
//! fed in when the FIFO is empty, so it is at the top of the FIFO; BI clears when the guest reads it.

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
/// Line status register offset and its bits used here.
const LSR: u8 = 5;
const LSR_DATA_READY: u8 = 0x01;
const LSR_BREAK: u8 = 0x10;
/// "Error in receiver FIFO" (bit 7): set while a break (or parity/framing error) is in the FIFO.
const LSR_FIFO_ERROR: u8 = 0x80;

/// One entry of the input queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    Byte(u8),
    Break,
}

/// Interrupt trigger: an eventfd registered with KVM as an irqfd on GSI 4.
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.write(1)
    }
}

/// A UART's saved state (vm-superio's `SerialState` plus the input queued behind its FIFO).
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct SerialSnapshot {
    /// DLL, DLM, IER, IIR, LCR, LSR, MCR, MSR, SCR.
    pub regs: Vec<u8>,
    /// Receive FIFO.
    pub fifo: Vec<u8>,
    /// Console input not yet in the FIFO.
    pub pending: Vec<u8>,
}

/// The UART plus its pending input.
pub struct SerialDevice<W: Write> {
    uart: Serial<IrqTrigger, NoEvents, W>,
    pending: VecDeque<Input>,
    dropped_input: u64,
    /// The character at the top of the receive FIFO is a break's NUL.
    break_at_head: bool,
}

impl<W: Write> SerialDevice<W> {
    /// A UART raising `irq` and writing to `out`.
    pub fn new(irq: IrqTrigger, out: W) -> Self {
        Self {
            uart: Serial::new(irq, out),
            pending: VecDeque::new(),
            dropped_input: 0,
            break_at_head: false,
        }
    }

    /// The registers, receive FIFO and queued input (a break in the queue is kept as a plain NUL).
    pub fn snapshot(&self) -> SerialSnapshot {
        let st = self.uart.state();
        SerialSnapshot {
            regs: vec![
                st.baud_divisor_low,
                st.baud_divisor_high,
                st.interrupt_enable,
                st.interrupt_identification,
                st.line_control,
                st.line_status,
                st.modem_control,
                st.modem_status,
                st.scratch,
            ],
            fifo: st.in_buffer,
            pending: self
                .pending
                .iter()
                .map(|i| match i {
                    Input::Byte(b) => *b,
                    Input::Break => 0,
                })
                .collect(),
        }
    }

    /// A UART in the state `snap` describes (restore), raising `irq` and writing to `out`.
    ///
    /// # Errors
    /// The snapshot's register list or FIFO is malformed.
    pub fn from_snapshot(irq: IrqTrigger, out: W, snap: &SerialSnapshot) -> Result<Self, String> {
        let [bdl, bdh, ier, iir, lcr, lsr, mcr, msr, scr] = snap.regs[..] else {
            return Err(format!(
                "serial state has {} registers, not 9",
                snap.regs.len()
            ));
        };
        let st = vm_superio::serial::SerialState {
            baud_divisor_low: bdl,
            baud_divisor_high: bdh,
            interrupt_enable: ier,
            interrupt_identification: iir,
            line_control: lcr,
            line_status: lsr,
            modem_control: mcr,
            modem_status: msr,
            scratch: scr,
            in_buffer: snap.fifo.clone(),
        };
        let uart = Serial::from_state(&st, irq, NoEvents, out)
            .map_err(|e| format!("serial state refused: {e:?}"))?;
        Ok(Self {
            uart,
            pending: snap.pending.iter().map(|&b| Input::Byte(b)).collect(),
            dropped_input: 0,
            break_at_head: false,
        })
    }

    /// Puts this UART in the state `snap` describes (a restore whose devices exist before the
    /// image is read), keeping its interrupt line and output.
    ///
    /// # Errors
    /// As [`SerialDevice::from_snapshot`]; the UART is then unchanged.
    pub fn restore(&mut self, snap: &SerialSnapshot) -> Result<(), String>
    where
        W: Clone,
    {
        let irq = self
            .uart
            .interrupt_evt()
            .0
            .try_clone()
            .map(IrqTrigger)
            .map_err(|e| format!("cannot duplicate the UART's eventfd: {e}"))?;
        *self = Self::from_snapshot(irq, self.uart.writer().clone(), snap)?;
        Ok(())
    }

    /// Guest read of register `offset` (0-7).
    pub fn read(&mut self, offset: u8) -> u8 {
        let v = self.uart.read(offset);
        match offset {
            // Reading RBR takes the character at the top of the FIFO (a guest does not read the
            // divisor latch, DLAB's view of offset 0, while receiving).
            0 => {
                self.break_at_head = false;
                self.refill();
                v
            }
            LSR if self.break_at_head && v & LSR_DATA_READY != 0 => v | LSR_BREAK | LSR_FIFO_ERROR,
            _ => v,
        }
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
        self.pending
            .extend(bytes.iter().take(take).map(|&b| Input::Byte(b)));
        self.dropped_input += u64::try_from(bytes.len() - take).unwrap_or(0);
        self.refill();
    }

    /// A line BREAK, then `key` (SysRq for Linux's 8250 console): queued behind earlier input.
    ///
    /// # Errors
    /// The input queue is full.
    pub fn send_break(&mut self, key: u8) -> Result<(), &'static str> {
        if self.pending.len() + 2 > MAX_PENDING_INPUT {
            return Err("the console input queue is full");
        }
        self.pending.push_back(Input::Break);
        self.pending.push_back(Input::Byte(key));
        self.refill();
        Ok(())
    }

    /// Input bytes dropped because the queue was full.
    pub fn dropped_input(&self) -> u64 {
        self.dropped_input
    }

    /// Moves queued input into the FIFO: bytes up to the next break; a break only into an empty FIFO
    /// (so that its NUL is at the top, where BI describes it).
    fn refill(&mut self) {
        if self.break_at_head {
            return;
        }
        let mut room = self.uart.fifo_capacity();
        if room == 0 || self.pending.is_empty() {
            return;
        }
        let empty = self.uart.read(LSR) & LSR_DATA_READY == 0;
        if empty && self.pending.front() == Some(&Input::Break) {
            self.pending.pop_front();
            if let Err(e) = self.uart.enqueue_raw_bytes(&[0]) {
                tracing::debug!(error = ?e, "serial break enqueue failed");
                return;
            }
            self.break_at_head = true;
            return;
        }
        let mut chunk = Vec::new();
        while room > 0 {
            match self.pending.front() {
                Some(Input::Byte(b)) => {
                    chunk.push(*b);
                    self.pending.pop_front();
                    room -= 1;
                }
                Some(Input::Break) | None => break,
            }
        }
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

    #[test]
    fn break_is_a_nul_with_bi_at_the_top_of_the_fifo_then_the_key() {
        let mut s = SerialDevice::new(
            IrqTrigger(EventFd::new(libc::EFD_NONBLOCK).unwrap()),
            Vec::new(),
        );
        s.enqueue_input(b"ab");
        s.send_break(b'h').unwrap();
        // Earlier input first, without BI.
        for want in [b'a', b'b'] {
            assert_eq!(s.read(5) & (LSR_DATA_READY | LSR_BREAK), LSR_DATA_READY);
            assert_eq!(s.read(0), want);
        }
        // Then the break: NUL with BI (and the FIFO error bit), reported on every LSR read until read.
        assert_eq!(s.read(5) & 0x91, 0x91);
        assert_eq!(s.read(5) & 0x91, 0x91);
        assert_eq!(s.read(0), 0);
        // Then the key, a plain character.
        assert_eq!(s.read(5) & (LSR_DATA_READY | LSR_BREAK), LSR_DATA_READY);
        assert_eq!(s.read(0), b'h');
        assert_eq!(s.read(5) & LSR_DATA_READY, 0);
    }
}
