//! A blocking client for domusd's API socket (one connection per request).

use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::http::{self, HttpError};
use crate::messages::{self, CreateRequest, DmesgReply, DomainInfo, ErrorReply, HostInfo};

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// domusd is not reachable.
    #[error("cannot connect to domusd at {path} (is domusd running? start it with `domusd --foreground` or `systemctl start domusd`)")]
    Connect {
        /// The socket path tried.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The exchange failed.
    #[error("talking to domusd at {path}")]
    Http {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: HttpError,
    },
    /// domusd answered with an error; the message is meant for the user.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// domusd's message.
        message: String,
    },
    /// The reply was not the JSON expected.
    #[error("unexpected reply from domusd")]
    Decode(#[source] serde_json::Error),
}

impl ClientError {
    /// Whether domusd said the domain does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Api { status: 404, .. })
    }
}

/// The API client.
#[derive(Debug, Clone)]
pub struct ApiClient {
    socket: PathBuf,
    timeout: Duration,
}

impl ApiClient {
    /// A client for the API socket at `socket`.
    pub fn new(socket: impl AsRef<Path>) -> Self {
        Self {
            socket: socket.as_ref().to_path_buf(),
            timeout: Duration::from_secs(120),
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request and returns the decoded 2xx reply.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        self.call_with(method, path, body, &|mut s, msg| {
            std::io::Write::write_all(&mut s, msg)
        })
    }

    /// As [`ApiClient::call`], `send` writing the encoded request on the connection (e.g. with
    /// descriptors attached: SCM_RIGHTS).
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn call_with<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&impl Serialize>,
        send: &dyn Fn(&UnixStream, &[u8]) -> std::io::Result<()>,
    ) -> Result<T, ClientError> {
        let stream = UnixStream::connect(&self.socket).map_err(|source| ClientError::Connect {
            path: self.socket.clone(),
            source,
        })?;
        let http_err = |source: HttpError| ClientError::Http {
            path: self.socket.clone(),
            source,
        };
        stream
            .set_read_timeout(Some(self.timeout))
            .map_err(|e| http_err(e.into()))?;
        let body = match body {
            Some(b) => serde_json::to_vec(b).map_err(ClientError::Decode)?,
            None => Vec::new(),
        };
        let mut msg = Vec::with_capacity(body.len() + 160);
        http::write_request(&mut msg, method, path, &body).map_err(|e| http_err(e.into()))?;
        send(&stream, &msg).map_err(|e| http_err(e.into()))?;
        let resp = http::read_response(&stream).map_err(http_err)?;
        if !(200..300).contains(&resp.status) {
            let message = serde_json::from_slice::<ErrorReply>(&resp.body)
                .map(|e| e.error)
                .unwrap_or_else(|_| format!("domusd answered HTTP {}", resp.status));
            return Err(ClientError::Api {
                status: resp.status,
                message,
            });
        }
        serde_json::from_slice(&resp.body).map_err(ClientError::Decode)
    }

    /// `GET /v1/domains`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn list(&self) -> Result<Vec<DomainInfo>, ClientError> {
        self.call("GET", "/v1/domains", None::<&()>)
    }

    /// `GET /v1/domains/DOM`.
    ///
    /// # Errors
    /// [`ClientError`] (`is_not_found` when no such domain).
    pub fn get(&self, dom: &str) -> Result<DomainInfo, ClientError> {
        self.call(
            "GET",
            &format!("/v1/domains/{}", messages::encode_segment(dom)),
            None::<&()>,
        )
    }

    /// `POST /v1/domains`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn create(&self, req: &CreateRequest) -> Result<DomainInfo, ClientError> {
        self.call("POST", "/v1/domains", Some(req))
    }

    /// `POST /v1/domains/DOM/ACTION` with an optional body.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn action(
        &self,
        dom: &str,
        action: &str,
        body: Option<&impl Serialize>,
    ) -> Result<(), ClientError> {
        let _: serde_json::Value = self.call(
            "POST",
            &format!("/v1/domains/{}/{action}", messages::encode_segment(dom)),
            body,
        )?;
        Ok(())
    }

    /// `GET /v1/domains/DOM/progress`: the latest progress report of a save in progress.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn progress(&self, dom: &str) -> Result<messages::ProgressReply, ClientError> {
        self.call(
            "GET",
            &format!("/v1/domains/{}/progress", messages::encode_segment(dom)),
            None::<&()>,
        )
    }

    /// `GET /v1/host`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn host(&self) -> Result<HostInfo, ClientError> {
        self.call("GET", "/v1/host", None::<&()>)
    }

    /// `GET /v1/dmesg`, or `POST /v1/dmesg/clear` (returns the lines, then clears them).
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn dmesg(&self, clear: bool) -> Result<DmesgReply, ClientError> {
        if clear {
            self.call("POST", "/v1/dmesg/clear", None::<&()>)
        } else {
            self.call("GET", "/v1/dmesg", None::<&()>)
        }
    }
}
