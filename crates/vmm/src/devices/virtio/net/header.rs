//! The virtio-net header (`struct virtio_net_hdr_v1`, virtio 1.2 §5.1.6): with VERSION_1 it is
//! always 12 bytes, `num_buffers` included, with or without MRG_RXBUF (§5.1.6.1). The TAP uses the
//! same layout (TUNSETVNETHDRSZ 12), so frames pass through with their header; the device only
//! checks what the driver sends and fills `num_buffers` on receive.
//!
//! What a Linux guest sees: on receive, `num_buffers` is the number of buffers (descriptor chains)
//! the frame spans (1 without MRG_RXBUF); the used length of each chain is the bytes written to it,
//! the header counted in the first. On transmit the used length is 0 (the device writes nothing).

use virtio_bindings::virtio_net as vn;

use super::features;

/// Offset of `num_buffers` in the header.
pub const NUM_BUFFERS_OFFSET: usize = 10;
/// Largest frame after the header with segmentation offload (64 KiB IP packet + Ethernet + VLAN).
pub const MAX_GSO_FRAME: usize = 65_550;
/// Ethernet header plus one VLAN tag.
pub const ETH_OVERHEAD: usize = 18;

const NEEDS_CSUM: u8 = 1;
const GSO_ECN: u8 = 0x80;

/// Why a transmitted frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxHeaderError {
    /// Fewer than 12 bytes of header.
    Short,
    /// Flags other than NEEDS_CSUM.
    Flags(u8),
    /// NEEDS_CSUM without CSUM negotiated.
    CsumNotNegotiated,
    /// csum_start + csum_offset + 2 past the end of the frame.
    CsumRange,
    /// A GSO type the driver did not negotiate (or does not exist).
    Gso(u8),
    /// GSO without NEEDS_CSUM or with gso_size 0.
    GsoIncomplete,
    /// The frame is larger than the device allows.
    TooLong(usize),
    /// Shorter than an Ethernet header.
    TooShort(usize),
}

impl std::fmt::Display for TxHeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Short => write!(f, "transmit header shorter than 12 bytes"),
            Self::Flags(x) => write!(f, "transmit header flags {x:#x} (only NEEDS_CSUM allowed)"),
            Self::CsumNotNegotiated => write!(f, "NEEDS_CSUM without VIRTIO_NET_F_CSUM"),
            Self::CsumRange => write!(f, "checksum start/offset past the end of the frame"),
            Self::Gso(t) => write!(f, "GSO type {t:#x} not negotiated"),
            Self::GsoIncomplete => write!(f, "GSO without NEEDS_CSUM or with gso_size 0"),
            Self::TooLong(n) => write!(f, "frame of {n} bytes is larger than allowed"),
            Self::TooShort(n) => write!(f, "frame of {n} bytes is shorter than an Ethernet header"),
        }
    }
}

fn le16(h: &[u8; 12], at: usize) -> u16 {
    u16::from_le_bytes([h[at], h[at + 1]])
}

/// Checks the header `h` of a transmitted frame of `frame_len` bytes (after the header) against
/// the negotiated `features` and the NIC's `mtu`.
pub fn check_tx(
    h: &[u8; 12],
    frame_len: usize,
    features: u64,
    mtu: u16,
) -> Result<(), TxHeaderError> {
    let (flags, gso) = (h[0], h[1]);
    if frame_len < 14 {
        return Err(TxHeaderError::TooShort(frame_len));
    }
    if flags & !NEEDS_CSUM != 0 {
        return Err(TxHeaderError::Flags(flags));
    }
    if flags & NEEDS_CSUM != 0 {
        if features & features::CSUM == 0 {
            return Err(TxHeaderError::CsumNotNegotiated);
        }
        let end = usize::from(le16(h, 6)) + usize::from(le16(h, 8)) + 2;
        if end > frame_len {
            return Err(TxHeaderError::CsumRange);
        }
    }
    let gso_type = u32::from(gso & !GSO_ECN);
    let need = match gso_type {
        vn::VIRTIO_NET_HDR_GSO_NONE => 0,
        vn::VIRTIO_NET_HDR_GSO_TCPV4 => features::HOST_TSO4,
        vn::VIRTIO_NET_HDR_GSO_TCPV6 => features::HOST_TSO6,
        vn::VIRTIO_NET_HDR_GSO_UDP_L4 => features::HOST_USO,
        _ => return Err(TxHeaderError::Gso(gso)),
    };
    if features & need != need || (gso & GSO_ECN != 0 && features & features::HOST_ECN == 0) {
        return Err(TxHeaderError::Gso(gso));
    }
    let max = if need == 0 {
        usize::from(mtu) + ETH_OVERHEAD
    } else {
        if flags & NEEDS_CSUM == 0 || le16(h, 4) == 0 {
            return Err(TxHeaderError::GsoIncomplete);
        }
        MAX_GSO_FRAME
    };
    if frame_len > max {
        return Err(TxHeaderError::TooLong(frame_len));
    }
    Ok(())
}

/// Largest frame (after the header) the TAP may hand us with `features` negotiated.
pub fn max_rx_frame(features: u64, mtu: u16) -> usize {
    if features::has_guest_gso(features) {
        MAX_GSO_FRAME
    } else {
        usize::from(mtu) + ETH_OVERHEAD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(flags: u8, gso: u8, gso_size: u16, start: u16, off: u16) -> [u8; 12] {
        let mut h = [0u8; 12];
        h[0] = flags;
        h[1] = gso;
        h[4..6].copy_from_slice(&gso_size.to_le_bytes());
        h[6..8].copy_from_slice(&start.to_le_bytes());
        h[8..10].copy_from_slice(&off.to_le_bytes());
        h
    }

    #[test]
    fn plain_and_offloaded_frames_pass() {
        let all = features::BASE | features::USO;
        assert_eq!(check_tx(&hdr(0, 0, 0, 0, 0), 1514, 0, 1500), Ok(()));
        assert_eq!(check_tx(&hdr(1, 0, 0, 34, 6), 1514, all, 1500), Ok(()));
        assert_eq!(
            check_tx(&hdr(1, 1, 1448, 34, 16), 65_000, all, 1500),
            Ok(())
        );
        assert_eq!(check_tx(&hdr(1, 5, 1472, 34, 6), 60_000, all, 1500), Ok(()));
        assert_eq!(max_rx_frame(0, 1500), 1518);
        assert_eq!(max_rx_frame(all, 1500), MAX_GSO_FRAME);
    }

    #[test]
    fn bad_headers_are_named() {
        let all = features::BASE;
        assert_eq!(
            check_tx(&hdr(0, 0, 0, 0, 0), 10, all, 1500),
            Err(TxHeaderError::TooShort(10))
        );
        assert_eq!(
            check_tx(&hdr(2, 0, 0, 0, 0), 60, all, 1500),
            Err(TxHeaderError::Flags(2))
        );
        assert_eq!(
            check_tx(&hdr(1, 0, 0, 34, 6), 60, 0, 1500),
            Err(TxHeaderError::CsumNotNegotiated)
        );
        assert_eq!(
            check_tx(&hdr(1, 0, 0, 60, 6), 60, all, 1500),
            Err(TxHeaderError::CsumRange)
        );
        assert_eq!(
            check_tx(&hdr(1, 5, 1400, 34, 6), 9000, all, 1500),
            Err(TxHeaderError::Gso(5))
        );
        assert_eq!(
            check_tx(&hdr(1, 3, 1400, 34, 6), 9000, all, 1500),
            Err(TxHeaderError::Gso(3))
        );
        assert_eq!(
            check_tx(&hdr(0, 1, 1400, 34, 6), 9000, all, 1500),
            Err(TxHeaderError::GsoIncomplete)
        );
        assert_eq!(
            check_tx(&hdr(1, 1, 0, 34, 6), 9000, all, 1500),
            Err(TxHeaderError::GsoIncomplete)
        );
        assert_eq!(
            check_tx(&hdr(0, 0, 0, 0, 0), 1519, all, 1500),
            Err(TxHeaderError::TooLong(1519))
        );
        assert_eq!(
            check_tx(&hdr(1, 1, 9, 34, 6), 70_000, all, 1500),
            Err(TxHeaderError::TooLong(70_000))
        );
        assert_eq!(
            check_tx(
                &hdr(1, 0x81, 9, 34, 6),
                7000,
                all & !features::HOST_ECN,
                1500
            ),
            Err(TxHeaderError::Gso(0x81))
        );
    }
}
