//! One client connection: its socket, input buffer (framing) and bounded output queue.
//!
//! Input is read into a buffer and cut into messages with [`crate::wire::decode`]: an incomplete message
//! waits for more bytes, a malformed one (payload past 4096 bytes) closes the connection. Output is a queue
//! of encoded messages written with writev; the server stops handling a connection's requests while it has
//! `outstanding` unsent messages (back-pressure), and drops it when its queue passes the byte bound (only
//! watch events can push it there).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};

use mio::net::UnixStream;

use crate::wire::{self, Decoded, WireError};
use crate::{ConnId, DomId};

const READ_CHUNK: usize = 16 * 1024;

/// A client connection.
#[derive(Debug)]
pub struct Connection {
    stream: UnixStream,
    /// The store's id for it.
    pub id: ConnId,
    /// The domain it acts as.
    pub domid: DomId,
    inbuf: Vec<u8>,
    in_pos: usize,
    in_end: usize,
    out: VecDeque<Vec<u8>>,
    out_off: usize,
    out_bytes: usize,
    /// Set while back-pressure holds its requests back.
    pub paused: bool,
    /// Whether writability is being watched (only while output is stuck).
    pub watching_writable: bool,
    /// Whether the server has it on its list of connections with output to send.
    pub listed_dirty: bool,
    /// The connection's span (`conn`, `domid`), entered while its requests are handled.
    pub span: tracing::Span,
}

/// What reading found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadState {
    /// Some bytes arrived; `full` if they filled the read buffer (more may be waiting).
    Data {
        /// The read filled its buffer.
        full: bool,
    },
    /// Socket drained for now.
    WouldBlock,
    /// Peer closed its side.
    Eof,
}

impl Connection {
    /// Wraps an accepted socket.
    pub fn new(stream: UnixStream, id: ConnId, domid: DomId) -> Connection {
        Connection {
            stream,
            id,
            domid,
            inbuf: Vec::new(),
            in_pos: 0,
            in_end: 0,
            out: VecDeque::new(),
            out_off: 0,
            out_bytes: 0,
            paused: false,
            watching_writable: false,
            listed_dirty: false,
            span: tracing::info_span!("conn", conn = id.0, domid = domid.0),
        }
    }

    /// The socket (for registration).
    pub fn stream_mut(&mut self) -> &mut UnixStream {
        &mut self.stream
    }

    /// Next complete message in the input buffer, if any, borrowed from the buffer; call
    /// [`Connection::consume`] with its `consumed` afterwards.
    ///
    /// # Errors
    /// The buffered bytes can never form a valid message.
    pub fn peek_message(&self) -> Result<Decoded<'_>, WireError> {
        wire::decode(&self.inbuf[self.in_pos..self.in_end])
    }

    /// Drops `n` handled bytes from the input.
    pub fn consume(&mut self, n: usize) {
        self.in_pos += n;
        if self.in_pos == self.in_end {
            self.in_pos = 0;
            self.in_end = 0;
        }
    }

    /// Reads what the socket has into the input buffer (allocated once, never re-zeroed).
    ///
    /// # Errors
    /// Socket errors other than would-block.
    pub fn read_some(&mut self) -> io::Result<ReadState> {
        if self.inbuf.is_empty() {
            self.inbuf = vec![0; READ_CHUNK];
        }
        if self.in_pos > 0 && self.in_end == self.inbuf.len() {
            self.inbuf.copy_within(self.in_pos..self.in_end, 0);
            self.in_end -= self.in_pos;
            self.in_pos = 0;
        }
        let room = self.inbuf.len() - self.in_end;
        loop {
            match self.stream.read(&mut self.inbuf[self.in_end..]) {
                Ok(0) => return Ok(ReadState::Eof),
                Ok(n) => {
                    self.in_end += n;
                    return Ok(ReadState::Data { full: n == room });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(ReadState::WouldBlock)
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Queues an encoded message.
    pub fn queue(&mut self, msg: Vec<u8>) {
        self.out_bytes += msg.len();
        self.out.push_back(msg);
    }

    /// Messages waiting to be sent.
    pub fn queued_messages(&self) -> usize {
        self.out.len()
    }

    /// Bytes waiting to be sent.
    pub fn queued_bytes(&self) -> usize {
        self.out_bytes
    }

    /// Writes as much queued output as the socket takes.
    ///
    /// # Errors
    /// Socket errors other than would-block (the peer is gone).
    pub fn write_some(&mut self) -> io::Result<()> {
        while !self.out.is_empty() {
            let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(self.out.len().min(64));
            for (i, m) in self.out.iter().take(64).enumerate() {
                slices.push(IoSlice::new(if i == 0 { &m[self.out_off..] } else { m }));
            }
            let mut n = match self.stream.write_vectored(&slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.out_bytes -= n;
            while n > 0 {
                let Some(front) = self.out.front() else { break };
                let left = front.len() - self.out_off;
                if n >= left {
                    n -= left;
                    self.out.pop_front();
                    self.out_off = 0;
                } else {
                    self.out_off += n;
                    n = 0;
                }
            }
        }
        Ok(())
    }
}
