//! The NAT network in a test "host" namespace: a "guest" namespace plugged into the NAT bridge
//! (a veth standing in for the TAP) reaches a "remote" namespace that sees only the host's address;
//! reconciling twice changes nothing; the last NAT vif gone takes bridge, dnsmasq and table away.

mod common;

use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

use common::Netns;
use domus_net::globalconf::NetDefaults;
use domus_net::natnet::{NatNetwork, NatVif};
use domus_net::netlink::Netlink;
use domus_net::nft;

#[test]
fn nat_network_masquerades_is_idempotent_and_goes_with_the_last_vif() {
    let host = Netns::new("nath");
    let guest = Netns::new("natg");
    let remote = Netns::new("natr");
    host.sh(&format!(
        "ip link add gv type veth peer name g0 netns {g} && ip link add hup type veth peer name r0 netns {r} \
         && ip addr add 172.16.0.1/24 dev hup && ip link set hup up && ip link set gv up",
        g = guest.name,
        r = remote.name
    ));
    guest.sh("ip link set g0 address 00:16:3e:00:00:50 && ip addr add 192.168.122.50/24 dev g0 && ip link set g0 up && ip route add default via 192.168.122.1");
    remote.sh("ip addr add 172.16.0.2/24 dev r0 && ip link set r0 up");
    let dir = std::env::temp_dir().join(format!("domus-net-nat-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");

    let defaults = NetDefaults {
        gatewaydev: Some("hup".into()),
        ..NetDefaults::default()
    };
    let vifs = vec![NatVif {
        mac: [0x00, 0x16, 0x3e, 0, 0, 0x50],
        ips: vec![Ipv4Addr::new(192, 168, 122, 50)],
    }];
    let d = dir.clone();
    let (pid, rules) = host.run(move || {
        let mut nl = Netlink::open().expect("netlink");
        let mut nat = NatNetwork::new(defaults.clone(), d.clone());
        nat.reconcile(&mut nl, &vifs, &[]).expect("up");
        nl.set_master("gv", Some("domusnat0")).expect("port");
        let pid = nat.dnsmasq_pid().expect("dnsmasq runs");
        let rules = std::process::Command::new("nft")
            .args(["list", "table", "inet", "domus"])
            .output()
            .expect("nft")
            .stdout;
        // A restarted domusd: a new NatNetwork adopts dnsmasq, and reconciling changes nothing.
        let mut again = NatNetwork::new(defaults, d.clone());
        assert_eq!(again.dnsmasq_pid(), Some(pid));
        again.reconcile(&mut nl, &vifs, &[]).expect("again");
        assert_eq!(again.dnsmasq_pid(), Some(pid));
        assert_eq!(
            nl.addresses("domusnat0").expect("addrs"),
            vec![(Ipv4Addr::new(192, 168, 122, 1), 24)]
        );
        std::mem::forget(nat);
        (pid, rules)
    });
    assert_eq!(host.sh("nft list table inet domus").into_bytes(), rules);
    assert_eq!(
        std::fs::read_to_string(dir.join("dnsmasq.hosts")).expect("hosts"),
        "00:16:3e:00:00:50,192.168.122.50\n"
    );

    let rx = remote.run(|| {
        let s = UdpSocket::bind(("172.16.0.2", 5100)).expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        s
    });
    guest.run(|| {
        let s = UdpSocket::bind(("192.168.122.50", 0)).expect("bind");
        for _ in 0..3 {
            s.send_to(b"hi", ("172.16.0.2", 5100)).expect("send");
        }
    });
    let mut buf = [0u8; 8];
    let (_, from) = rx.recv_from(&mut buf).expect("the remote receives");
    assert_eq!(
        from.ip().to_string(),
        "172.16.0.1",
        "masqueraded to the host's address"
    );

    let d = dir.clone();
    host.run(move || {
        let mut nl = Netlink::open().expect("netlink");
        let mut nat = NatNetwork::new(NetDefaults::default(), d);
        nat.reconcile(&mut nl, &[], &[]).expect("down");
        assert!(nl.link("domusnat0").expect("dump").is_none(), "bridge gone");
        assert!(!nft::table_exists().expect("nft"), "table gone");
        assert_eq!(nat.dnsmasq_pid(), None);
    });
    std::thread::sleep(Duration::from_millis(50));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "dnsmasq stopped: {stat}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
