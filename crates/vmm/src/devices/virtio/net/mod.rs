//! virtio-net (virtio 1.2 §5.1): the machine's NICs, one virtio-mmio slot each, in the order of the
//! config's `vif` list, each backed by a TAP on the host.
//!
//! [`attach`] attaches to the vif's TAP ([`tap::Tap`]: an existing interface named by `vifname=`,
//! or a descriptor handed over by domusd), puts a [`device::NetDevice`] in the next slot of the
//! [`DeviceManager`] (announced in the DSDT like the disks) and starts its device thread
//! ([`event_handler`]).
//!
//! What a Linux guest (drivers/net/virtio_net.c over virtio_mmio/ACPI) sees:
//! - device type 1, VERSION_1 only; three queues: receiveq1 (up to 1024 entries; Linux takes the
//!   maximum), transmitq1 and controlq (256 each);
//! - features: CSUM, GUEST_CSUM, GUEST_TSO4/6, GUEST_ECN, HOST_TSO4/6, HOST_ECN, MRG_RXBUF, MTU,
//!   MAC, STATUS, CTRL_VQ, CTRL_RX, CTRL_MAC_ADDR, CTRL_GUEST_OFFLOADS, GUEST_ANNOUNCE; plus
//!   GUEST_USO4/6 and HOST_USO where the host's TAP knows UDP segmentation (Linux 6.2+, detected at
//!   run time). The dependencies of §5.1.3.1 are checked at DRIVER_OK (a broken set gets
//!   DEVICE_NEEDS_RESET); the guest-receive offloads are mirrored on the TAP (TUNSETOFFLOAD), at
//!   activation and on CTRL_GUEST_OFFLOADS_SET. The TAP takes UDP segmentation for both IP
//!   versions or not at all, so a driver that accepts GUEST_USO4 without GUEST_USO6 (or the
//!   reverse) is never handed a UDP segmentation frame (Linux accepts both);
//! - HOST_USO: a transmitted frame with `gso_type` VIRTIO_NET_HDR_GSO_UDP_L4 (NEEDS_CSUM set,
//!   `gso_size` the payload bytes per datagram, up to 64 KiB in all) goes to the TAP whole; the
//!   host's stack cuts it into datagrams, or hands it whole to a UDP_GRO socket or to another
//!   TAP whose guest accepts GUEST_USO;
//! - with GUEST_CSUM and GUEST_USO4 negotiated, datagrams of one IPv4 UDP flow that the TAP holds
//!   back to back may arrive as one UDP segmentation frame (`gso_type` VIRTIO_NET_HDR_GSO_UDP_L4,
//!   NEEDS_CSUM, `gso_size` the datagram payload) although the host sent them one by one: the
//!   device coalesces them as the host's UDP GRO would ([`coalesce`]; `DOMUS_NET_RX_COALESCE=0`
//!   turns it off);
//! - configuration space: `mac` (the vif's `mac=`), `status` LINK_UP (ANNOUNCE when asked),
//!   `max_virtqueue_pairs` 1, `mtu` (the vif's `mtu=`, default 1500);
//! - the 12-byte `virtio_net_hdr_v1` on every buffer, with or without MRG_RXBUF (§5.1.6.1); on
//!   receive `num_buffers` is the number of chains the frame fills (always 1 without MRG_RXBUF) and
//!   each chain's used length is what was written to it, header included; on transmit the used
//!   length is 0. Without MRG_RXBUF and without guest segmentation a receive chain must hold
//!   12 + 14 + 4 + MTU bytes (Linux posts 1526 for MTU 1500); a frame that does not fit the chain is
//!   dropped, never truncated;
//! - the device may hold receive chains it took from the available ring but did not fill (it
//!   gathers enough for the largest frame the negotiated offloads allow, and keeps the rest for
//!   the next frame); they go back to the ring before a pause or a state save ([`rx`]);
//! - receive mode and MAC table from the control queue; the reset state is promiscuous, and a
//!   control command the device does not know is answered VIRTIO_NET_ERR.
//!
//! `rate=` (xl's credit-based limit, [`rate`]) holds the transmit queue. Memory is bounded: no
//! allocation per frame, and with no receive buffers posted the TAP is not read at all.
//!
//! Latency: after the guest sends a frame the device thread keeps polling for 50 µs before it
//! sleeps (`DOMUS_NET_SPIN_US` in the VMM's environment changes it, 0 turns it off), so a reply and
//! the guest's next request are found without a thread wake-up; received frames alone never spin.
//! Throughput: while the TAP streams (a receive pass moved 8 frames or more) the thread leaves it
//! unpolled for 200 µs and then reads what gathered in one pass (`DOMUS_NET_RX_HOLD_US`, 0: off),
//! and it asks the kernel for a 100 µs scheduling slice so that it runs soon after it wakes
//! (`DOMUS_NET_SLICE_US`, 0: the default slice); see [`moderation`]. A lone frame after a quiet
//! spell is read at once.

pub mod coalesce;
#[cfg(test)]
mod coalesce_tests;
pub mod ctrl;
pub mod device;
pub mod event_handler;
pub mod features;
pub mod header;
pub mod iov;
pub mod moderation;
pub mod rate;
pub mod rx;
pub mod sys;
pub mod tap;
#[cfg(test)]
mod tests;
pub mod tx;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use domus_spec::NicSpec;
use kvm_ioctls::VmFd;

use super::manager::{registrar_for, DeviceManager, DeviceManagerError};
use crate::threads;
use crate::vstate::memory::GuestRam;
pub use device::NetShared;
use tap::{Tap, TapError};

/// Queue size of the transmit and control queues.
pub const QUEUE_SIZE: u16 = 256;
/// Largest size of the receive queue: a long receive ring lets the device go on filling buffers
/// while the vCPU is off its CPU (on a busy host for milliseconds, while the TAP keeps receiving),
/// and the driver needs to repost (and kick) less often. QEMU's virtio-net offers 256 unless told
/// otherwise (`rx_queue_size`).
pub const RX_QUEUE_SIZE: u16 = 1024;
/// The virtio-net header with VERSION_1 (`virtio_net_hdr_v1`, `num_buffers` included).
pub const HDR_LEN: usize = 12;
/// receiveq1.
pub const RX_QUEUE: usize = 0;
/// transmitq1.
pub const TX_QUEUE: usize = 1;
/// controlq.
pub const CTRL_QUEUE: usize = 2;
/// MTU when the vif sets none.
pub const DEFAULT_MTU: u16 = 1500;
/// Smallest MTU (IPv4's minimum, and what the config's vif parser accepts).
pub const MIN_MTU: u32 = 68;
/// Largest MTU a TAP takes (the config space field is 16 bits).
pub const MAX_MTU: u32 = 65_535;

/// A NIC cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The TAP.
    #[error("vif {devid}")]
    Tap {
        /// devid.
        devid: u32,
        /// Cause.
        #[source]
        source: TapError,
    },
    /// MTU out of range.
    #[error("vif {devid}: mtu={mtu} is out of range: expected {MIN_MTU}..={MAX_MTU}")]
    Mtu {
        /// devid.
        devid: u32,
        /// Given.
        mtu: u32,
    },
    /// No slot, or KVM wiring.
    #[error(transparent)]
    Slot(#[from] DeviceManagerError),
    /// Host resources (eventfd, thread).
    #[error("vif {devid}: {what}")]
    Host {
        /// devid.
        devid: u32,
        /// What failed.
        what: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A NIC's traffic counters (xentop's NETTX/NETRX), from the guest's point of view: bumped by the
/// device thread per frame moved (virtio-net header excluded), read by the control socket's `state`.
/// Relaxed atomics: no lock and no allocation on the frame path.
#[derive(Debug, Default)]
pub struct NetStats {
    tx_bytes: AtomicU64,
    tx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    rx_packets: AtomicU64,
}

impl NetStats {
    /// Counts a frame of `bytes` the guest sent.
    pub fn sent(&self, bytes: u64) {
        self.tx_packets.fetch_add(1, Ordering::Relaxed);
        self.tx_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts a frame of `bytes` the guest received.
    pub fn received(&self, bytes: u64) {
        self.rx_packets.fetch_add(1, Ordering::Relaxed);
        self.rx_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> domus_vmm_api::NicStats {
        domus_vmm_api::NicStats {
            tx_bytes: self.tx_bytes.load(Ordering::Relaxed),
            tx_packets: self.tx_packets.load(Ordering::Relaxed),
            rx_bytes: self.rx_bytes.load(Ordering::Relaxed),
            rx_packets: self.rx_packets.load(Ordering::Relaxed),
        }
    }
}

/// Attaches the TAP of `nic` (before any KVM resource exists, so a missing TAP is a configuration
/// error): the inherited descriptor, else the existing interface named in the spec.
///
/// # Errors
/// [`NetError::Tap`].
pub fn open_tap(nic: &crate::config::VmNic) -> Result<Tap, NetError> {
    let devid = nic.spec.devid;
    let fd = nic
        .fd
        .as_ref()
        .map(std::os::fd::OwnedFd::try_clone)
        .transpose()
        .map_err(|source| NetError::Host {
            devid,
            what: "cannot duplicate the inherited TAP descriptor",
            source,
        })?;
    match fd {
        Some(fd) => Tap::from_fd(fd),
        None => Tap::open(&nic.spec.tap.name),
    }
    .map_err(|source| NetError::Tap { devid, source })
}

/// Adds the NIC `vif` on `tap` to `manager` and starts its thread.
///
/// # Errors
/// [`NetError`].
pub fn attach(
    manager: &mut DeviceManager,
    vm: &VmFd,
    ram: &GuestRam,
    vif: &NicSpec,
    tap: Tap,
) -> Result<Arc<NetShared>, NetError> {
    let devid = vif.devid;
    let mtu = vif.mtu;
    if u32::from(mtu) < MIN_MTU {
        return Err(NetError::Mtu {
            devid,
            mtu: u32::from(mtu),
        });
    }
    let tap_name = tap.name().to_owned();
    let shared = Arc::new(NetShared::new(tap, vif.mac.0, mtu));
    let name = format!("virtio-net vif{devid}");
    let registrar = registrar_for(vm, 3);
    let attached = manager.add(
        &*registrar,
        ram,
        name.clone(),
        Box::new(device::NetDevice::new(Arc::clone(&shared))),
    )?;
    let host = |what: &'static str| {
        move |source| NetError::Host {
            devid,
            what,
            source,
        }
    };
    let (control, mailbox) =
        threads::control_channel(&name).map_err(host("cannot create an eventfd"))?;
    let notify: [vmm_sys_util::eventfd::EventFd; 3] =
        attached.notify.try_into().map_err(|_| NetError::Host {
            devid,
            what: "the transport did not give three queue notifications",
            source: std::io::Error::from(std::io::ErrorKind::InvalidData),
        })?;
    let limiter = vif
        .rate
        .map(|r| rate::CreditLimiter::new(r.bytes_per_second, r.interval_us));
    manager.add_nic_stats(Arc::clone(&shared.stats));
    let worker = event_handler::Worker {
        transport: Arc::clone(&attached.transport),
        shared: Arc::clone(&shared),
        notify,
        events: mailbox,
        limiter,
    };
    manager.add_thread_of(
        crate::threads::ThreadKind::Net,
        format!("net-vif{devid}"),
        control,
        Box::new(move || worker.run()),
    );
    tracing::info!(dev = %name, tap = %tap_name, slot = attached.slot, mac = %vif.mac, mtu, uso = shared.tap.has_uso(), "virtio-net NIC ready");
    Ok(shared)
}
