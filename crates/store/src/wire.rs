//! The xenstore wire codec (xs_wire.h, xenstore.txt "Communication with xenstore").
//!
//! Every message in either direction is a 16-byte little-endian header (`type`, `req_id`, `tx_id`, `len`)
//! followed by `len` payload bytes, `len <= XENSTORE_PAYLOAD_MAX` (4096). Decoding separates a message that
//! is not complete yet ([`Decoded::Incomplete`]: read more bytes) from one that can never become valid
//! ([`WireError`]: the connection is closed, as xenstored does). This module owns only framing and the
//! errno names; it does not interpret payloads.

use std::fmt;

/// Size of the message header in bytes.
pub const HEADER_LEN: usize = 16;
/// Largest payload allowed in either direction (`XENSTORE_PAYLOAD_MAX`).
pub const PAYLOAD_MAX: usize = 4096;
/// Longest absolute path (`XENSTORE_ABS_PATH_MAX`).
pub const ABS_PATH_MAX: usize = 3072;
/// Longest relative path (`XENSTORE_REL_PATH_MAX`).
pub const REL_PATH_MAX: usize = 2048;

/// Message types (xs_wire.h `enum xsd_sockmsg_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum MsgType {
    Control,
    Directory,
    Read,
    GetPerms,
    Watch,
    Unwatch,
    TransactionStart,
    TransactionEnd,
    Introduce,
    Release,
    GetDomainPath,
    Write,
    Mkdir,
    Rm,
    SetPerms,
    WatchEvent,
    Error,
    IsDomainIntroduced,
    Resume,
    SetTarget,
    ResetWatches,
    DirectoryPart,
    GetFeature,
    SetFeature,
    GetQuota,
    SetQuota,
    /// Any other value: answered with ENOSYS.
    Unknown(u32),
}

impl MsgType {
    /// The type for a wire value.
    pub fn from_u32(v: u32) -> MsgType {
        use MsgType::*;
        match v {
            0 => Control,
            1 => Directory,
            2 => Read,
            3 => GetPerms,
            4 => Watch,
            5 => Unwatch,
            6 => TransactionStart,
            7 => TransactionEnd,
            8 => Introduce,
            9 => Release,
            10 => GetDomainPath,
            11 => Write,
            12 => Mkdir,
            13 => Rm,
            14 => SetPerms,
            15 => WatchEvent,
            16 => Error,
            17 => IsDomainIntroduced,
            18 => Resume,
            19 => SetTarget,
            21 => ResetWatches,
            22 => DirectoryPart,
            23 => GetFeature,
            24 => SetFeature,
            25 => GetQuota,
            26 => SetQuota,
            other => Unknown(other),
        }
    }

    /// The wire value of this type.
    pub fn as_u32(self) -> u32 {
        use MsgType::*;
        match self {
            Control => 0,
            Directory => 1,
            Read => 2,
            GetPerms => 3,
            Watch => 4,
            Unwatch => 5,
            TransactionStart => 6,
            TransactionEnd => 7,
            Introduce => 8,
            Release => 9,
            GetDomainPath => 10,
            Write => 11,
            Mkdir => 12,
            Rm => 13,
            SetPerms => 14,
            WatchEvent => 15,
            Error => 16,
            IsDomainIntroduced => 17,
            Resume => 18,
            SetTarget => 19,
            ResetWatches => 21,
            DirectoryPart => 22,
            GetFeature => 23,
            SetFeature => 24,
            GetQuota => 25,
            SetQuota => 26,
            Unknown(v) => v,
        }
    }
}

/// A message header (`struct xsd_sockmsg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Message type.
    pub ty: MsgType,
    /// Request id, echoed in the reply.
    pub req_id: u32,
    /// Transaction id (0: none), echoed in the reply.
    pub tx_id: u32,
    /// Payload length in bytes.
    pub len: u32,
}

impl Header {
    /// Parses the first [`HEADER_LEN`] bytes of `buf`.
    fn parse(buf: &[u8; HEADER_LEN]) -> Header {
        let word = |i: usize| u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        Header {
            ty: MsgType::from_u32(word(0)),
            req_id: word(4),
            tx_id: word(8),
            len: word(12),
        }
    }
}

/// Why a byte stream can never become a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The header announces more than [`PAYLOAD_MAX`] bytes.
    #[error("payload length {len} exceeds the limit of {PAYLOAD_MAX} bytes")]
    TooLong {
        /// The announced length.
        len: u32,
    },
}

/// Result of trying to decode one message from the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// More bytes are needed.
    Incomplete,
    /// One whole message; `consumed` bytes of the buffer belong to it.
    Message {
        /// The header.
        header: Header,
        /// The payload (`header.len` bytes).
        payload: &'a [u8],
        /// Header plus payload length.
        consumed: usize,
    },
}

/// Decodes one message from the front of `buf`.
///
/// # Errors
/// [`WireError::TooLong`] as soon as a header announces a payload past the limit.
pub fn decode(buf: &[u8]) -> Result<Decoded<'_>, WireError> {
    let Some(head) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(Decoded::Incomplete);
    };
    let header = Header::parse(head);
    let len = usize::try_from(header.len).map_err(|_| WireError::TooLong { len: header.len })?;
    if len > PAYLOAD_MAX {
        return Err(WireError::TooLong { len: header.len });
    }
    let consumed = HEADER_LEN + len;
    match buf.get(HEADER_LEN..consumed) {
        Some(payload) => Ok(Decoded::Message {
            header,
            payload,
            consumed,
        }),
        None => Ok(Decoded::Incomplete),
    }
}

/// Encodes one message (header + payload) into a new buffer.
///
/// The caller keeps payloads within [`PAYLOAD_MAX`]; replies that could exceed it are answered with E2BIG
/// before they get here.
pub fn encode(ty: MsgType, req_id: u32, tx_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    encode_into(&mut out, ty, req_id, tx_id, payload);
    out
}

/// Appends one encoded message to `out`.
pub fn encode_into(out: &mut Vec<u8>, ty: MsgType, req_id: u32, tx_id: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("payloads are bounded by PAYLOAD_MAX");
    out.extend_from_slice(&ty.as_u32().to_le_bytes());
    out.extend_from_slice(&req_id.to_le_bytes());
    out.extend_from_slice(&tx_id.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Errors a request can fail with, sent as their errno names (xs_wire.h `xsd_errors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[allow(missing_docs)]
pub enum XsError {
    #[error("EINVAL")]
    Inval,
    #[error("EACCES")]
    Acces,
    #[error("EEXIST")]
    Exist,
    #[error("EISDIR")]
    IsDir,
    #[error("ENOENT")]
    NoEnt,
    #[error("ENOMEM")]
    NoMem,
    #[error("ENOSPC")]
    NoSpc,
    #[error("EIO")]
    Io,
    #[error("ENOTEMPTY")]
    NotEmpty,
    #[error("ENOSYS")]
    NoSys,
    #[error("EROFS")]
    RoFs,
    #[error("EBUSY")]
    Busy,
    #[error("EAGAIN")]
    Again,
    #[error("EISCONN")]
    IsConn,
    #[error("E2BIG")]
    TooBig,
    #[error("EPERM")]
    Perm,
}

impl XsError {
    /// The errno name, as sent on the wire (without the trailing NUL). The only errno mapping in the store.
    pub fn name(self) -> &'static str {
        use XsError::*;
        match self {
            Inval => "EINVAL",
            Acces => "EACCES",
            Exist => "EEXIST",
            IsDir => "EISDIR",
            NoEnt => "ENOENT",
            NoMem => "ENOMEM",
            NoSpc => "ENOSPC",
            Io => "EIO",
            NotEmpty => "ENOTEMPTY",
            NoSys => "ENOSYS",
            RoFs => "EROFS",
            Busy => "EBUSY",
            Again => "EAGAIN",
            IsConn => "EISCONN",
            TooBig => "E2BIG",
            Perm => "EPERM",
        }
    }

    /// Parses an errno name as sent in an ERROR reply (trailing NUL optional).
    pub fn from_name(name: &[u8]) -> Option<XsError> {
        let name = name.strip_suffix(b"\0").unwrap_or(name);
        use XsError::*;
        [
            Inval, Acces, Exist, IsDir, NoEnt, NoMem, NoSpc, Io, NotEmpty, NoSys, RoFs, Busy,
            Again, IsConn, TooBig, Perm,
        ]
        .into_iter()
        .find(|e| e.name().as_bytes() == name)
    }
}

impl fmt::Display for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// Splits a payload into its NUL-terminated fields. A final field without a terminating NUL is returned
/// too (Xen's clients are inconsistent about the last NUL).
pub fn split_fields(payload: &[u8]) -> Vec<&[u8]> {
    let body = payload.strip_suffix(b"\0").unwrap_or(payload);
    if payload.is_empty() {
        return Vec::new();
    }
    body.split(|b| *b == 0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let msg = encode(MsgType::Write, 7, 3, b"/a\0v");
        match decode(&msg).unwrap() {
            Decoded::Message {
                header,
                payload,
                consumed,
            } => {
                assert_eq!(
                    header,
                    Header {
                        ty: MsgType::Write,
                        req_id: 7,
                        tx_id: 3,
                        len: 4
                    }
                );
                assert_eq!(payload, b"/a\0v");
                assert_eq!(consumed, 20);
            }
            Decoded::Incomplete => panic!("complete message"),
        }
    }

    #[test]
    fn incomplete_header_and_payload() {
        let msg = encode(MsgType::Read, 1, 0, b"/abc\0");
        for cut in 0..msg.len() {
            assert_eq!(
                decode(&msg[..cut]).unwrap(),
                Decoded::Incomplete,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn too_long_is_malformed_even_before_payload_arrives() {
        let mut msg = encode(MsgType::Read, 1, 0, b"");
        msg[12..16].copy_from_slice(&4097u32.to_le_bytes());
        assert_eq!(decode(&msg), Err(WireError::TooLong { len: 4097 }));
        msg[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&msg), Err(WireError::TooLong { len: u32::MAX }));
        msg[12..16].copy_from_slice(&4096u32.to_le_bytes());
        assert_eq!(decode(&msg), Ok(Decoded::Incomplete));
    }

    #[test]
    fn types_round_trip() {
        for v in 0..40 {
            assert_eq!(MsgType::from_u32(v).as_u32(), v);
        }
        assert_eq!(MsgType::from_u32(20), MsgType::Unknown(20));
    }

    #[test]
    fn errno_names() {
        assert_eq!(XsError::from_name(b"ENOENT\0"), Some(XsError::NoEnt));
        assert_eq!(XsError::from_name(b"E2BIG"), Some(XsError::TooBig));
        assert_eq!(XsError::from_name(b"EWHAT"), None);
        assert_eq!(XsError::Again.to_string(), "EAGAIN");
    }

    #[test]
    fn fields() {
        assert_eq!(split_fields(b"a\0b\0"), vec![&b"a"[..], b"b"]);
        assert_eq!(split_fields(b"a\0b"), vec![&b"a"[..], b"b"]);
        assert_eq!(split_fields(b""), Vec::<&[u8]>::new());
        assert_eq!(split_fields(b"\0"), vec![&b""[..]]);
    }
}
