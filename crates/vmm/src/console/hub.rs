//! The console hub: the UART writes into it (from a vCPU thread); the main loop adds clients, feeds
//! their input to the UART and flushes what they could not take at once.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{BACKLOG_BYTES, CLIENT_QUEUE_BYTES};

/// A connected console client.
struct Client {
    id: u64,
    stream: UnixStream,
    queue: VecDeque<u8>,
}

impl Client {
    /// Writes as much of the queue as the socket takes now; `false` if the client is gone.
    fn flush(&mut self) -> bool {
        while !self.queue.is_empty() {
            let (a, _) = self.queue.as_slices();
            match self.stream.write(a) {
                Ok(0) => return false,
                Ok(n) => {
                    self.queue.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }
}

fn push_bounded(q: &mut VecDeque<u8>, bytes: &[u8], cap: usize) -> u64 {
    q.extend(bytes);
    let over = q.len().saturating_sub(cap);
    q.drain(..over);
    u64::try_from(over).unwrap_or(u64::MAX)
}

#[derive(Default)]
struct Inner {
    backlog: VecDeque<u8>,
    stdout: bool,
    pty: Option<File>,
    clients: Vec<Client>,
    next_id: u64,
    dropped_bytes: u64,
    total_bytes: u64,
}

/// Shared console state (cheap to clone).
#[derive(Clone, Default)]
pub struct ConsoleHub {
    inner: Arc<Mutex<Inner>>,
}

impl ConsoleHub {
    /// A hub that also copies output to stdout when `stdout` is set.
    pub fn new(stdout: bool) -> Self {
        let hub = Self::default();
        hub.lock().stdout = stdout;
        hub
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a thread panicked mid-write; the byte queues are still consistent.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The output backlog (what a newly attached client is sent first), for a snapshot.
    pub fn backlog(&self) -> Vec<u8> {
        self.lock().backlog.iter().copied().collect()
    }

    /// Puts a saved backlog back (restore): later clients see it first; nothing is written now.
    pub fn restore_backlog(&self, bytes: &[u8]) {
        let mut g = self.lock();
        g.backlog.clear();
        push_bounded(&mut g.backlog, bytes, BACKLOG_BYTES);
    }

    /// Attaches a pty master for output.
    pub fn set_pty(&self, master: File) {
        self.lock().pty = Some(master);
    }

    /// Guest output.
    pub fn output(&self, bytes: &[u8]) {
        let mut g = self.lock();
        let inner = &mut *g;
        inner.total_bytes += u64::try_from(bytes.len()).unwrap_or(0);
        push_bounded(&mut inner.backlog, bytes, BACKLOG_BYTES);
        if inner.stdout {
            let mut out = io::stdout().lock();
            // Best effort: a closed stdout must not stop the guest.
            let _ignored = out.write_all(bytes).and_then(|()| out.flush());
        }
        if let Some(pty) = &mut inner.pty {
            // Non-blocking: with nobody reading the pty, output is dropped (the backlog still has it).
            let _ignored = pty.write(bytes);
        }
        let mut dropped = 0;
        inner.clients.retain_mut(|c| {
            dropped += push_bounded(&mut c.queue, bytes, CLIENT_QUEUE_BYTES);
            c.flush()
        });
        inner.dropped_bytes += dropped;
    }

    /// A new client: it gets the backlog first. Returns its id.
    ///
    /// # Errors
    /// The socket cannot be made non-blocking.
    pub fn add_client(&self, stream: UnixStream) -> io::Result<u64> {
        stream.set_nonblocking(true)?;
        let mut g = self.lock();
        let id = g.next_id;
        g.next_id += 1;
        let mut c = Client {
            id,
            stream,
            queue: g.backlog.clone(),
        };
        if c.flush() {
            g.clients.push(c);
        }
        Ok(id)
    }

    /// A clone of client `id`'s stream, for reading its input.
    pub fn client_stream(&self, id: u64) -> Option<UnixStream> {
        self.lock()
            .clients
            .iter()
            .find(|c| c.id == id)
            .and_then(|c| c.stream.try_clone().ok())
    }

    /// Drops client `id`.
    pub fn remove_client(&self, id: u64) {
        self.lock().clients.retain(|c| c.id != id);
    }

    /// Retries queued output; returns whether any client still has bytes queued.
    pub fn flush_clients(&self) -> bool {
        let mut g = self.lock();
        g.clients.retain_mut(Client::flush);
        g.clients.iter().any(|c| !c.queue.is_empty())
    }

    /// Reads input from a pty master (non-blocking).
    pub fn read_pty(&self, buf: &mut [u8]) -> Option<usize> {
        let mut g = self.lock();
        let pty = g.pty.as_mut()?;
        pty.read(buf).ok()
    }

    /// Output bytes seen and bytes dropped for slow clients.
    pub fn stats(&self) -> (u64, u64) {
        let g = self.lock();
        (g.total_bytes, g.dropped_bytes)
    }
}

/// The UART's `Write` end.
#[derive(Clone)]
pub struct ConsoleSink(pub ConsoleHub);

impl Write for ConsoleSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.output(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_is_bounded_and_replayed() {
        let hub = ConsoleHub::new(false);
        let chunk = vec![b'a'; 1000];
        for _ in 0..200 {
            hub.output(&chunk);
        }
        hub.output(b"END");
        assert_eq!(hub.lock().backlog.len(), BACKLOG_BYTES);
        let (a, mut b) = UnixStream::pair().unwrap();
        hub.add_client(a).unwrap();
        let mut got = vec![0u8; BACKLOG_BYTES];
        b.read_exact(&mut got).unwrap();
        assert!(got.ends_with(b"END"));
        hub.output(b"live");
        let mut live = [0u8; 4];
        b.read_exact(&mut live).unwrap();
        assert_eq!(&live, b"live");
    }

    #[test]
    fn slow_client_queue_is_bounded() {
        let hub = ConsoleHub::new(false);
        let (a, _b) = UnixStream::pair().unwrap();
        hub.add_client(a).unwrap();
        let chunk = vec![b'z'; 64 * 1024];
        for _ in 0..40 {
            hub.output(&chunk);
        }
        let g = hub.lock();
        assert!(g.clients[0].queue.len() <= CLIENT_QUEUE_BYTES);
        assert!(g.dropped_bytes > 0);
    }
}
