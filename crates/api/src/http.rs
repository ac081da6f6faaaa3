//! HTTP/1.1 framing for the API socket: one request and one response per connection.
//!
//! Heads are parsed by `httparse`; this module adds only what the API needs around it: a body whose
//! length `Content-Length` gives (no chunking), and bounds. Sizes are checked before anything is
//! allocated ([`MAX_HEAD_BYTES`], [`MAX_BODY_BYTES`], [`MAX_HEADERS`]), so a client that sends garbage or
//! too much loses its connection with an error, never the daemon's memory.

use std::io::{self, Read, Write};

/// Longest request or status line plus headers accepted.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest body accepted.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Most header lines accepted in one head.
pub const MAX_HEADERS: usize = 64;

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

/// Reads from `r` until `parse` finds a complete head in what arrived; returns what `parse` made of it,
/// the head's length and every byte read so far (the body's first bytes follow the head).
fn read_head<R: Read, H>(
    r: &mut R,
    mut parse: impl FnMut(&[u8]) -> Result<Option<(usize, H)>, HttpError>,
) -> Result<(H, usize, Vec<u8>), HttpError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if buf.len() >= MAX_HEAD_BYTES {
            return Err(HttpError::TooLarge {
                what: "HTTP head",
                limit: MAX_HEAD_BYTES,
            });
        }
        let want = (MAX_HEAD_BYTES - buf.len()).min(chunk.len());
        let n = match r.read(&mut chunk[..want]) {
            Ok(0) => return Err(HttpError::Incomplete),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        buf.extend_from_slice(&chunk[..n]);
        // A head ends with a line break: parse again only when one arrived, so a client sending a byte
        // at a time costs one parse per line, not one per byte.
        if chunk[..n].contains(&b'\n') {
            if let Some((len, head)) = parse(&buf)? {
                return Ok((head, len, buf));
            }
        }
    }
}

/// The body length the headers announce (0 without `Content-Length`), bounded by [`MAX_BODY_BYTES`].
fn content_length(headers: &[httparse::Header<'_>]) -> Result<usize, HttpError> {
    let mut length: Option<usize> = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::Malformed(
                "Transfer-Encoding is not supported; send Content-Length".into(),
            ));
        }
        if !h.name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        let text = String::from_utf8_lossy(h.value);
        let value: usize = text
            .trim()
            .parse()
            .map_err(|_| HttpError::Malformed(format!("bad Content-Length {:?}", text.trim())))?;
        if length.is_some_and(|l| l != value) {
            return Err(HttpError::Malformed(
                "conflicting Content-Length headers".into(),
            ));
        }
        length = Some(value);
    }
    let length = length.unwrap_or(0);
    if length > MAX_BODY_BYTES {
        return Err(HttpError::TooLarge {
            what: "HTTP body",
            limit: MAX_BODY_BYTES,
        });
    }
    Ok(length)
}

fn malformed(what: &str, e: httparse::Error) -> HttpError {
    HttpError::Malformed(match e {
        httparse::Error::TooManyHeaders => format!("{what}: more than {MAX_HEADERS} headers"),
        e => format!("{what}: {e}"),
    })
}

/// Reads the rest of a `len`-byte body whose first bytes are `start`.
fn read_body<R: Read>(r: &mut R, start: &[u8], len: usize) -> Result<Vec<u8>, HttpError> {
    let mut body = vec![0u8; len];
    let have = start.len().min(len);
    body[..have].copy_from_slice(&start[..have]);
    r.read_exact(&mut body[have..])
        .map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => HttpError::Incomplete,
            _ => HttpError::Io(e),
        })?;
    Ok(body)
}

/// Reads one request.
///
/// # Errors
/// [`HttpError`] for i/o failures, truncation, malformed heads and oversized messages.
pub fn read_request<R: Read>(mut r: R) -> Result<Request, HttpError> {
    let ((method, path, len), head_len, buf) = read_head(&mut r, |buf| {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let httparse::Status::Complete(n) = req
            .parse(buf)
            .map_err(|e| malformed("bad request head", e))?
        else {
            return Ok(None);
        };
        let (Some(method), Some(path)) = (req.method, req.path) else {
            return Err(HttpError::Malformed("bad request line".into()));
        };
        if !path.starts_with('/') {
            return Err(HttpError::Malformed(format!(
                "request target {path:?} is not an absolute path"
            )));
        }
        let len = content_length(req.headers)?;
        Ok(Some((n, (method.to_owned(), path.to_owned(), len))))
    })?;
    let body = read_body(&mut r, &buf[head_len..], len)?;
    Ok(Request { method, path, body })
}

/// Reads one response.
///
/// # Errors
/// As [`read_request`].
pub fn read_response<R: Read>(mut r: R) -> Result<Response, HttpError> {
    let ((status, len), head_len, buf) = read_head(&mut r, |buf| {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(n) = resp
            .parse(buf)
            .map_err(|e| malformed("bad response head", e))?
        else {
            return Ok(None);
        };
        let status = resp
            .code
            .ok_or_else(|| HttpError::Malformed("bad status line".into()))?;
        let len = content_length(resp.headers)?;
        Ok(Some((n, (status, len))))
    })?;
    let body = read_body(&mut r, &buf[head_len..], len)?;
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

    /// A reader that hands out one byte per call, as a slow client would.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some((first, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            match buf.first_mut() {
                Some(b) => {
                    *b = *first;
                    self.0 = rest;
                    Ok(1)
                }
                None => Ok(0),
            }
        }
    }

    fn malformed_text(input: &[u8]) -> String {
        match read_request(input) {
            Err(HttpError::Malformed(m)) => m,
            other => panic!("{input:?}: expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn each_refusal_says_what_was_wrong() {
        assert!(matches!(read_request(&b""[..]), Err(HttpError::Incomplete)));
        assert!(matches!(
            read_request(&b"GET / HTTP/1.1\r\nHost: x\r\n"[..]),
            Err(HttpError::Incomplete)
        ));
        assert!(matches!(
            read_request(&b"GET / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"[..]),
            Err(HttpError::Incomplete)
        ));
        assert!(matches!(
            read_request(&b"GET / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n"[..]),
            Err(HttpError::TooLarge {
                what: "HTTP body",
                limit: MAX_BODY_BYTES
            })
        ));
        assert!(
            malformed_text(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n")
                .contains("bad Content-Length \"x\"")
        );
        assert!(malformed_text(
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
        )
        .contains("conflicting Content-Length"));
        assert!(
            malformed_text(b"GET / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n")
                .contains("Transfer-Encoding is not supported")
        );
        assert!(malformed_text(b"GET relative HTTP/1.1\r\n\r\n").contains("not an absolute path"));
        assert!(malformed_text(b"GET / SPDY/3\r\n\r\n").starts_with("bad request head: "));
        assert!(malformed_text(b"GET / HTTP/1.1\r\nbad header\r\n\r\n")
            .starts_with("bad request head: "));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(malformed_text(&many).contains(&format!("more than {MAX_HEADERS} headers")));
        let err = read_request(&b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"[..]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed HTTP message: bad Content-Length \"x\""
        );
    }

    #[test]
    fn head_bound_is_exact() {
        let head = |filler: usize| {
            let mut h = b"GET / HTTP/1.1\r\nX: ".to_vec();
            h.resize(h.len() + filler, b'a');
            h.extend_from_slice(b"\r\n\r\n");
            h
        };
        let base = head(0).len();
        let fits = head(MAX_HEAD_BYTES - base);
        assert_eq!(fits.len(), MAX_HEAD_BYTES);
        assert_eq!(read_request(&fits[..]).unwrap().path, "/");
        let over = head(MAX_HEAD_BYTES - base + 1);
        assert!(matches!(
            read_request(&over[..]),
            Err(HttpError::TooLarge {
                what: "HTTP head",
                limit: MAX_HEAD_BYTES
            })
        ));
    }

    #[test]
    fn slow_clients_and_trailing_bytes() {
        let msg = b"POST /v1/domains/a%20b/rename HTTP/1.0\r\ncontent-length: 14\r\nContent-Length: 14\r\n\r\n{\"name\":\"new\"}garbage";
        for req in [
            read_request(Trickle(msg)).unwrap(),
            read_request(&msg[..]).unwrap(),
        ] {
            assert_eq!(req.method, "POST");
            assert_eq!(req.path, "/v1/domains/a%20b/rename");
            assert_eq!(req.body, br#"{"name":"new"}"#);
        }
        let mut big = Vec::new();
        let body = vec![b'x'; 100_000];
        write_request(&mut big, "POST", "/v1/domains", &body).unwrap();
        assert_eq!(read_request(&big[..]).unwrap().body, body);
    }

    #[test]
    fn bad_responses_are_errors() {
        for bad in [
            &b""[..],
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}",
            b"SPDY/3 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(read_response(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            read_response(Trickle(
                b"HTTP/1.1 409 Conflict\r\nContent-Length: 2\r\n\r\n{}"
            ))
            .unwrap(),
            Response {
                status: 409,
                body: b"{}".to_vec()
            }
        );
    }
}
