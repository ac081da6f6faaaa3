//! domus-store: a xenstore-compatible database server that survives restarts.
//!
//! It speaks Xen's wire protocol and semantics (docs/misc/xenstore.txt) on unix sockets, so Xen's own
//! clients (`xenstore-read`, `-write`, `-ls`, `-watch`, ... with `XENSTORED_PATH`) and libxenstore work
//! against it, and it journals every committed change so that a restarted server comes back with the same
//! tree, permissions and introduced domains.
//!
//! # Shape
//! - [`wire`]: framing and errno names; [`path`], [`perms`], [`quota`]: the rules;
//! - [`tree`]: committed nodes with per-node generations; [`transaction`]: optimistic transactions on top,
//!   with Xen's C xenstored isolation (a transaction copies each node the first time it looks at it and
//!   keeps seeing that copy; commit fails with EAGAIN if a node it looked at changed meanwhile — see
//!   [`transaction`] for the exact guarantee);
//!   [`watch`]: watch matching; [`db`]: the view operations run on; `ops`: one module per operation;
//! - [`store`]: the single-threaded engine tying them together; [`journal`]: journal + snapshot;
//! - [`server`]: the socket server (embeddable, [`server::spawn`]); [`connection`]: per-client buffers;
//! - [`client`]: a blocking client for domusd and tests.
//!
//! # Threads, not tokio
//! The server is one event-loop thread (mio/epoll) that owns the whole store, plus one thread that
//! fdatasyncs the journal once a second. A xenstore request is microseconds of work on an in-memory map;
//! what costs is syscalls and wake-ups. One thread owning everything needs no locks, orders watch events
//! exactly as changes commit, and batches: all requests that arrived together are handled, their journal
//! records go out in one write(2), then their replies are sent. A thread per client would add cross-thread
//! wake-ups (slow and noisy on this VM) and lock contention on the one tree; tokio would add a runtime
//! and a large dependency for the same single-threaded loop. Per-connection output queues are bounded: a
//! client that stops reading is first no longer read from (back-pressure), and a connection whose queue
//! of watch events passes the bound is dropped, so it never blocks anyone else.
#![warn(missing_docs)]

pub mod client;
pub mod connection;
pub mod db;
pub mod journal;
pub mod log;
mod ops;
pub mod path;
pub mod perms;
pub mod quota;
pub mod server;
pub mod store;
pub mod transaction;
pub mod tree;
pub mod watch;
pub mod wire;

use std::fmt;
use std::path::PathBuf;

pub use quota::Quotas;
pub use store::Store;

/// A domain id. Domain 0 is the privileged control domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomId(pub u32);

impl DomId {
    /// Whether this domain bypasses permissions and quotas (dom0).
    pub fn is_privileged(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for DomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A connection's identity inside the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Errors of the store as a whole (not per-request errors, which are [`wire::XsError`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation on the state directory failed.
    #[error("{what} ({path})")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The snapshot is damaged (it is written atomically, so something outside the store changed it).
    #[error("snapshot {path} is damaged at byte {offset}; restore it from a backup or move it away to start empty")]
    Corrupt {
        /// The snapshot file.
        path: PathBuf,
        /// Where the damage starts.
        offset: u64,
    },
    /// A socket could not be set up.
    #[error("cannot listen on {path}")]
    Listen {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The event loop could not be set up or failed.
    #[error("server event loop: {what}")]
    EventLoop {
        /// What failed.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
