//! A blocking xenstore client over a unix socket, for domusd and tests.
//!
//! One request at a time: each method sends a message and waits for the reply with the same `req_id`.
//! Watch events that arrive meanwhile are kept in order and handed out by [`Client::next_event`].
//! Methods take a [`TxId`] first, as libxenstore's `xs_*` calls do ([`TxId::NONE`] outside transactions).
//!
//! ```no_run
//! use domus_store::client::{Client, TxId};
//! let mut c = Client::connect("/run/domus/xenstored.sock")?;
//! c.write(TxId::NONE, "/local/domain/1/name", b"guest")?;
//! assert_eq!(c.read(TxId::NONE, "/local/domain/1/name")?, b"guest");
//! # Ok::<(), domus_store::client::ClientError>(())
//! ```

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::perms::Perms;
use crate::wire::{self, split_fields, Decoded, MsgType, XsError};
use crate::DomId;

/// A transaction id (0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxId(pub u32);

impl TxId {
    /// Outside any transaction.
    pub const NONE: TxId = TxId(0);
}

/// A watch event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// The changed path (relative if the watch was).
    pub path: String,
    /// The watch's token.
    pub token: String,
}

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting failed.
    #[error("cannot connect to xenstore socket {path}")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The connection failed.
    #[error("xenstore connection")]
    Io(#[from] io::Error),
    /// The server answered with an error.
    #[error("xenstore {op} failed: {error}")]
    Xs {
        /// The request type.
        op: MsgType,
        /// The errno name.
        error: XsError,
    },
    /// The server sent something that is not a valid reply.
    #[error("bad reply from xenstore: {0}")]
    Protocol(&'static str),
}

impl ClientError {
    /// The xenstore error, if the server answered with one.
    pub fn xs_error(&self) -> Option<XsError> {
        match self {
            ClientError::Xs { error, .. } => Some(*error),
            _ => None,
        }
    }
}

/// A connection to a xenstore server.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    next_req: u32,
    events: VecDeque<WatchEvent>,
    rbuf: Vec<u8>,
}

fn field_str(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Client {
    /// Connects to a server socket.
    ///
    /// # Errors
    /// The socket cannot be reached.
    pub fn connect(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_owned(),
            source,
        })?;
        Ok(Client {
            stream,
            next_req: 1,
            events: VecDeque::new(),
            rbuf: Vec::new(),
        })
    }

    /// Sends one request and returns the reply payload.
    ///
    /// # Errors
    /// I/O errors, ERROR replies, malformed replies.
    pub fn request(
        &mut self,
        ty: MsgType,
        tx: TxId,
        payload: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        if payload.len() > wire::PAYLOAD_MAX {
            return Err(ClientError::Xs {
                op: ty,
                error: XsError::TooBig,
            });
        }
        let req_id = self.next_req;
        self.next_req = self.next_req.wrapping_add(1);
        self.stream
            .write_all(&wire::encode(ty, req_id, tx.0, payload))?;
        loop {
            let (mty, rid, body) = self.read_message()?;
            match mty {
                MsgType::WatchEvent => self.push_event(&body)?,
                _ if rid != req_id => {
                    return Err(ClientError::Protocol("reply to another request"))
                }
                MsgType::Error => {
                    let error = XsError::from_name(&body)
                        .ok_or(ClientError::Protocol("unknown errno name"))?;
                    return Err(ClientError::Xs { op: ty, error });
                }
                t if t == ty => return Ok(body),
                _ => return Err(ClientError::Protocol("reply of another type")),
            }
        }
    }

    fn push_event(&mut self, body: &[u8]) -> Result<(), ClientError> {
        let f = split_fields(body);
        if f.len() < 2 {
            return Err(ClientError::Protocol("watch event without path and token"));
        }
        self.events.push_back(WatchEvent {
            path: field_str(f[0]),
            token: field_str(f[1]),
        });
        Ok(())
    }

    fn read_message(&mut self) -> Result<(MsgType, u32, Vec<u8>), ClientError> {
        loop {
            match wire::decode(&self.rbuf)
                .map_err(|_| ClientError::Protocol("reply longer than 4096 bytes"))?
            {
                Decoded::Message {
                    header,
                    payload,
                    consumed,
                } => {
                    let out = (header.ty, header.req_id, payload.to_vec());
                    self.rbuf.drain(..consumed);
                    return Ok(out);
                }
                Decoded::Incomplete => {}
            }
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(ClientError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }

    fn path_req(&mut self, ty: MsgType, tx: TxId, path: &str) -> Result<Vec<u8>, ClientError> {
        let mut p = path.as_bytes().to_vec();
        p.push(0);
        self.request(ty, tx, &p)
    }

    /// READ.
    ///
    /// # Errors
    /// See [`Client::request`].
    pub fn read(&mut self, tx: TxId, path: &str) -> Result<Vec<u8>, ClientError> {
        self.path_req(MsgType::Read, tx, path)
    }

    /// WRITE (creates missing parents).
    ///
    /// # Errors
    /// See [`Client::request`].
    pub fn write(&mut self, tx: TxId, path: &str, value: &[u8]) -> Result<(), ClientError> {
        let mut p = path.as_bytes().to_vec();
        p.push(0);
        p.extend_from_slice(value);
        self.request(MsgType::Write, tx, &p).map(drop)
    }

    /// MKDIR.
    ///
    /// # Errors
    /// See [`Client::request`].
    pub fn mkdir(&mut self, tx: TxId, path: &str) -> Result<(), ClientError> {
        self.path_req(MsgType::Mkdir, tx, path).map(drop)
    }

    /// RM (recursive).
    ///
    /// # Errors
    /// See [`Client::request`].
    pub fn rm(&mut self, tx: TxId, path: &str) -> Result<(), ClientError> {
        self.path_req(MsgType::Rm, tx, path).map(drop)
    }

    /// DIRECTORY: children names.
    ///
    /// # Errors
    /// See [`Client::request`].
    pub fn directory(&mut self, tx: TxId, path: &str) -> Result<Vec<String>, ClientError> {
        let body = self.path_req(MsgType::Directory, tx, path)?;
        Ok(split_fields(&body)
            .into_iter()
            .filter(|f| !f.is_empty())
            .map(field_str)
            .collect())
    }

    /// GET_PERMS.
    ///
    /// # Errors
    /// See [`Client::request`].
    pub fn get_perms(&mut self, tx: TxId, path: &str) -> Result<Perms, ClientError> {
        let body = self.path_req(MsgType::GetPerms, tx, path)?;
        Perms::parse(&split_fields(&body)).map_err(|_| ClientError::Protocol("bad permission list"))
    }

    /// SET_PERMS.
    ///
    /// # Errors
    /// See [`Client::request`].
    pub fn set_perms(&mut self, tx: TxId, path: &str, perms: &Perms) -> Result<(), ClientError> {
        let mut p = path.as_bytes().to_vec();
        p.push(0);
        p.extend_from_slice(&perms.to_wire());
        self.request(MsgType::SetPerms, tx, &p).map(drop)
    }

    /// WATCH. The first event (the path itself) arrives right after.
    ///
    /// # Errors
    /// See [`Client::request`].
    pub fn watch(&mut self, path: &str, token: &str) -> Result<(), ClientError> {
        let p = format!("{path}\0{token}\0");
        self.request(MsgType::Watch, TxId::NONE, p.as_bytes())
            .map(drop)
    }

    /// UNWATCH.
    ///
    /// # Errors
    /// See [`Client::request`].
    pub fn unwatch(&mut self, path: &str, token: &str) -> Result<(), ClientError> {
        let p = format!("{path}\0{token}\0");
        self.request(MsgType::Unwatch, TxId::NONE, p.as_bytes())
            .map(drop)
    }

    /// The next watch event, waiting at most `timeout` (`None`: forever; zero: just poll). `Ok(None)` on
    /// timeout.
    ///
    /// # Errors
    /// I/O errors, malformed messages.
    pub fn next_event(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<WatchEvent>, ClientError> {
        if let Some(ev) = self.events.pop_front() {
            return Ok(Some(ev));
        }
        // A zero timeout is not accepted by the socket; the shortest one is.
        let timeout = timeout.map(|d| d.max(Duration::from_micros(1)));
        self.stream.set_read_timeout(timeout)?;
        let got = self.read_message();
        self.stream.set_read_timeout(None)?;
        match got {
            Ok((MsgType::WatchEvent, _, body)) => {
                self.push_event(&body)?;
                Ok(self.events.pop_front())
            }
            Ok(_) => Err(ClientError::Protocol("unsolicited reply")),
            Err(ClientError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// TRANSACTION_START.
    ///
    /// # Errors
    /// See [`Client::request`].
    pub fn transaction_start(&mut self) -> Result<TxId, ClientError> {
        let body = self.request(MsgType::TransactionStart, TxId::NONE, b"\0")?;
        let s = body.strip_suffix(b"\0").unwrap_or(&body);
        std::str::from_utf8(s)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(TxId)
            .ok_or(ClientError::Protocol("bad tx id"))
    }

    /// TRANSACTION_END: commit (`true`) or abort. A conflict is `Err` with [`XsError::Again`]: retry.
    ///
    /// # Errors
    /// See [`Client::request`].
    pub fn transaction_end(&mut self, tx: TxId, commit: bool) -> Result<(), ClientError> {
        self.request(
            MsgType::TransactionEnd,
            tx,
            if commit { b"T\0" } else { b"F\0" },
        )
        .map(drop)
    }

    /// INTRODUCE.
    ///
    /// # Errors
    /// See [`Client::request`].
    pub fn introduce(&mut self, domid: DomId, mfn: u64, port: u32) -> Result<(), ClientError> {
        let p = format!("{}\0{mfn}\0{port}\0", domid.0);
        self.request(MsgType::Introduce, TxId::NONE, p.as_bytes())
            .map(drop)
    }

    /// RELEASE.
    ///
    /// # Errors
    /// See [`Client::request`].
    pub fn release(&mut self, domid: DomId) -> Result<(), ClientError> {
        self.request(
            MsgType::Release,
            TxId::NONE,
            format!("{}\0", domid.0).as_bytes(),
        )
        .map(drop)
    }

    /// IS_DOMAIN_INTRODUCED.
    ///
    /// # Errors
    /// See [`Client::request`].
    pub fn is_domain_introduced(&mut self, domid: DomId) -> Result<bool, ClientError> {
        let body = self.request(
            MsgType::IsDomainIntroduced,
            TxId::NONE,
            format!("{}\0", domid.0).as_bytes(),
        )?;
        Ok(body.starts_with(b"T"))
    }

    /// GET_DOMAIN_PATH.
    ///
    /// # Errors
    /// See [`Client::request`].
    pub fn get_domain_path(&mut self, domid: DomId) -> Result<String, ClientError> {
        let body = self.request(
            MsgType::GetDomainPath,
            TxId::NONE,
            format!("{}\0", domid.0).as_bytes(),
        )?;
        Ok(field_str(body.strip_suffix(b"\0").unwrap_or(&body)))
    }
}
