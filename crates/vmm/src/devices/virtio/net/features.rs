//! The virtio-net feature bits this device offers and the dependencies between them (virtio 1.2
//! §5.1.3, §5.1.3.1), and what the negotiated set means for the TAP (TUNSETOFFLOAD) and for the
//! size of a received frame.

use virtio_bindings::virtio_net as vn;

use super::sys;

const fn bit(n: u32) -> u64 {
    1 << n
}

/// VIRTIO_NET_F_CSUM: the driver may hand us partially checksummed frames.
pub const CSUM: u64 = bit(vn::VIRTIO_NET_F_CSUM);
/// VIRTIO_NET_F_GUEST_CSUM: we may hand the driver partially checksummed frames.
pub const GUEST_CSUM: u64 = bit(vn::VIRTIO_NET_F_GUEST_CSUM);
/// VIRTIO_NET_F_CTRL_GUEST_OFFLOADS.
pub const CTRL_GUEST_OFFLOADS: u64 = bit(vn::VIRTIO_NET_F_CTRL_GUEST_OFFLOADS);
/// VIRTIO_NET_F_MTU.
pub const MTU: u64 = bit(vn::VIRTIO_NET_F_MTU);
/// VIRTIO_NET_F_MAC.
pub const MAC: u64 = bit(vn::VIRTIO_NET_F_MAC);
/// VIRTIO_NET_F_GUEST_TSO4.
pub const GUEST_TSO4: u64 = bit(vn::VIRTIO_NET_F_GUEST_TSO4);
/// VIRTIO_NET_F_GUEST_TSO6.
pub const GUEST_TSO6: u64 = bit(vn::VIRTIO_NET_F_GUEST_TSO6);
/// VIRTIO_NET_F_GUEST_ECN.
pub const GUEST_ECN: u64 = bit(vn::VIRTIO_NET_F_GUEST_ECN);
/// VIRTIO_NET_F_HOST_TSO4.
pub const HOST_TSO4: u64 = bit(vn::VIRTIO_NET_F_HOST_TSO4);
/// VIRTIO_NET_F_HOST_TSO6.
pub const HOST_TSO6: u64 = bit(vn::VIRTIO_NET_F_HOST_TSO6);
/// VIRTIO_NET_F_HOST_ECN.
pub const HOST_ECN: u64 = bit(vn::VIRTIO_NET_F_HOST_ECN);
/// VIRTIO_NET_F_MRG_RXBUF.
pub const MRG_RXBUF: u64 = bit(vn::VIRTIO_NET_F_MRG_RXBUF);
/// VIRTIO_NET_F_STATUS.
pub const STATUS: u64 = bit(vn::VIRTIO_NET_F_STATUS);
/// VIRTIO_NET_F_CTRL_VQ.
pub const CTRL_VQ: u64 = bit(vn::VIRTIO_NET_F_CTRL_VQ);
/// VIRTIO_NET_F_CTRL_RX.
pub const CTRL_RX: u64 = bit(vn::VIRTIO_NET_F_CTRL_RX);
/// VIRTIO_NET_F_GUEST_ANNOUNCE.
pub const GUEST_ANNOUNCE: u64 = bit(vn::VIRTIO_NET_F_GUEST_ANNOUNCE);
/// VIRTIO_NET_F_CTRL_MAC_ADDR.
pub const CTRL_MAC_ADDR: u64 = bit(vn::VIRTIO_NET_F_CTRL_MAC_ADDR);
/// VIRTIO_NET_F_GUEST_USO4.
pub const GUEST_USO4: u64 = bit(vn::VIRTIO_NET_F_GUEST_USO4);
/// VIRTIO_NET_F_GUEST_USO6.
pub const GUEST_USO6: u64 = bit(vn::VIRTIO_NET_F_GUEST_USO6);
/// VIRTIO_NET_F_HOST_USO.
pub const HOST_USO: u64 = bit(vn::VIRTIO_NET_F_HOST_USO);

/// Everything offered when the TAP lacks USO.
pub const BASE: u64 = CSUM
    | GUEST_CSUM
    | CTRL_GUEST_OFFLOADS
    | MTU
    | MAC
    | GUEST_TSO4
    | GUEST_TSO6
    | GUEST_ECN
    | HOST_TSO4
    | HOST_TSO6
    | HOST_ECN
    | MRG_RXBUF
    | STATUS
    | CTRL_VQ
    | CTRL_RX
    | GUEST_ANNOUNCE
    | CTRL_MAC_ADDR;
/// Added where the TAP takes UDP segmentation offload.
pub const USO: u64 = GUEST_USO4 | GUEST_USO6 | HOST_USO;

/// The guest-receive offloads CTRL_GUEST_OFFLOADS may switch (virtio 1.2 §5.1.6.5.6).
pub const GUEST_OFFLOADS: u64 =
    GUEST_CSUM | GUEST_TSO4 | GUEST_TSO6 | GUEST_ECN | GUEST_USO4 | GUEST_USO6;

/// The features `offered` for a TAP with or without USO.
pub fn offered(uso: bool) -> u64 {
    if uso {
        BASE | USO
    } else {
        BASE
    }
}

/// Checks the dependencies of virtio 1.2 §5.1.3.1 in a negotiated set; names the first broken one.
pub fn check(f: u64) -> Result<(), &'static str> {
    let rules: [(u64, u64, &'static str); 14] = [
        (GUEST_TSO4, GUEST_CSUM, "GUEST_TSO4 without GUEST_CSUM"),
        (GUEST_TSO6, GUEST_CSUM, "GUEST_TSO6 without GUEST_CSUM"),
        (GUEST_USO4, GUEST_CSUM, "GUEST_USO4 without GUEST_CSUM"),
        (GUEST_USO6, GUEST_CSUM, "GUEST_USO6 without GUEST_CSUM"),
        (
            GUEST_ECN,
            GUEST_TSO4 | GUEST_TSO6,
            "GUEST_ECN without GUEST_TSO4 or GUEST_TSO6",
        ),
        (HOST_TSO4, CSUM, "HOST_TSO4 without CSUM"),
        (HOST_TSO6, CSUM, "HOST_TSO6 without CSUM"),
        (HOST_USO, CSUM, "HOST_USO without CSUM"),
        (
            HOST_ECN,
            HOST_TSO4 | HOST_TSO6,
            "HOST_ECN without HOST_TSO4 or HOST_TSO6",
        ),
        (CTRL_RX, CTRL_VQ, "CTRL_RX without CTRL_VQ"),
        (CTRL_MAC_ADDR, CTRL_VQ, "CTRL_MAC_ADDR without CTRL_VQ"),
        (GUEST_ANNOUNCE, CTRL_VQ, "GUEST_ANNOUNCE without CTRL_VQ"),
        (
            CTRL_GUEST_OFFLOADS,
            CTRL_VQ,
            "CTRL_GUEST_OFFLOADS without CTRL_VQ",
        ),
        (0, 0, ""),
    ];
    for (feature, needs, why) in rules {
        if f & feature != 0 && f & needs == 0 {
            return Err(why);
        }
    }
    Ok(())
}

/// TUN_F_* flags mirroring the guest-receive offloads in `f`: what the TAP may hand us is what the
/// driver accepts.
pub fn tap_offload(f: u64) -> u32 {
    let mut t = 0;
    if f & GUEST_CSUM != 0 {
        t |= sys::TUN_F_CSUM;
        if f & GUEST_TSO4 != 0 {
            t |= sys::TUN_F_TSO4;
        }
        if f & GUEST_TSO6 != 0 {
            t |= sys::TUN_F_TSO6;
        }
        if f & GUEST_ECN != 0 {
            t |= sys::TUN_F_TSO_ECN;
        }
        // The TAP takes UDP segmentation for both IP versions or not at all (TUNSETOFFLOAD
        // refuses one alone): a driver that accepts only one gets plain frames.
        if f & (GUEST_USO4 | GUEST_USO6) == GUEST_USO4 | GUEST_USO6 {
            t |= sys::TUN_F_USO4 | sys::TUN_F_USO6;
        }
    }
    t
}

/// Whether `f` lets the TAP hand us frames larger than the MTU (segmentation offloads, as
/// [`tap_offload`] mirrors them).
pub fn has_guest_gso(f: u64) -> bool {
    f & GUEST_CSUM != 0
        && (f & (GUEST_TSO4 | GUEST_TSO6) != 0
            || f & (GUEST_USO4 | GUEST_USO6) == GUEST_USO4 | GUEST_USO6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_name_the_broken_rule() {
        assert_eq!(check(BASE), Ok(()));
        assert_eq!(check(BASE | USO), Ok(()));
        assert_eq!(check(0), Ok(()));
        assert_eq!(check(GUEST_TSO4), Err("GUEST_TSO4 without GUEST_CSUM"));
        assert_eq!(check(HOST_USO | MRG_RXBUF), Err("HOST_USO without CSUM"));
        assert_eq!(check(CTRL_RX), Err("CTRL_RX without CTRL_VQ"));
        assert_eq!(
            check(GUEST_CSUM | GUEST_ECN),
            Err("GUEST_ECN without GUEST_TSO4 or GUEST_TSO6")
        );
    }

    #[test]
    fn tap_offloads_follow_guest_receive_features() {
        assert_eq!(tap_offload(0), 0);
        assert_eq!(
            tap_offload(CSUM | HOST_TSO4),
            0,
            "host-side features do not matter"
        );
        assert_eq!(tap_offload(GUEST_CSUM), sys::TUN_F_CSUM);
        assert_eq!(
            tap_offload(GUEST_CSUM | GUEST_TSO4 | GUEST_USO6),
            sys::TUN_F_CSUM | sys::TUN_F_TSO4,
            "USO only for both IP versions"
        );
        assert_eq!(
            tap_offload(GUEST_CSUM | GUEST_USO4 | GUEST_USO6),
            sys::TUN_F_CSUM | sys::TUN_F_USO4 | sys::TUN_F_USO6
        );
        assert!(!has_guest_gso(GUEST_CSUM | GUEST_USO4));
        assert!(has_guest_gso(GUEST_CSUM | GUEST_USO4 | GUEST_USO6));
        assert!(has_guest_gso(GUEST_CSUM | GUEST_TSO4));
        assert!(!offered(false) & USO == USO);
        assert_eq!(offered(true) & USO, USO);
    }
}
