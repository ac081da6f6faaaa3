//! Host networking for Domus domains, the dom0 half of Xen's vifs: for each `vif` entry the host
//! gets a TAP `vifDOMID.DEVID` that the VMM receives as a file descriptor, wired by `script=` as
//! in Xen (xl-network-configuration(5)):
//!
//! - [`tap`]: TAP creation (TUNSETIFF; the kernel refuses TAP creation over netlink).
//! - [`netlink`]: links, bridge ports, MTU, MAC, addresses and host routes over rtnetlink, with
//!   no async runtime; proxy ARP and forwarding through their sysctls.
//! - [`nft`]: the nftables table `domus` (NAT masquerade, `ip=` anti-spoofing), loaded whole.
//! - [`natnet`]: the NAT network (bridge, dnsmasq, masquerade) kept in step with the NAT vifs.
//! - [`dnsmasq`]: the NAT network's DHCP/DNS server, its configuration, leases and supervision.
//! - [`globalconf`]: `vif.default.*` and the NAT subnet from the xl.conf-compatible global file.
//! - [`domain`]: all of a domain's vifs set up (all or nothing) and torn down.
//! - [`vif`]: one vif resolved from its entry and the defaults, plumbed and unplumbed.
//! - [`hotplug`]: `script=` resolution and Xen hotplug scripts run with libxl's arguments and
//!   environment.
//! - [`nodes`]: Xen's store nodes for a vif; guest MAC checks across domains.
//! - [`mac`]: guest MACs (Xen's OUI for random ones, multicast check).
//!
//! Every operation acts in the network namespace of the calling thread.

#![warn(missing_docs)]

pub mod dnsmasq;
pub mod domain;
pub mod globalconf;
pub mod hotplug;
pub mod mac;
pub mod natnet;
pub mod netlink;
pub mod nft;
pub mod nodes;
pub mod tap;
pub mod vif;
