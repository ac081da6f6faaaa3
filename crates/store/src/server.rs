//! The socket server: accept loop, connection limit, batching, graceful shutdown.
//!
//! One thread runs a mio (epoll) loop over the listening sockets and every connection, and owns the
//! [`Store`]. Each turn of the loop:
//! 1. reads whatever arrived and handles every complete request (replies are queued, not sent);
//! 2. routes the watch events those requests fired to the watchers' queues, in commit order;
//! 3. hands the turn's journal records to write(2) ([`Store::flush`]) — only then
//! 4. writes the queued replies and events to the sockets.
//!
//! So no reply ever leaves before its change is in the journal, and a burst of requests costs one journal
//! write. If the journal cannot be written (disk full, I/O error) the server stops with that error instead
//! of acknowledging changes it could not record. Connections on the `sockets` act as dom0; those on `domain_sockets` act as the given domain
//! (permissions and quotas apply), which is how tests and local tools stand in for a guest. A connection
//! with `outstanding` unsent messages is not read until they drain; one whose queue passes
//! `max_output_bytes` (a watcher that never reads its events) is dropped. [`ServerHandle::shutdown`] stops
//! the loop, writes and fdatasyncs the journal, and removes the socket files.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mio::net::UnixListener;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::connection::{Connection, ReadState};
use crate::quota::Quotas;
use crate::store::Store;
use crate::wire::Decoded;
use crate::{ConnId, DomId, StoreError};

/// Unsent messages after which a privileged connection's requests wait (unprivileged ones use the
/// `outstanding` quota).
const PRIVILEGED_OUTSTANDING: usize = 256;
const WAKER: Token = Token(usize::MAX);

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the journal and snapshot live.
    pub state_dir: PathBuf,
    /// Sockets whose clients act as dom0.
    pub sockets: Vec<PathBuf>,
    /// Sockets whose clients act as the given domain.
    pub domain_sockets: Vec<(DomId, PathBuf)>,
    /// Quotas for unprivileged domains.
    pub quotas: Quotas,
    /// Most simultaneous connections; more are closed right after accept (default 1024).
    pub max_connections: usize,
    /// Most bytes queued for one connection before it is dropped (default 4 MiB).
    pub max_output_bytes: usize,
    /// Journal size that triggers compaction into a snapshot, at least (default 8 MiB).
    pub compact_min_bytes: u64,
}

impl ServerConfig {
    /// A configuration with defaults for everything but the state directory and dom0 sockets.
    pub fn new(state_dir: PathBuf, sockets: Vec<PathBuf>) -> ServerConfig {
        ServerConfig {
            state_dir,
            sockets,
            domain_sockets: Vec::new(),
            quotas: Quotas::default(),
            max_connections: 1024,
            max_output_bytes: 4 << 20,
            compact_min_bytes: 8 << 20,
        }
    }
}

/// Stops a running server from any thread (signal handlers, domusd).
#[derive(Debug, Clone)]
pub struct ShutdownTrigger {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ShutdownTrigger {
    /// Asks the server loop to finish.
    pub fn trigger(&self) {
        self.stop.store(true, Ordering::Release);
        if let Err(e) = self.waker.wake() {
            tracing::error!(error = %e, "cannot wake the store server loop");
        }
    }
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    trigger: ShutdownTrigger,
    thread: Option<JoinHandle<Result<(), StoreError>>>,
}

impl ServerHandle {
    /// A handle that can stop the server from elsewhere.
    pub fn trigger(&self) -> ShutdownTrigger {
        self.trigger.clone()
    }

    /// Stops the server: pending journal records are written and fdatasync'ed, sockets removed.
    ///
    /// # Errors
    /// The loop had failed, or the final journal sync failed.
    pub fn shutdown(mut self) -> Result<(), StoreError> {
        self.trigger.trigger();
        self.join()
    }

    /// Waits until the server stops (after a [`ShutdownTrigger`] or a fatal error).
    ///
    /// # Errors
    /// As [`ServerHandle::shutdown`].
    pub fn wait(mut self) -> Result<(), StoreError> {
        self.join()
    }

    fn join(&mut self) -> Result<(), StoreError> {
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| {
                Err(StoreError::EventLoop {
                    what: "server thread panicked",
                    source: io::ErrorKind::Other.into(),
                })
            }),
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.trigger.trigger();
            let _ = self.join();
        }
    }
}

fn bind(path: &PathBuf) -> Result<UnixListener, StoreError> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if meta.file_type().is_socket() {
            let _ = std::fs::remove_file(path);
        }
    }
    UnixListener::bind(path).map_err(|source| StoreError::Listen {
        path: path.clone(),
        source,
    })
}

/// Loads the state, binds the sockets and starts the server thread.
///
/// # Errors
/// The state could not be loaded or a socket could not be bound.
pub fn spawn(config: ServerConfig) -> Result<ServerHandle, StoreError> {
    let (store, _) = Store::open(&config.state_dir, config.quotas, config.compact_min_bytes)?;
    let poll = Poll::new().map_err(|source| StoreError::EventLoop {
        what: "creating epoll",
        source,
    })?;
    let waker =
        Arc::new(
            Waker::new(poll.registry(), WAKER).map_err(|source| StoreError::EventLoop {
                what: "creating waker",
                source,
            })?,
        );
    let mut listeners = Vec::new();
    let all = config
        .sockets
        .iter()
        .map(|p| (DomId(0), p))
        .chain(config.domain_sockets.iter().map(|(d, p)| (*d, p)));
    for (i, (domid, path)) in all.enumerate() {
        let mut l = bind(path)?;
        poll.registry()
            .register(&mut l, Token(i), Interest::READABLE)
            .map_err(|source| StoreError::Listen {
                path: path.clone(),
                source,
            })?;
        tracing::info!(path = %path.display(), domid = domid.0, "listening");
        listeners.push((l, domid, path.clone()));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let trigger = ShutdownTrigger {
        stop: stop.clone(),
        waker,
    };
    let mut server = Server {
        store,
        poll,
        listeners,
        conns: HashMap::new(),
        dirty: Vec::new(),
        config,
        stop,
    };
    let thread = std::thread::Builder::new()
        .name("store-server".into())
        .spawn(move || server.run())
        .map_err(|source| StoreError::EventLoop {
            what: "spawning server thread",
            source,
        })?;
    Ok(ServerHandle {
        trigger,
        thread: Some(thread),
    })
}

struct Server {
    store: Store,
    poll: Poll,
    listeners: Vec<(UnixListener, DomId, PathBuf)>,
    conns: HashMap<ConnId, Connection>,
    dirty: Vec<ConnId>,
    config: ServerConfig,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn token_of(&self, id: ConnId) -> Token {
        Token(self.listeners.len() + usize::try_from(id.0).unwrap_or(usize::MAX - 1))
    }

    fn conn_of(&self, t: Token) -> ConnId {
        ConnId((t.0 - self.listeners.len()) as u64)
    }

    fn run(&mut self) -> Result<(), StoreError> {
        let _syncer = self.store.start_syncer();
        let mut events = Events::with_capacity(256);
        let mut backlog: Vec<(ConnId, bool)> = Vec::new();
        let result = loop {
            let timeout = if backlog.is_empty() {
                None
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break Err(StoreError::EventLoop {
                    what: "epoll_wait",
                    source: e,
                });
            }
            let mut readable = std::mem::take(&mut backlog);
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    t if t.0 < self.listeners.len() => self.accept(t.0),
                    t => {
                        let id = self.conn_of(t);
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            readable.push((id, ev.is_read_closed() || ev.is_error()));
                        }
                        if ev.is_writable() {
                            self.mark_dirty(id);
                        }
                    }
                }
            }
            if self.stop.load(Ordering::Acquire) {
                break Ok(());
            }
            let queued = self.store.unflushed_bytes();
            for (id, hup) in readable {
                self.service(id, hup);
            }
            let flushed = self.store.flush();
            if flushed.is_err() && self.store.unflushed_bytes() <= queued {
                // Still failing to write earlier records, but this batch changed nothing: its
                // replies (reads) go out; the store serves read-only meanwhile.
            } else if let Err(e) = flushed {
                // Fail closed, keep serving: no reply of this batch is sent (its changes are not on
                // disk), so its clients lose their connections, as if the store had restarted; the
                // journal keeps the records queued and writes them once there is room again.
                crate::warn_limited!(error = %e, "journal write failed; dropping the clients of the unacknowledged batch");
                for id in std::mem::take(&mut self.dirty) {
                    self.close(id);
                }
                continue;
            }
            backlog = self.send_all();
        };
        self.finish();
        let synced = self.store.sync();
        result.and(synced)
    }

    fn mark_dirty(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            if !c.listed_dirty {
                c.listed_dirty = true;
                self.dirty.push(id);
            }
        }
    }

    fn accept(&mut self, index: usize) {
        loop {
            let (listener, domid, _) = &self.listeners[index];
            let domid = *domid;
            let stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    return;
                }
            };
            if self.conns.len() >= self.config.max_connections {
                crate::warn_limited!(
                    limit = self.config.max_connections,
                    "connection limit reached; closing new connection"
                );
                continue;
            }
            let id = self.store.connect(domid);
            let mut conn = Connection::new(stream, id, domid);
            let token = self.token_of(id);
            if let Err(e) =
                self.poll
                    .registry()
                    .register(conn.stream_mut(), token, Interest::READABLE)
            {
                tracing::warn!(error = %e, "cannot register connection");
                self.store.disconnect(id);
                continue;
            }
            tracing::debug!(conn = id.0, domid = domid.0, "connection accepted");
            self.conns.insert(id, conn);
        }
    }

    fn limit_for(&self, domid: DomId) -> usize {
        if domid.is_privileged() {
            PRIVILEGED_OUTSTANDING
        } else {
            (self.store.quotas_of(domid).outstanding as usize).max(1)
        }
    }

    /// Handles buffered requests and reads more, until the socket is drained or back-pressure applies.
    /// The connection is taken out of the map meanwhile, so events can be routed to everyone else.
    /// `hup`: the peer closed its side, so read on to the end of the stream.
    fn service(&mut self, id: ConnId, hup: bool) {
        let Some(mut conn) = self.conns.remove(&id) else {
            return;
        };
        let limit = self.limit_for(conn.domid);
        let keep = self.service_conn(&mut conn, limit, hup);
        if keep {
            if conn.queued_messages() > 0 && !conn.listed_dirty {
                conn.listed_dirty = true;
                self.dirty.push(id);
            }
            self.conns.insert(id, conn);
        } else {
            let _ = self.poll.registry().deregister(conn.stream_mut());
            self.store.disconnect(id);
            tracing::debug!(conn = id.0, "connection closed");
        }
    }

    /// Returns false when the connection must be closed.
    fn service_conn(&mut self, conn: &mut Connection, limit: usize, hup: bool) -> bool {
        let id = conn.id;
        // Set by a short read: the socket is empty, and edge-triggered epoll reports anything newer,
        // so the requests in hand are handled without another read(2) that would only say EAGAIN.
        let mut drained = false;
        loop {
            loop {
                if conn.queued_messages() >= limit {
                    conn.paused = true;
                    return true;
                }
                match conn.peek_message() {
                    Ok(Decoded::Incomplete) => break,
                    Ok(Decoded::Message {
                        header,
                        payload,
                        consumed,
                    }) => {
                        let reply = self.store.handle(id, &header, payload);
                        conn.consume(consumed);
                        conn.queue(reply);
                        self.route(conn);
                    }
                    Err(e) => {
                        crate::warn_limited!(conn = id.0, error = %e, "malformed message; closing connection");
                        return false;
                    }
                }
            }
            if drained {
                return true;
            }
            match conn.read_some() {
                Ok(ReadState::Data { full }) => drained = !full && !hup,
                Ok(ReadState::WouldBlock) => return true,
                Ok(ReadState::Eof) => return false,
                Err(e) => {
                    tracing::debug!(conn = id.0, error = %e, "read failed; closing connection");
                    return false;
                }
            }
        }
    }

    /// Moves the store's queued watch events to their connections (`current` is out of the map).
    fn route(&mut self, current: &mut Connection) {
        for (to, msg) in self.store.take_outbox() {
            if to == current.id {
                current.queue(msg);
            } else if let Some(c) = self.conns.get_mut(&to) {
                c.queue(msg);
                if !c.listed_dirty {
                    c.listed_dirty = true;
                    self.dirty.push(to);
                }
            }
        }
    }

    /// Writes queued output of the connections that have some; returns the paused connections that may
    /// go on. Writability is watched only for connections whose output is stuck.
    fn send_all(&mut self) -> Vec<(ConnId, bool)> {
        let mut dead = Vec::new();
        let mut resume = Vec::new();
        let listeners = self.listeners.len();
        for id in std::mem::take(&mut self.dirty) {
            let Some(conn) = self.conns.get_mut(&id) else {
                continue;
            };
            conn.listed_dirty = false;
            if let Err(e) = conn.write_some() {
                tracing::debug!(conn = id.0, error = %e, "write failed; closing connection");
                dead.push(id);
                continue;
            }
            if conn.queued_bytes() > self.config.max_output_bytes {
                crate::warn_limited!(
                    conn = id.0,
                    bytes = conn.queued_bytes(),
                    "client does not read its messages; dropping it"
                );
                dead.push(id);
                continue;
            }
            let stuck = conn.queued_messages() > 0;
            if stuck != conn.watching_writable {
                let interest = if stuck {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                let token = Token(listeners + usize::try_from(id.0).unwrap_or(usize::MAX - 1));
                if self
                    .poll
                    .registry()
                    .reregister(conn.stream_mut(), token, interest)
                    .is_err()
                {
                    dead.push(id);
                    continue;
                }
                conn.watching_writable = stuck;
            }
            if conn.paused && !stuck {
                conn.paused = false;
                resume.push((id, false));
            }
        }
        for id in dead {
            self.close(id);
        }
        resume
    }

    fn close(&mut self, id: ConnId) {
        if let Some(mut conn) = self.conns.remove(&id) {
            let _ = self.poll.registry().deregister(conn.stream_mut());
            tracing::debug!(conn = id.0, "connection closed");
        }
        self.store.disconnect(id);
    }

    fn finish(&mut self) {
        if let Err(e) = self.store.flush() {
            tracing::error!(error = %e, "final journal write failed");
        }
        for conn in self.conns.values_mut() {
            let _ = conn.write_some();
        }
        for (_, _, path) in &self.listeners {
            let _ = std::fs::remove_file(path);
        }
        tracing::info!("store server stopped");
    }
}
