//! Minimal HTTP/1.1 framing for the API socket: one request and one response per connection.
//!
//! Only what the API needs: a request line, headers, and a body whose length `Content-Length` gives.
//! Sizes are bounded before anything is allocated ([`MAX_HEAD_BYTES`], [`MAX_BODY_BYTES`]), so a client
//! that sends garbage or too much loses its connection with an error, never the daemon's memory.

use std::io::{self, BufRead, BufReader, Read, Write};

/// Longest request or status line plus headers accepted.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest body accepted.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Framing errors.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The socket failed.
    #[error("i/o error on the API socket")]
    Io(#[from] io::Error),
    /// The peer closed the connection before a complete message.
    #[error("connection closed before a complete message")]
    Incomplete,
    /// The message is not the HTTP/1.1 subset we speak.
    #[error("malformed HTTP message: {0}")]
    Malformed(String),
    /// A size limit was exceeded.
    #[error("{what} exceeds the limit of {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target, e.g. `/v1/domains/hello`.
    pub path: String,
    /// The body (empty when none was sent).
    pub body: Vec<u8>,
}

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// Reads the head (start line + headers) and returns the start line and the content length.
fn read_head<R: BufRead>(r: &mut R) -> Result<(String, usize), HttpError> {
    let mut total = 0usize;
    let mut start: Option<String> = None;
    let mut content_length = 0usize;
    loop {
        let mut line = Vec::new();
        let n = r
            .take((MAX_HEAD_BYTES - total + 1) as u64)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(HttpError::Incomplete);
        }
        total += n;
        if total > MAX_HEAD_BYTES {
            return Err(HttpError::TooLarge {
                what: "HTTP head",
                limit: MAX_HEAD_BYTES,
            });
        }
        if line.last() != Some(&b'\n') {
            return Err(HttpError::Incomplete);
        }
        let text = String::from_utf8(line).map_err(|e| {
            HttpError::Malformed(format!(
                "non-UTF-8 header bytes at {}",
                e.utf8_error().valid_up_to()
            ))
        })?;
        let text = text.trim_end_matches(['\r', '\n']);
        if start.is_none() {
            if text.is_empty() {
                return Err(HttpError::Malformed("empty start line".into()));
            }
            start = Some(text.to_owned());
            continue;
        }
        if text.is_empty() {
            break;
        }
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| HttpError::Malformed(format!("header without ':': {text:?}")))?;
        if name.trim().eq_ignore_ascii_case("content-length") {
            content_length = value.trim().parse().map_err(|_| {
                HttpError::Malformed(format!("bad Content-Length {:?}", value.trim()))
            })?;
        } else if name.trim().eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::Malformed(
                "Transfer-Encoding is not supported; send Content-Length".into(),
            ));
        }
    }
    if content_length > MAX_BODY_BYTES {
        return Err(HttpError::TooLarge {
            what: "HTTP body",
            limit: MAX_BODY_BYTES,
        });
    }
    let start = start.ok_or(HttpError::Incomplete)?;
    Ok((start, content_length))
}

fn read_body<R: Read>(r: &mut R, len: usize) -> Result<Vec<u8>, HttpError> {
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => HttpError::Incomplete,
        _ => HttpError::Io(e),
    })?;
    Ok(body)
}

/// Reads one request.
///
/// # Errors
/// [`HttpError`] for i/o failures, truncation, malformed heads and oversized messages.
pub fn read_request<R: Read>(r: R) -> Result<Request, HttpError> {
    let mut r = BufReader::new(r);
    let (start, len) = read_head(&mut r)?;
    let mut parts = start.split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed(format!("bad request line {start:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed(format!(
            "unsupported version {version:?}"
        )));
    }
    if !path.starts_with('/') {
        return Err(HttpError::Malformed(format!(
            "request target {path:?} is not an absolute path"
        )));
    }
    let body = read_body(&mut r, len)?;
    Ok(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        body,
    })
}

/// Reads one response.
///
/// # Errors
/// As [`read_request`].
pub fn read_response<R: Read>(r: R) -> Result<Response, HttpError> {
    let mut r = BufReader::new(r);
    let (start, len) = read_head(&mut r)?;
    let mut parts = start.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(HttpError::Malformed(format!("bad status line {start:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed(format!(
            "unsupported version {version:?}"
        )));
    }
    let status = code
        .parse()
        .map_err(|_| HttpError::Malformed(format!("bad status code {code:?}")))?;
    let body = read_body(&mut r, len)?;
    Ok(Response { status, body })
}

/// Writes a request with a JSON body.
///
/// # Errors
/// Socket errors.
pub fn write_request<W: Write>(mut w: W, method: &str, path: &str, body: &[u8]) -> io::Result<()> {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: domusd\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut msg = head.into_bytes();
    msg.extend_from_slice(body);
    w.write_all(&msg)?;
    w.flush()
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Writes a response with a JSON body.
///
/// # Errors
/// Socket errors.
pub fn write_response<W: Write>(mut w: W, status: u16, body: &[u8]) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason_phrase(status),
        body.len()
    );
    let mut msg = head.into_bytes();
    msg.extend_from_slice(body);
    w.write_all(&msg)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip() {
        let mut buf = Vec::new();
        write_request(&mut buf, "POST", "/v1/domains", br#"{"a":1}"#).unwrap();
        let req = read_request(&buf[..]).unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/v1/domains");
        assert_eq!(req.body, br#"{"a":1}"#);
    }

    #[test]
    fn response_round_trip() {
        let mut buf = Vec::new();
        write_response(&mut buf, 404, b"{}").unwrap();
        assert_eq!(
            read_response(&buf[..]).unwrap(),
            Response {
                status: 404,
                body: b"{}".to_vec()
            }
        );
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let cases: &[&[u8]] = &[
            b"",
            b"GET /\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
            b"GET / HTTP/1.1\r\nbogus\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET relative HTTP/1.1\r\n\r\n",
            b"GET / SPDY/3\r\n\r\n",
            b"\xff\xfe / HTTP/1.1\r\n\r\n",
        ];
        for c in cases {
            assert!(read_request(*c).is_err(), "{c:?}");
        }
        let huge = vec![b'a'; MAX_HEAD_BYTES + 10];
        assert!(matches!(
            read_request(&huge[..]),
            Err(HttpError::TooLarge { .. })
        ));
    }
}
