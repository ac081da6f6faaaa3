//! The control virtqueue (virtio 1.2 §5.1.6.5): receive mode, MAC filter table, MAC address,
//! guest-announce acknowledgement and guest offloads. A command is `{class: u8, command: u8}`,
//! command data, then one device-writable ack byte (`VIRTIO_NET_OK`/`VIRTIO_NET_ERR`).
//!
//! [`apply`] is pure: the readable bytes of one chain in, the new filter state and an ack out.
//! The receive filter ([`RxFilter`]) then decides which frames from the TAP the guest gets; its
//! reset state is promiscuous (what QEMU does too), so a driver that never sends a command still
//! receives everything, and Linux narrows it when the interface comes up.

use virtio_bindings::virtio_net as vn;

use super::features;

/// Most addresses kept per filter table; a longer table turns on the matching "all" mode.
pub const MAX_TABLE: usize = 64;
/// Most readable bytes a command may have (two full tables of Linux's maximum fit easily).
pub const MAX_COMMAND_BYTES: usize = 16 * 1024;

/// VIRTIO_NET_OK.
pub const OK: u8 = 0;
/// VIRTIO_NET_ERR.
pub const ERR: u8 = 1;

/// Which frames the guest receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RxFilter {
    /// The NIC's own address.
    pub mac: [u8; 6],
    /// Every frame.
    pub promisc: bool,
    /// Every multicast frame.
    pub allmulti: bool,
    /// Unicast addresses accepted besides `mac`.
    pub uni: Vec<[u8; 6]>,
    /// Multicast addresses accepted.
    pub multi: Vec<[u8; 6]>,
    /// More unicast addresses than [`MAX_TABLE`] were set: accept all unicast.
    pub uni_overflow: bool,
}

impl RxFilter {
    /// The reset state for a NIC with address `mac`.
    pub fn new(mac: [u8; 6]) -> Self {
        Self {
            mac,
            promisc: true,
            allmulti: false,
            uni: Vec::new(),
            multi: Vec::new(),
            uni_overflow: false,
        }
    }

    /// Whether a frame for destination `dst` is delivered.
    pub fn accepts(&self, dst: &[u8; 6]) -> bool {
        if self.promisc {
            return true;
        }
        if dst[0] & 1 == 1 {
            return *dst == [0xff; 6] || self.allmulti || self.multi.contains(dst);
        }
        *dst == self.mac || self.uni_overflow || self.uni.contains(dst)
    }
}

/// What a command asks of the device besides the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Nothing else.
    None,
    /// Set the guest-receive offloads to these feature bits (mirror them on the TAP).
    Offloads(u64),
    /// The driver acknowledged the announcement: clear VIRTIO_NET_S_ANNOUNCE.
    AnnounceAck,
    /// The MAC address changed (configuration space follows).
    Mac([u8; 6]),
}

fn cast(v: u32) -> u8 {
    u8::try_from(v).unwrap_or(u8::MAX)
}

/// Applies one command (`cmd` = every readable byte of the chain) negotiated with `features`.
/// Returns the ack byte and the effect; a refused command changes nothing.
pub fn apply(cmd: &[u8], filter: &mut RxFilter, features: u64) -> (u8, Effect) {
    let (Some(&class), Some(&command)) = (cmd.first(), cmd.get(1)) else {
        return (ERR, Effect::None);
    };
    let data = cmd.get(2..).unwrap_or_default();
    let r = match class {
        c if c == cast(vn::VIRTIO_NET_CTRL_RX) && features & features::CTRL_RX != 0 => {
            rx_mode(command, data, filter)
        }
        c if c == cast(vn::VIRTIO_NET_CTRL_MAC) => mac(command, data, filter, features),
        c if c == cast(vn::VIRTIO_NET_CTRL_ANNOUNCE)
            && features & features::GUEST_ANNOUNCE != 0
            && command == cast(vn::VIRTIO_NET_CTRL_ANNOUNCE_ACK) =>
        {
            Some(Effect::AnnounceAck)
        }
        c if c == cast(vn::VIRTIO_NET_CTRL_GUEST_OFFLOADS)
            && features & features::CTRL_GUEST_OFFLOADS != 0
            && command == cast(vn::VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET) =>
        {
            offloads(data, features)
        }
        _ => None,
    };
    r.map_or((ERR, Effect::None), |e| (OK, e))
}

fn rx_mode(command: u8, data: &[u8], filter: &mut RxFilter) -> Option<Effect> {
    let [on] = data else { return None };
    let on = *on != 0;
    match command {
        c if c == cast(vn::VIRTIO_NET_CTRL_RX_PROMISC) => filter.promisc = on,
        c if c == cast(vn::VIRTIO_NET_CTRL_RX_ALLMULTI) => filter.allmulti = on,
        // ALLUNI, NOMULTI, NOUNI, NOBCAST need CTRL_RX_EXTRA, which is not offered.
        _ => return None,
    }
    Some(Effect::None)
}

/// One `virtio_net_ctrl_mac` table: le32 count, then count addresses; returns it and the rest.
fn table(data: &[u8]) -> Option<(&[u8], usize, &[u8])> {
    let n = u32::from_le_bytes(data.get(..4)?.try_into().ok()?);
    let n = usize::try_from(n).ok()?;
    let len = n.checked_mul(6)?;
    let body = data.get(4..4usize.checked_add(len)?)?;
    Some((body, n, data.get(4 + len..)?))
}

fn macs(body: &[u8]) -> Vec<[u8; 6]> {
    body.chunks_exact(6)
        .take(MAX_TABLE)
        .filter_map(|c| <[u8; 6]>::try_from(c).ok())
        .collect()
}

fn mac(command: u8, data: &[u8], filter: &mut RxFilter, features: u64) -> Option<Effect> {
    if command == cast(vn::VIRTIO_NET_CTRL_MAC_ADDR_SET) {
        if features & features::CTRL_MAC_ADDR == 0 {
            return None;
        }
        let m: [u8; 6] = data.try_into().ok()?;
        filter.mac = m;
        return Some(Effect::Mac(m));
    }
    if command != cast(vn::VIRTIO_NET_CTRL_MAC_TABLE_SET) || features & features::CTRL_RX == 0 {
        return None;
    }
    let (uni, n_uni, rest) = table(data)?;
    let (multi, n_multi, rest) = table(rest)?;
    if !rest.is_empty() {
        return None;
    }
    filter.uni = macs(uni);
    filter.uni_overflow = n_uni > MAX_TABLE;
    filter.multi = macs(multi);
    if n_multi > MAX_TABLE {
        filter.allmulti = true;
    }
    Some(Effect::None)
}

fn offloads(data: &[u8], features: u64) -> Option<Effect> {
    let v = u64::from_le_bytes(data.try_into().ok()?);
    // Only guest-receive offloads that were negotiated may be switched (§5.1.6.5.6.2).
    if v & !(features & features::GUEST_OFFLOADS) != 0 {
        return None;
    }
    if features::check(v | (features & !features::GUEST_OFFLOADS)).is_err() {
        return None;
    }
    Some(Effect::Offloads(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x00, 0x16, 0x3e, 1, 2, 3];
    const ALL: u64 = features::BASE;

    fn table_bytes(macs: &[[u8; 6]]) -> Vec<u8> {
        let mut v = u32::try_from(macs.len()).unwrap().to_le_bytes().to_vec();
        for m in macs {
            v.extend_from_slice(m);
        }
        v
    }

    #[test]
    fn reset_state_is_promiscuous_then_filters_by_address() {
        let mut f = RxFilter::new(MAC);
        let other = [0x00, 0x16, 0x3e, 9, 9, 9];
        assert!(f.accepts(&other));
        assert_eq!(apply(&[0, 0, 0], &mut f, ALL), (OK, Effect::None));
        assert!(!f.accepts(&other));
        assert!(f.accepts(&MAC));
        assert!(f.accepts(&[0xff; 6]));
        let mcast = [0x01, 0x00, 0x5e, 0, 0, 1];
        assert!(!f.accepts(&mcast));
        let mut cmd = vec![1, 0];
        cmd.extend(table_bytes(&[other]));
        cmd.extend(table_bytes(&[mcast]));
        assert_eq!(apply(&cmd, &mut f, ALL), (OK, Effect::None));
        assert!(f.accepts(&other) && f.accepts(&mcast));
        assert_eq!(apply(&[0, 1, 1], &mut f, ALL), (OK, Effect::None));
        assert!(f.accepts(&[0x01, 0, 0x5e, 1, 1, 1]));
    }

    #[test]
    fn malformed_or_unnegotiated_commands_are_refused_without_effect() {
        let mut f = RxFilter::new(MAC);
        let before = f.clone();
        for bad in [
            &[][..],
            &[0],
            &[0, 0],
            &[0, 0, 1, 1],
            &[0, 2, 1],
            &[1, 0, 5, 0, 0, 0],
            &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9],
            &[1, 1, 1, 2, 3],
            &[2, 0, 0, 0],
            &[4, 0, 1, 0],
            &[5, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            &[3, 1],
        ] {
            assert_eq!(apply(bad, &mut f, ALL), (ERR, Effect::None), "{bad:?}");
        }
        assert_eq!(apply(&[0, 0, 0], &mut f, 0), (ERR, Effect::None));
        assert_eq!(f, before);
        // A table that claims 2^32-1 entries does not allocate or panic.
        let mut huge = vec![1, 0, 0xff, 0xff, 0xff, 0xff];
        huge.extend([0; 12]);
        assert_eq!(apply(&huge, &mut f, ALL), (ERR, Effect::None));
    }

    #[test]
    fn offloads_announce_and_mac() {
        let mut f = RxFilter::new(MAC);
        let set = |v: u64| {
            let mut c = vec![5, 0];
            c.extend(v.to_le_bytes());
            c
        };
        assert_eq!(
            apply(&set(features::GUEST_CSUM), &mut f, ALL),
            (OK, Effect::Offloads(features::GUEST_CSUM))
        );
        assert_eq!(apply(&set(0), &mut f, ALL), (OK, Effect::Offloads(0)));
        // TSO without CSUM breaks a dependency; USO was not negotiated.
        assert_eq!(apply(&set(features::GUEST_TSO4), &mut f, ALL).0, ERR);
        assert_eq!(
            apply(
                &set(features::GUEST_USO4 | features::GUEST_CSUM),
                &mut f,
                ALL
            )
            .0,
            ERR
        );
        assert_eq!(apply(&[3, 0], &mut f, ALL), (OK, Effect::AnnounceAck));
        let new = [0x02, 0, 0, 0, 0, 7];
        let mut c = vec![1, 1];
        c.extend(new);
        assert_eq!(apply(&c, &mut f, ALL), (OK, Effect::Mac(new)));
        assert_eq!(f.mac, new);
    }
}
