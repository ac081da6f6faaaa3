//! The probe's DHCPv4 client (`ip=dhcp`) against dnsmasq, under the real domus-vmm binary on
//! /dev/kvm. dnsmasq (Debian's dnsmasq-base) runs in a network namespace the test creates, on the
//! TAP's address, with no configuration file, DNS off, its pid and lease files in the test's temp
//! dir, and is killed when the test ends (also after a failed assertion).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;
mod netns;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{control, temp_dir};
use netns::{field, icmp_echo, Netns};

const BOOT: Duration = Duration::from_secs(60);

/// dnsmasq serving DHCP on `tap0` of a namespace; killed and reaped on drop.
struct Dnsmasq {
    child: Child,
    leases: PathBuf,
}

impl Dnsmasq {
    fn start(ns: &Netns, dir: &Path, args: &[&str]) -> Self {
        let leases = dir.join("dnsmasq.leases");
        let log = std::fs::File::create(dir.join("dnsmasq.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "dnsmasq", "--no-daemon"])
            .args([
                "--conf-file=/dev/null",
                "--port=0",
                "--user=root",
                "--interface=tap0",
                "--bind-interfaces",
                "--log-dhcp",
                "--log-facility=-",
            ])
            .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
            .arg(format!("--dhcp-leasefile={}", leases.display()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ip netns exec dnsmasq (Debian package dnsmasq-base)");
        Self { child, leases }
    }

    /// The lease file's text.
    fn leases(&self) -> String {
        std::fs::read_to_string(&self.leases).unwrap_or_default()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        // `ip netns exec` execs dnsmasq: this is its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn guest_gets_its_static_lease_and_answers_pings_there() {
    let ns = Netns::new("dhcp-static");
    ns.tap("tap0", Some("10.0.16.1/24"));
    let dir = temp_dir("net-dhcp-static");
    let dns = Dnsmasq::start(
        &ns,
        &dir,
        &[
            "--dhcp-range=10.0.16.0,static,255.255.255.0,1h",
            "--dhcp-host=00:16:3e:dd:00:01,10.0.16.50",
        ],
    );
    let mut g = ns.guest(
        &dir,
        "static",
        "vif = ['mac=00:16:3e:dd:00:01,vifname=tap0']\nextra = \"probe=net-echo ip=dhcp\"",
    );
    let lease = g.wait_line("PROBE net-echo dhcp", BOOT);
    assert_eq!(
        lease,
        "PROBE net-echo dhcp ip=10.0.16.50/24 gw=10.0.16.1 server=10.0.16.1 lease=3600"
    );
    let ready = g.wait_line("PROBE net-echo ready", BOOT);
    assert_eq!(
        ready,
        "PROBE net-echo ready mac=00:16:3e:dd:00:01 ip=10.0.16.50 gw=10.0.16.1"
    );
    let leases = dns.leases();
    assert!(
        leases.contains("00:16:3e:dd:00:01 10.0.16.50"),
        "dnsmasq lease file: {leases:?}"
    );
    let pings = ns.run(|| {
        (0..3)
            .filter(|&s| icmp_echo([10, 0, 16, 50], s, Duration::from_secs(3)))
            .count()
    });
    assert_eq!(pings, 3, "host -> guest ping at the leased address");
    assert_eq!(control(&g.ctl, r#"{"cmd":"power-button"}"#)["ok"], true);
    g.wait_line("PROBE net-echo rx=", BOOT);
    assert_eq!(g.wait_exit(BOOT), 0);
}

#[test]
fn guest_leases_from_a_dynamic_range_and_pings_the_server() {
    let ns = Netns::new("dhcp-dyn");
    ns.tap("tap0", Some("10.0.17.1/24"));
    let dir = temp_dir("net-dhcp-dynamic");
    let dns = Dnsmasq::start(
        &ns,
        &dir,
        &["--dhcp-range=10.0.17.100,10.0.17.150,255.255.255.0,10m"],
    );
    let mut g = ns.guest(
        &dir,
        "dynamic",
        "vif = ['mac=02:00:00:00:17:02,vifname=tap0']\nextra = \"probe=net-ping ip=dhcp target=10.0.17.1 count=3\"",
    );
    let lease = g.wait_line("PROBE net-ping dhcp", BOOT);
    let (addr, prefix) = field(&lease, "ip").split_once('/').unwrap();
    let last: u8 = addr.strip_prefix("10.0.17.").unwrap().parse().unwrap();
    assert!((100..=150).contains(&last), "{lease}");
    assert_eq!(prefix, "24", "{lease}");
    assert_eq!(field(&lease, "gw"), "10.0.17.1", "{lease}");
    assert_eq!(field(&lease, "server"), "10.0.17.1", "{lease}");
    assert_eq!(field(&lease, "lease"), "600", "{lease}");
    let line = g.wait_line("PROBE net-ping target=", BOOT);
    assert_eq!(field(&line, "received"), "3", "{line}");
    assert_eq!(g.wait_exit(BOOT), 0);
    let leases = dns.leases();
    assert!(
        leases.contains(&format!("02:00:00:00:17:02 {addr}")),
        "dnsmasq lease file: {leases:?}"
    );
}

#[test]
fn no_dhcp_server_is_a_clear_failure_not_a_hang() {
    let ns = Netns::new("dhcp-none");
    ns.tap("tap0", Some("10.0.18.1/24"));
    let dir = temp_dir("net-dhcp-none");
    let mut g = ns.guest(
        &dir,
        "none",
        "vif = ['mac=02:00:00:00:18:02,vifname=tap0']\nextra = \"probe=net-rx ip=dhcp port=5001 bytes=1000\"",
    );
    let line = g.wait_line("PROBE net-rx dhcp", BOOT);
    assert_eq!(line, "PROBE net-rx dhcp failed reason=no-offer tries=4");
    assert!(
        !g.seen.iter().any(|l| l.starts_with("PROBE net-rx ready")),
        "{:#?}",
        g.seen
    );
    // The scenario ends there and the probe powers off.
    assert_eq!(g.wait_exit(BOOT), 0);
}

#[test]
fn udp_streams_run_both_ways_on_leased_addresses() {
    let ns = Netns::new("dhcp-stream");
    ns.tap("tap0", Some("10.0.19.1/24"));
    let dir = temp_dir("net-dhcp-stream");
    let _dns = Dnsmasq::start(
        &ns,
        &dir,
        &[
            "--dhcp-range=10.0.19.0,static,255.255.255.0,1h",
            "--dhcp-host=02:00:00:00:19:0a,10.0.19.10",
            "--dhcp-host=02:00:00:00:19:0b,10.0.19.11",
        ],
    );
    // Guest -> host.
    let sock = ns.run(|| UdpSocket::bind("10.0.19.1:5001").unwrap());
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tx = ns.guest(
        &dir,
        "tx",
        "vif = ['mac=02:00:00:00:19:0a,vifname=tap0']\nextra = \"probe=net-tx ip=dhcp target=10.0.19.1:5001 bytes=100000 size=1000\"",
    );
    let lease = tx.wait_line("PROBE net-tx dhcp", BOOT);
    assert_eq!(field(&lease, "ip"), "10.0.19.10/24", "{lease}");
    let mut got = 0usize;
    let mut buf = [0u8; 2000];
    while got < 100_000 {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                assert_eq!(from.to_string(), "10.0.19.10:40000", "sender");
                got += n;
            }
            Err(e) => panic!("after {got} bytes: {e}"),
        }
    }
    let done = tx.wait_line("PROBE net-tx bytes=", BOOT);
    assert_eq!(field(&done, "bytes"), "100000", "{done}");
    assert_eq!(tx.wait_exit(BOOT), 0);
    // Host -> guest.
    let mut rx = ns.guest(
        &dir,
        "rx",
        "vif = ['mac=02:00:00:00:19:0b,vifname=tap0']\nextra = \"probe=net-rx ip=dhcp port=5001 bytes=50000\"",
    );
    let lease = rx.wait_line("PROBE net-rx dhcp", BOOT);
    assert_eq!(field(&lease, "ip"), "10.0.19.11/24", "{lease}");
    let ready = rx.wait_line("PROBE net-rx ready", BOOT);
    assert_eq!(ready, "PROBE net-rx ready port=5001 ip=10.0.19.11");
    ns.run(|| {
        let s = UdpSocket::bind("10.0.19.1:0").unwrap();
        for _ in 0..50 {
            s.send_to(&[0x5a; 1000], "10.0.19.11:5001").unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let done = rx.wait_line("PROBE net-rx bytes=", BOOT);
    assert_eq!(field(&done, "bytes"), "50000", "{done}");
    assert_eq!(rx.wait_exit(BOOT), 0);
}
