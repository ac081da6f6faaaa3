//! Parsing and checking one virtio-blk request (virtio 1.2 §5.2.6) from a descriptor chain.
//!
//! Layout: a device-readable 16-byte header (type, reserved, sector), then data descriptors
//! (device-writable for IN and GET_ID, device-readable otherwise), then a device-writable status
//! descriptor whose first byte receives the status. Every guest range is borrowed from guest RAM here
//! as a checked [`GuestIoVec`] (a range that leaves RAM, or crosses a region boundary, is an error),
//! so execution only ever touches host memory that backs guest RAM. Chains are bounded: at most `seg_max` data descriptors,
//! and a chain that does not end (a loop, or a `next` outside the table) is rejected.

use virtio_bindings::virtio_blk::{VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT};
use virtio_queue::desc::split::Descriptor;
use vm_memory::GuestAddress;

use super::backend::SECTOR;
use crate::vstate::memory::{Direction, GuestIoVec, GuestRam};
/// Length of the GET_ID answer.
pub const ID_BYTES: usize = 20;

/// A request that cannot be executed (answered with VIRTIO_BLK_S_IOERR, or used length 0 when not
/// even the status byte is reachable).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    /// Fewer than two descriptors, or no header.
    #[error("chain too short or header descriptor not device-readable/16 bytes")]
    BadHeader,
    /// Header not readable from guest memory.
    #[error("header at {0:#x} is outside guest RAM")]
    HeaderOutsideRam(u64),
    /// The chain does not terminate.
    #[error("descriptor chain does not terminate (loop or next index outside the table)")]
    Unterminated,
    /// Too many data descriptors.
    #[error("{0} data descriptors (seg_max {1})")]
    TooManySegments(usize, u32),
    /// A descriptor points outside guest RAM.
    #[error("descriptor [{0:#x}, +{1:#x}) is outside guest RAM")]
    OutsideRam(u64, u32),
    /// Wrong direction for the request type.
    #[error("data descriptor direction does not match request type {0}")]
    Direction(u32),
    /// Status descriptor missing or not writable.
    #[error("no device-writable status descriptor")]
    NoStatus,
    /// Data length not a multiple of the sector size, or too large.
    #[error("data length {0} is not a whole number of sectors or is too large")]
    BadLength(u64),
    /// Beyond the end of the disk.
    #[error("sectors [{0}, +{1}) are beyond the disk's {2} sectors")]
    OutOfRange(u64, u64, u64),
    /// DISCARD/WRITE_ZEROES payload malformed.
    #[error("malformed discard/write-zeroes segment")]
    BadSegment,
}

/// A parsed request.
#[derive(Debug)]
pub struct Request {
    /// Request type.
    pub kind: u32,
    /// First sector.
    pub sector: u64,
    /// Data segments, borrowed from guest RAM.
    pub data: Vec<GuestIoVec>,
    /// Total data bytes.
    pub data_len: u64,
    /// Guest address of the status byte.
    pub status: GuestAddress,
}

/// Finds the status descriptor of a chain that failed to parse, so the error can still be reported.
pub fn status_of(descs: &[Descriptor], ram: &GuestRam) -> Option<GuestAddress> {
    let last = descs.last()?;
    (last.is_write_only() && last.len() >= 1 && ram.is_ram(last.addr(), 1)).then(|| last.addr())
}

impl Request {
    /// Parses `descs` (the chain as walked; `terminated` = the walk ended on a descriptor without
    /// NEXT) for a disk of `sectors` sectors.
    ///
    /// # Errors
    /// [`RequestError`] for anything malformed.
    pub fn parse(
        descs: &[Descriptor],
        terminated: bool,
        ram: &GuestRam,
        sectors: u64,
        seg_max: u32,
    ) -> Result<Self, RequestError> {
        if !terminated {
            return Err(RequestError::Unterminated);
        }
        let (Some(head), Some(last)) = (descs.first(), descs.last()) else {
            return Err(RequestError::BadHeader);
        };
        if descs.len() < 2 || head.is_write_only() || head.len() < 16 {
            return Err(RequestError::BadHeader);
        }
        let mut hdr = [0u8; 16];
        ram.read_slice(&mut hdr, head.addr())
            .map_err(|_| RequestError::HeaderOutsideRam(head.addr().0))?;
        let word = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(hdr.get(i..i + 4).unwrap_or(&[0; 4]));
            u32::from_le_bytes(b)
        };
        let kind = word(0);
        let sector = u64::from(word(8)) | (u64::from(word(12)) << 32);
        if !last.is_write_only() || last.len() < 1 || !ram.is_ram(last.addr(), 1) {
            return Err(RequestError::NoStatus);
        }
        let middle = descs.get(1..descs.len() - 1).unwrap_or_default();
        if middle.len() > usize::try_from(seg_max).unwrap_or(usize::MAX) {
            return Err(RequestError::TooManySegments(middle.len(), seg_max));
        }
        let device_writes = matches!(kind, VIRTIO_BLK_T_IN | VIRTIO_BLK_T_GET_ID);
        let dir = if device_writes {
            Direction::DeviceWrites
        } else {
            Direction::DeviceReads
        };
        let mut data = Vec::with_capacity(middle.len());
        let mut data_len: u64 = 0;
        for d in middle {
            if d.is_write_only() != device_writes {
                return Err(RequestError::Direction(kind));
            }
            let len = usize::try_from(d.len()).unwrap_or(usize::MAX);
            let iov = ram
                .iovec(d.addr(), len, dir)
                .map_err(|_outside| RequestError::OutsideRam(d.addr().0, d.len()))?;
            data_len += u64::from(d.len());
            data.push(iov);
        }
        if matches!(kind, VIRTIO_BLK_T_IN | VIRTIO_BLK_T_OUT) {
            if data_len % SECTOR != 0 || data_len > (1 << 31) {
                return Err(RequestError::BadLength(data_len));
            }
            let n = data_len / SECTOR;
            match sector.checked_add(n) {
                Some(end) if end <= sectors => {}
                _ => return Err(RequestError::OutOfRange(sector, n, sectors)),
            }
        }
        Ok(Self {
            kind,
            sector,
            data,
            data_len,
            status: last.addr(),
        })
    }

    /// The (sector, count, unmap) ranges of a DISCARD or WRITE_ZEROES payload, checked against the disk.
    ///
    /// # Errors
    /// Malformed payload or a range beyond the disk.
    pub fn ranges(
        &self,
        ram: &GuestRam,
        sectors: u64,
    ) -> Result<Vec<(u64, u64, bool)>, RequestError> {
        let mut out = Vec::new();
        for s in &self.data {
            if s.len() % 16 != 0 || s.len() / 16 > 64 {
                return Err(RequestError::BadSegment);
            }
            for i in 0..s.len() / 16 {
                let mut e = [0u8; 16];
                ram.read_slice(&mut e, GuestAddress(s.gpa().0 + i as u64 * 16))
                    .map_err(|_outside| RequestError::BadSegment)?;
                let mut q = [0u8; 8];
                q.copy_from_slice(e.get(0..8).unwrap_or(&[0; 8]));
                let start = u64::from_le_bytes(q);
                let mut w = [0u8; 4];
                w.copy_from_slice(e.get(8..12).unwrap_or(&[0; 4]));
                let num = u64::from(u32::from_le_bytes(w));
                w.copy_from_slice(e.get(12..16).unwrap_or(&[0; 4]));
                let flags = u32::from_le_bytes(w);
                match start.checked_add(num) {
                    Some(end) if end <= sectors => out.push((start, num, flags & 1 != 0)),
                    _ => return Err(RequestError::OutOfRange(start, num, sectors)),
                }
            }
        }
        if out.is_empty() {
            return Err(RequestError::BadSegment);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F_NEXT: u16 = 1;
    const F_WRITE: u16 = 2;

    const T_IN: u32 = VIRTIO_BLK_T_IN;

    fn mem() -> GuestRam {
        crate::devices::virtio::test_utils::test_ram(1 << 20)
    }

    fn header(m: &GuestRam, kind: u32, sector: u64) -> Descriptor {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&kind.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        m.write_slice(&h, GuestAddress(0x1000)).unwrap();
        Descriptor::new(0x1000, 16, F_NEXT, 1)
    }

    #[test]
    fn parses_a_read_and_checks_ranges() {
        let m = mem();
        let d = [
            header(&m, T_IN, 6),
            Descriptor::new(0x2000, 1024, F_NEXT | F_WRITE, 2),
            Descriptor::new(0x3000, 1, F_WRITE, 0),
        ];
        let r = Request::parse(&d, true, &m, 8, 4).unwrap();
        assert_eq!((r.kind, r.sector, r.data_len), (T_IN, 6, 1024));
        assert_eq!(r.status, GuestAddress(0x3000));
        // sector 7 + 2 sectors > 8
        let d2 = [header(&m, T_IN, 7), d[1], d[2]];
        assert_eq!(
            Request::parse(&d2, true, &m, 8, 4).unwrap_err(),
            RequestError::OutOfRange(7, 2, 8)
        );
        let d3 = [header(&m, T_IN, u64::MAX), d[1], d[2]];
        assert!(matches!(
            Request::parse(&d3, true, &m, 8, 4),
            Err(RequestError::OutOfRange(..))
        ));
    }

    #[test]
    fn rejects_malformed_chains() {
        let m = mem();
        let st = Descriptor::new(0x3000, 1, F_WRITE, 0);
        let data_w = Descriptor::new(0x2000, 512, F_NEXT | F_WRITE, 2);
        let data_r = Descriptor::new(0x2000, 512, F_NEXT, 2);
        let h = header(&m, T_IN, 0);
        assert_eq!(
            Request::parse(&[h, data_w, st], false, &m, 8, 4).unwrap_err(),
            RequestError::Unterminated
        );
        assert_eq!(
            Request::parse(&[h, data_r, st], true, &m, 8, 4).unwrap_err(),
            RequestError::Direction(T_IN)
        );
        let outside = Descriptor::new(0x7000_0000, 512, F_NEXT | F_WRITE, 2);
        assert!(matches!(
            Request::parse(&[h, outside, st], true, &m, 8, 4),
            Err(RequestError::OutsideRam(..))
        ));
        let straddle = Descriptor::new((1 << 20) - 256, 512, F_NEXT | F_WRITE, 2);
        assert!(matches!(
            Request::parse(&[h, straddle, st], true, &m, 8, 4),
            Err(RequestError::OutsideRam(..))
        ));
        let odd = Descriptor::new(0x2000, 100, F_NEXT | F_WRITE, 2);
        assert!(matches!(
            Request::parse(&[h, odd, st], true, &m, 8, 4),
            Err(RequestError::BadLength(100))
        ));
        let many = [h, data_w, data_w, data_w, data_w, data_w, st];
        assert!(matches!(
            Request::parse(&many, true, &m, 8, 4),
            Err(RequestError::TooManySegments(5, 4))
        ));
        let ro_status = Descriptor::new(0x3000, 1, 0, 0);
        assert_eq!(
            Request::parse(&[h, data_w, ro_status], true, &m, 8, 4).unwrap_err(),
            RequestError::NoStatus
        );
        let hdr_out = Descriptor::new(0x7000_0000, 16, F_NEXT, 1);
        assert!(matches!(
            Request::parse(&[hdr_out, data_w, st], true, &m, 8, 4),
            Err(RequestError::HeaderOutsideRam(_))
        ));
        assert_eq!(
            Request::parse(&[h], true, &m, 8, 4).unwrap_err(),
            RequestError::BadHeader
        );
    }
}
