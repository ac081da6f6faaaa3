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

/// Kills the test's dnsmasq if the test fails while it runs.
struct KillOnPanic(i32);

impl Drop for KillOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // SAFETY: kill(2) of the dnsmasq this test started.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

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
        let guard = KillOnPanic(pid);
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
        std::mem::forget(guard);
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

    // DHCP from the guest: the static lease for its MAC, a dynamic one for another MAC, with the
    // host as router.
    let offers = guest.run(|| {
        [
            [0x00, 0x16, 0x3e, 0, 0, 0x50],
            [0x00, 0x16, 0x3e, 0, 0, 0x77],
        ]
        .map(dhcp_offer)
    });
    assert_eq!(
        offers[0],
        Some((
            Ipv4Addr::new(192, 168, 122, 50),
            Some(Ipv4Addr::new(192, 168, 122, 1))
        ))
    );
    let (dynamic, router) = offers[1].expect("dynamic offer");
    assert!(
        dynamic.octets()[..3] == [192, 168, 122]
            && dynamic.octets()[3] >= 2
            && dynamic != Ipv4Addr::new(192, 168, 122, 50),
        "{dynamic}"
    );
    assert_eq!(router, Some(Ipv4Addr::new(192, 168, 122, 1)));

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

/// Sends a DHCPDISCOVER for `mac` out of `g0` and returns the offered address and router option.
fn dhcp_offer(mac: [u8; 6]) -> Option<(Ipv4Addr, Option<Ipv4Addr>)> {
    use std::os::fd::AsRawFd;
    let s = UdpSocket::bind(("0.0.0.0", 68)).expect("bind :68");
    s.set_broadcast(true).expect("broadcast");
    let dev = b"g0\0";
    // SAFETY: SO_BINDTODEVICE with a pointer to a NUL-terminated name and its length.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            dev.as_ptr().cast(),
            dev.len() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_BINDTODEVICE");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let xid = [0x12, 0x34, 0x56, mac[5]];
    let mut p = vec![0u8; 240];
    p[0] = 1; // BOOTREQUEST
    p[1] = 1; // Ethernet
    p[2] = 6;
    p[4..8].copy_from_slice(&xid);
    p[10] = 0x80; // broadcast reply
    p[28..34].copy_from_slice(&mac);
    p[236..240].copy_from_slice(&[99, 130, 83, 99]);
    p.extend_from_slice(&[53, 1, 1, 255]); // DHCPDISCOVER
    s.send_to(&p, ("255.255.255.255", 67)).expect("send");
    let mut buf = [0u8; 1500];
    loop {
        let (n, _) = s.recv_from(&mut buf).ok()?;
        let r = &buf[..n];
        if n < 240 || r[0] != 2 || r[4..8] != xid {
            continue;
        }
        let yiaddr = Ipv4Addr::new(r[16], r[17], r[18], r[19]);
        let mut router = None;
        let mut i = 240;
        while i + 1 < n && r[i] != 255 {
            if r[i] == 0 {
                i += 1;
                continue;
            }
            let len = usize::from(r[i + 1]);
            if r[i] == 3 && len >= 4 && i + 6 <= n {
                router = Some(Ipv4Addr::new(r[i + 2], r[i + 3], r[i + 4], r[i + 5]));
            }
            i += 2 + len;
        }
        return Some((yiaddr, router));
    }
}
