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
    /// The path exists and is not a socket: never removed.
    #[error("{what} socket path {path} exists and is not a socket")]
    NotSocket {
        /// Which socket.
        what: &'static str,
        /// Path.
        path: PathBuf,
    },
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
    /// Binds `path`, replacing a stale socket nobody listens on (anything else at that path is an error).
    ///
    /// # Errors
    /// [`SocketError`].
    pub fn bind(path: &Path, what: &'static str) -> Result<Self, SocketError> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(SocketError::NotSocket {
                    what,
                    path: path.to_owned(),
                });
            }
            if UnixStream::connect(path).is_ok() {
                return Err(SocketError::InUse {
                    what,
                    path: path.to_owned(),
                });
            }
            let _ignored = std::fs::remove_file(path);
        }
        let bind_err = |source| SocketError::Bind {
            what,
            path: path.to_owned(),
            source,
        };
        let listener = UnixListener::bind(path).map_err(bind_err)?;
        // Root-only whatever the umask: whoever may connect may control or type into the domain.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(bind_err)?;
        }
        Ok(Self {
            listener,
            path: path.to_owned(),
        })
    }

    /// The listener, leaving the path in place (a sandboxed VMM cannot remove it later).
    ///
    /// # Errors
    /// dup failed (the path is then removed).
    pub fn keep_path(mut self) -> io::Result<UnixListener> {
        let listener = self.listener.try_clone()?;
        self.path = PathBuf::new();
        Ok(listener)
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
        if !self.path.as_os_str().is_empty() {
            let _ignored = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_rules() {
        let dir = std::env::temp_dir().join(format!("domus-vmm-sock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A regular file is never replaced.
        let file = dir.join("file");
        std::fs::write(&file, b"keep").unwrap();
        assert!(matches!(
            OwnedSocket::bind(&file, "control"),
            Err(SocketError::NotSocket { .. })
        ));
        assert_eq!(std::fs::read(&file).unwrap(), b"keep");
        // A live socket is in use; a stale one is replaced; drop removes ours.
        let path = dir.join("s.sock");
        let live = OwnedSocket::bind(&path, "control").unwrap();
        assert!(matches!(
            OwnedSocket::bind(&path, "control"),
            Err(SocketError::InUse { .. })
        ));
        drop(live);
        assert!(!path.exists());
        let stale = UnixListener::bind(&path).unwrap();
        drop(stale); // the file stays, nobody listens
        assert!(path.exists());
        let again = OwnedSocket::bind(&path, "console").unwrap();
        assert!(UnixStream::connect(&path).is_ok());
        drop(again);
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
