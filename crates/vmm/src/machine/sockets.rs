//! Listening unix sockets the VMM owns and removes when it exits (including on error paths: the guard
//! removes the path on drop).

use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// A bound listener whose path is removed on drop.
pub struct OwnedSocket {
    listener: UnixListener,
    path: PathBuf,
}

/// Binding failed.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Something is already listening there.
    #[error("{what} socket {path} is in use by another process")]
    InUse {
        /// Which socket.
        what: &'static str,
        /// Path.
        path: PathBuf,
    },
    /// bind() failed.
    #[error("cannot listen on {what} socket {path}")]
    Bind {
        /// Which socket.
        what: &'static str,
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

impl OwnedSocket {
    /// Binds `path`, replacing a stale socket file nobody listens on.
    ///
    /// # Errors
    /// [`SocketError`].
    pub fn bind(path: &Path, what: &'static str) -> Result<Self, SocketError> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(SocketError::InUse {
                    what,
                    path: path.to_owned(),
                });
            }
            let _ignored = std::fs::remove_file(path);
        }
        let listener = UnixListener::bind(path).map_err(|source| SocketError::Bind {
            what,
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            listener,
            path: path.to_owned(),
        })
    }

    /// A clone of the listener.
    ///
    /// # Errors
    /// dup failed.
    pub fn listener(&self) -> io::Result<UnixListener> {
        self.listener.try_clone()
    }
}

impl Drop for OwnedSocket {
    fn drop(&mut self) {
        let _ignored = std::fs::remove_file(&self.path);
    }
}
