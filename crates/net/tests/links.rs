//! TAPs, bridges, MTU, MACs, addresses, host routes and proxy ARP inside test namespaces.

mod common;

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use common::Netns;
use domus_net::netlink::{set_ipv4_conf, Netlink};
use domus_net::tap::{self, HOST_SIDE_MAC};

const TUNGETIFF: libc::c_ulong = 0x8004_54d2;

#[test]
fn tap_is_created_with_the_flags_the_vmm_checks_and_persists_until_released() {
    let ns = Netns::new("tap");
    ns.run(|| {
        let fd = tap::create_tap("vif7.0").expect("create tap");
        let mut req = [0u8; 40];
        // SAFETY: TUNGETIFF fills a struct ifreq (40 bytes) at a live buffer of that size.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), TUNGETIFF, req.as_mut_ptr()) };
        assert_eq!(r, 0);
        let flags = i16::from_ne_bytes([req[16], req[17]]);
        let want = tap::IFF_TAP | tap::IFF_NO_PI | tap::IFF_VNET_HDR;
        assert_eq!(flags & want, want, "flags {flags:#x}");
        assert_eq!(&req[..7], b"vif7.0\0");
        drop(fd);
        let mut nl = Netlink::open().expect("netlink");
        let l = nl
            .link("vif7.0")
            .expect("dump")
            .expect("persistent TAP still there");
        assert_eq!(l.kind.as_deref(), Some("tun"));
        // Re-attach (a persistent TAP whose descriptor was closed), then delete while held.
        let fd = tap::create_tap("vif7.0").expect("re-attach");
        nl.delete_link_if_exists("vif7.0").expect("delete");
        assert!(
            nl.link("vif7.0").expect("dump").is_none(),
            "deleted while a descriptor is open"
        );
        drop(fd);
        nl.delete_link_if_exists("vif7.0")
            .expect("deleting a missing TAP is fine");
    });
}

#[test]
fn bad_tap_names_and_a_busy_name_are_refused() {
    let ns = Netns::new("tapbad");
    ns.run(|| {
        for bad in ["", "a/b", "sixteen-chars-xx", "a b", "x:1"] {
            let e = tap::create_tap(bad).expect_err(bad);
            assert!(e.to_string().contains("not a valid interface name"), "{e}");
        }
        let mut nl = Netlink::open().expect("netlink");
        nl.add_bridge("br9").expect("bridge");
        let e = tap::create_tap("br9").expect_err("a bridge has that name");
        assert!(
            e.to_string().contains("TUNSETIFF") && e.to_string().contains("br9"),
            "{e}"
        );
        let _held = tap::create_tap("vif1.0").expect("tap");
        // A persistent TAP without IFF_MULTI_QUEUE takes one descriptor at a time.
        let e = tap::create_tap("vif1.0").expect_err("busy");
        assert!(e.to_string().contains("vif1.0"), "{e}");
    });
}

#[test]
fn vif_joins_a_bridge_with_xens_host_mac_and_the_bridge_address_stays() {
    let ns = Netns::new("br");
    // The bridge's uplink stands in for the host NIC (a veth whose peer stays in the namespace).
    ns.sh("ip link add up0 address 02:00:00:00:00:10 type veth peer name up1");
    ns.run(|| {
        let mut nl = Netlink::open().expect("netlink");
        nl.add_bridge("bridge0").expect("bridge");
        let e = nl.add_bridge("bridge0").expect_err("exists");
        assert!(e.to_string().contains("add bridge bridge0"), "{e}");
        nl.set_mtu("bridge0", 1400).ok();
        nl.set_master("up0", Some("bridge0")).expect("uplink port");
        nl.set_up("bridge0", true).expect("up");
        let before = nl.link("bridge0").expect("dump").expect("bridge").mac;
        assert_eq!(before, Some([2, 0, 0, 0, 0, 0x10]), "lowest port MAC");
        let bridge_mtu = nl
            .link("bridge0")
            .expect("dump")
            .expect("bridge")
            .mtu
            .expect("mtu");

        let fds: Vec<_> = ["vif1.0", "vif2.0"]
            .iter()
            .map(|name| {
                let fd = tap::create_tap(name).expect("tap");
                nl.set_mac(name, HOST_SIDE_MAC).expect("mac");
                nl.set_mtu(name, bridge_mtu).expect("mtu");
                nl.set_master(name, Some("bridge0")).expect("master");
                nl.set_up(name, true).expect("up");
                fd
            })
            .collect();
        let br = nl.index("bridge0").expect("index");
        for name in ["vif1.0", "vif2.0"] {
            let l = nl.link(name).expect("dump").expect("tap");
            assert_eq!(l.master, Some(br), "{name} is a port of bridge0");
            assert_eq!(l.mac, Some(HOST_SIDE_MAC));
            assert_eq!(l.mtu, Some(bridge_mtu));
            assert!(l.up);
        }
        assert_eq!(
            nl.link("bridge0").expect("dump").expect("bridge").mac,
            before
        );
        // A guest-like MAC in Xen's OUI would sort below the uplink's and take over the bridge:
        // the reason the host side uses fe:ff:ff:ff:ff:ff.
        nl.set_mac("vif2.0", [0x00, 0x16, 0x3e, 0, 0, 1])
            .expect("mac");
        assert_ne!(
            nl.link("bridge0").expect("dump").expect("bridge").mac,
            before
        );
        nl.set_mac("vif2.0", HOST_SIDE_MAC).expect("mac");
        nl.set_master("vif1.0", None).expect("leave");
        assert_eq!(nl.link("vif1.0").expect("dump").expect("tap").master, None);
        drop(fds);
        for name in ["vif1.0", "vif2.0"] {
            nl.delete_link_if_exists(name).expect("delete");
            assert!(nl.link(name).expect("dump").is_none());
        }
        assert_eq!(
            nl.link("bridge0").expect("dump").expect("bridge").mac,
            before
        );
        nl.delete_link("bridge0").expect("delete");
        assert!(nl.link("bridge0").expect("dump").is_none());
        let e = nl
            .set_master("up0", Some("bridge0"))
            .expect_err("missing bridge");
        assert_eq!(e.to_string(), "no network interface named `bridge0`");
        let e = nl.set_up("nosuch0", true).expect_err("missing link");
        assert!(e.to_string().contains("nosuch0"), "{e}");
    });
}

#[test]
fn addresses_host_routes_and_proxy_arp() {
    let ns = Netns::new("rt");
    ns.sh("ip link add eth0 type veth peer name eth1");
    ns.run(|| {
        let mut nl = Netlink::open().expect("netlink");
        nl.set_up("eth0", true).expect("up");
        nl.add_address("eth0", Ipv4Addr::new(10, 1, 0, 1), 24)
            .expect("addr");
        nl.add_address("eth0", Ipv4Addr::new(10, 1, 0, 1), 24)
            .expect("again is fine");
        assert_eq!(
            nl.addresses("eth0").expect("addrs"),
            vec![(Ipv4Addr::new(10, 1, 0, 1), 24)]
        );
        let _fd = tap::create_tap("vif3.0").expect("tap");
        nl.set_up("vif3.0", true).expect("up");
        let guest = Ipv4Addr::new(10, 1, 0, 77);
        nl.add_host_route("vif3.0", guest).expect("route");
        nl.add_host_route("vif3.0", guest)
            .expect("replace is idempotent");
        assert_eq!(nl.host_routes("vif3.0").expect("routes"), vec![guest]);
        set_ipv4_conf("vif3.0", "proxy_arp", "1").expect("proxy_arp vif");
        set_ipv4_conf("eth0", "proxy_arp", "1").expect("proxy_arp gw");
        let v = std::fs::read_to_string("/proc/sys/net/ipv4/conf/eth0/proxy_arp").expect("read");
        assert_eq!(v.trim(), "1");
        nl.del_host_route("vif3.0", guest).expect("del");
        nl.del_host_route("vif3.0", guest)
            .expect("del again is fine");
        nl.del_host_route("gone0", guest)
            .expect("missing link is fine");
        assert!(nl.host_routes("vif3.0").expect("routes").is_empty());
        assert!(set_ipv4_conf("../x", "proxy_arp", "1").is_err());
    });
    // The namespace's own view agrees (and the host's was never touched).
    assert!(ns
        .sh("cat /proc/sys/net/ipv4/conf/eth0/proxy_arp")
        .starts_with('1'));
}
