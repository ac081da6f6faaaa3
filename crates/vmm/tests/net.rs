//! virtio-net on a TAP under the real domus-vmm binary on /dev/kvm, with the probe guest's driver
//! and IPv4 stack (`probe=net-*`). Every TAP, bridge and address lives in a network namespace the
//! test creates and deletes (`netns/mod.rs`); the VMM runs inside it (`ip netns exec`).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;
mod netns;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{control, run_vmm, temp_dir};
use netns::{field, icmp_echo, Netns};

const BOOT: Duration = Duration::from_secs(60);

#[test]
fn host_and_guest_ping_each_other_and_udp_echo_returns_payloads_intact() {
    let ns = Netns::new("echo");
    ns.tap("tap0", Some("10.0.0.1/24"));
    let dir = temp_dir("net-echo");
    let mut g = ns.guest(
        &dir,
        "echo",
        "vif = ['mac=00:16:3e:aa:bb:01,vifname=tap0']\nextra = \"probe=net-echo ip=10.0.0.2/24\"",
    );
    let link = g.wait_line("PROBE net link", BOOT);
    assert_eq!(field(&link, "mac"), "00:16:3e:aa:bb:01", "{link}");
    assert_eq!(field(&link, "mtu"), "1500", "{link}");
    assert_eq!(field(&link, "ctrl"), "ok", "{link}");
    let ready = g.wait_line("PROBE net-echo ready", BOOT);
    assert_eq!(
        ready,
        "PROBE net-echo ready mac=00:16:3e:aa:bb:01 ip=10.0.0.2"
    );
    // host -> guest ping.
    let pings = ns.run(|| {
        (0..3)
            .filter(|&s| icmp_echo([10, 0, 0, 2], s, Duration::from_secs(3)))
            .count()
    });
    assert_eq!(pings, 3, "host -> guest ping");
    // UDP echo of random 1400-byte payloads.
    let mismatches = ns.run(|| {
        let s = UdpSocket::bind("10.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(std::process::id());
        let mut bad = Vec::new();
        for i in 0..50 {
            let mut p = vec![0u8; 1400];
            for b in &mut p {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *b = seed as u8;
            }
            s.send_to(&p, "10.0.0.2:7").unwrap();
            let mut r = [0u8; 2000];
            match s.recv_from(&mut r) {
                Ok((n, from))
                    if n == 1400 && r[..n] == p[..] && from.to_string() == "10.0.0.2:7" => {}
                other => bad.push(format!("datagram {i}: {other:?}")),
            }
        }
        bad
    });
    assert!(mismatches.is_empty(), "{mismatches:?}");
    // The NIC's counters in the control socket's state: at least the 3 pings and 50 datagrams each
    // way, each datagram a 1442-byte frame (14 Ethernet + 20 IPv4 + 8 UDP + 1400), none over 1514.
    // The device thread counts a frame right after handing it to the TAP, so the host may see the
    // last echo a moment before its count: poll briefly.
    let counted = |st: &serde_json::Value| {
        let nic = &st["nics"][0];
        let n = |k: &str| nic[k].as_u64().unwrap_or_else(|| panic!("no {k}: {st}"));
        [("tx_bytes", "tx_packets"), ("rx_bytes", "rx_packets")]
            .iter()
            .all(|(bytes, packets)| {
                let (b, p) = (n(bytes), n(packets));
                p >= 53 && b >= 50 * 1442 && b <= p * 1514
            })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut st = control(&g.ctl, r#"{"cmd":"state"}"#);
    while !counted(&st) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        st = control(&g.ctl, r#"{"cmd":"state"}"#);
    }
    assert!(counted(&st), "{st}");
    // The power button ends the scenario with its frame counters.
    assert_eq!(control(&g.ctl, r#"{"cmd":"power-button"}"#)["ok"], true);
    let done = g.wait_line("PROBE net-echo rx=", BOOT);
    let rx: u64 = field(&done, "rx").parse().unwrap();
    let tx: u64 = field(&done, "tx").parse().unwrap();
    assert!(rx >= 53 && tx >= 53, "{done}");
    assert_eq!(g.wait_exit(BOOT), 0);
}

#[test]
fn guest_pings_host_and_sees_its_mtu() {
    let ns = Netns::new("ping");
    ns.tap("tap0", Some("10.0.2.1/24"));
    let dir = temp_dir("net-ping");
    let mut g = ns.guest(
        &dir,
        "ping",
        "vif = ['mac=02:00:00:00:00:07,vifname=tap0,mtu=1400']\nextra = \"probe=net-ping ip=10.0.2.2/24 target=10.0.2.1 count=5\"",
    );
    let link = g.wait_line("PROBE net link", BOOT);
    assert_eq!(field(&link, "mac"), "02:00:00:00:00:07", "{link}");
    assert_eq!(field(&link, "mtu"), "1400", "{link}");
    let line = g.wait_line("PROBE net-ping", BOOT);
    assert_eq!(field(&line, "target"), "10.0.2.1", "{line}");
    assert_eq!(field(&line, "sent"), "5", "{line}");
    assert_eq!(field(&line, "received"), "5", "{line}");
    let min: u64 = field(&line, "rtt_us_min").parse().unwrap();
    let max: u64 = field(&line, "rtt_us_max").parse().unwrap();
    assert!(min > 0 && min <= max, "{line}");
    assert_eq!(g.wait_exit(BOOT), 0);
}

#[test]
fn two_guests_on_one_bridge_ping_each_other() {
    let ns = Netns::new("bridge");
    ns.ip(&["link", "add", "br0", "type", "bridge"]);
    ns.ip(&["link", "set", "br0", "up"]);
    for t in ["tapa", "tapb"] {
        ns.tap(t, None);
        ns.ip(&["link", "set", t, "master", "br0"]);
    }
    let dir = temp_dir("net-bridge");
    let mut a = ns.guest(
        &dir,
        "a",
        "vif = ['mac=00:16:3e:00:00:0a,vifname=tapa']\nextra = \"probe=net-echo ip=10.0.3.10/24\"",
    );
    a.wait_line("PROBE net-echo ready", BOOT);
    let mut b = ns.guest(
        &dir,
        "b",
        "vif = ['mac=00:16:3e:00:00:0b,vifname=tapb']\nextra = \"probe=net-ping ip=10.0.3.11/24 target=10.0.3.10 count=5\"",
    );
    let line = b.wait_line("PROBE net-ping", BOOT);
    assert_eq!(field(&line, "received"), "5", "{line}");
    assert_eq!(b.wait_exit(BOOT), 0);
    assert_eq!(control(&a.ctl, r#"{"cmd":"power-button"}"#)["ok"], true);
    a.wait_line("PROBE net-echo rx=", BOOT);
    assert_eq!(a.wait_exit(BOOT), 0);
}

#[test]
fn rate_limited_stream_never_exceeds_rate_by_more_than_one_credit() {
    let ns = Netns::new("rate");
    ns.tap("tap0", Some("10.0.4.1/24"));
    let dir = temp_dir("net-rate");
    // 2 MB/s, credit every 50 ms: 100 000 bytes per credit.
    let (rate, credit) = (2_000_000f64, 100_000f64);
    let sock = ns.run(|| UdpSocket::bind("10.0.4.1:5001").unwrap());
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stamp_arrivals(&sock);
    let mut g = ns.guest(
        &dir,
        "rate",
        "vif = ['vifname=tap0,rate=2MB/s@50ms']\nextra = \"probe=net-tx ip=10.0.4.2/24 target=10.0.4.1:5001 bytes=3000000 size=1400\"",
    );
    let mut got = 0f64;
    let mut first: Option<f64> = None;
    let mut worst = 0f64;
    let mut buf = [0u8; 2048];
    while got < 3_000_000.0 {
        let Ok(n) = sock.recv(&mut buf) else { break };
        // The kernel's arrival time of this datagram (SIOCGSTAMPNS): the receiving thread's own
        // scheduling delays do not bend the measured spans.
        let now = arrival_secs(&sock);
        let t0 = *first.get_or_insert(now);
        // Bytes up to and including this datagram may not exceed rate * span + one credit (+ this
        // datagram's own frame, + 25 ms worth for the host's delivery jitter between the TAP write and
        // the socket's arrival timestamp: on the loaded 2-CPU test machines, softirq work for the
        // first frames of a burst was seen deferred by up to ~17 ms).
        got += n as f64;
        let allowed = rate * (now - t0 + 0.025) + credit + 1500.0;
        worst = worst.max(got - allowed);
    }
    assert!(got > 1_000_000.0, "only {got} bytes arrived");
    assert!(
        worst <= 0.0,
        "exceeded the rate by {worst} bytes beyond one credit"
    );
    let line = g.wait_line("PROBE net-tx", BOOT);
    assert_eq!(field(&line, "bytes"), "3000000", "{line}");
    assert_eq!(g.wait_exit(BOOT), 0);
}

/// Has the kernel timestamp every datagram for `sock` on arrival: the first SIOCGSTAMPNS turns
/// timestamping on (and fails: nothing received yet); without it the first datagram would get the
/// time of the call, not of its arrival.
fn stamp_arrivals(sock: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: SIOCGSTAMPNS writes at most one timespec into `ts`.
    let _no_datagram_yet = unsafe { libc::ioctl(sock.as_raw_fd(), 0x8907, &raw mut ts) };
}

/// When the last datagram read from `sock` arrived (kernel timestamp), in seconds.
fn arrival_secs(sock: &UdpSocket) -> f64 {
    use std::os::fd::AsRawFd;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: SIOCGSTAMPNS writes one timespec into `ts`.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), 0x8907, &raw mut ts) };
    assert_eq!(r, 0, "SIOCGSTAMPNS: {}", std::io::Error::last_os_error());
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

#[test]
fn bad_vifs_are_clear_errors() {
    let dir = temp_dir("net-bad");
    let probe = common::probe();
    let cases = [
        (
            "vifname=domusnosuchtap",
            "TAP device domusnosuchtap does not exist",
        ),
        (
            "mac=00:16:3e:zz:00:01,vifname=x",
            "invalid MAC address `00:16:3e:zz:00:01`",
        ),
        ("mac=01:16:3e:00:00:01,vifname=x", "multicast bit"),
        ("mtu=10,vifname=x", "invalid mtu `10`"),
        ("mtu=70000,vifname=x", "invalid mtu `70000`"),
    ];
    for (i, (vif, want)) in cases.iter().enumerate() {
        let cfg = dir.join(format!("bad{i}.cfg"));
        std::fs::write(
            &cfg,
            format!(
                "name = \"bad\"\nkernel = \"{}\"\nmemory = 64\nvif = ['{vif}']\n",
                probe.display()
            ),
        )
        .unwrap();
        let r = run_vmm(
            &["--config", cfg.to_str().unwrap()],
            Duration::from_secs(30),
        );
        assert_eq!(r.code, 1, "{vif}: {r:?}");
        assert!(
            r.stderr.contains(want),
            "{vif}: want {want:?} in {}",
            r.stderr
        );
        assert!(
            !r.stdout.contains("PROBE"),
            "{vif}: the guest must not start"
        );
    }
}

#[test]
fn hostile_driver_leaves_the_vmm_and_its_other_devices_working() {
    let ns = Netns::new("hostile");
    ns.tap("tap0", Some("10.0.5.1/24"));
    // Frames for the guest go out even while it answers no ARP (the flood below).
    ns.ip(&[
        "neigh",
        "add",
        "10.0.5.2",
        "lladdr",
        "00:16:3e:00:00:99",
        "dev",
        "tap0",
    ]);
    let sock = ns.run(|| UdpSocket::bind("10.0.5.1:5002").unwrap());
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let dir = temp_dir("net-hostile");
    let mut g = ns.guest(
        &dir,
        "hostile",
        "vif = ['mac=00:16:3e:00:00:99,vifname=tap0']\nextra = \"probe=net-hostile ip=10.0.5.2/24 target=10.0.5.1:5002\"",
    );
    let early = g.wait_line("PROBE net-hostile step=early-notify", BOOT);
    assert_eq!(early, "PROBE net-hostile step=early-notify used=0 then=1");
    for name in ["outside-ram", "loop", "oversized", "bad-csum", "bad-gso"] {
        let l = g.wait_line(&format!("PROBE net-hostile step={name} "), BOOT);
        assert_eq!(l, format!("PROBE net-hostile step={name} used=1 len=0"));
    }
    g.wait_line("PROBE net-hostile starving", BOOT);
    let before = g.rss_kib();
    let flooded = ns.run(|| {
        let s = UdpSocket::bind("10.0.5.1:0").unwrap();
        let p = [0x5au8; 1400];
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_millis(1500) {
            if s.send_to(&p, "10.0.5.2:9").is_ok() {
                n += 1;
            }
        }
        n
    });
    let after = g.rss_kib();
    assert!(flooded > 1000, "only {flooded} datagrams sent");
    assert!(
        after < before + 4096,
        "VMM RSS grew from {before} KiB to {after} KiB during the flood"
    );
    let reset = g.wait_line("PROBE net-hostile step=reset", BOOT);
    assert_eq!(reset, "PROBE net-hostile step=reset status=0");
    let done = g.wait_line("PROBE net-hostile done", BOOT);
    assert_eq!(done, "PROBE net-hostile done sent=1 rng=ok");
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hostile-survived");
    assert_eq!(g.wait_exit(BOOT), 0);
}

/// The TAP as domusd will hand it over: an inherited descriptor named in the spec (`--spec-json`),
/// attached (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR) by the parent, not opened by the VMM.
#[test]
fn an_inherited_tap_descriptor_in_the_spec_is_used() {
    let ns = Netns::new("fd");
    ns.tap("tapfd", Some("10.0.6.1/24"));
    let fd = ns.run(|| {
        use std::os::fd::IntoRawFd;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .unwrap();
        let mut req = [0u8; 40];
        req[..5].copy_from_slice(b"tapfd");
        let flags: i16 = 0x0002 | 0x1000 | 0x4000;
        req[16..18].copy_from_slice(&flags.to_ne_bytes());
        let fd = f.into_raw_fd();
        // SAFETY: TUNSETIFF on an open /dev/net/tun with a 40-byte ifreq.
        let r = unsafe { libc::ioctl(fd, 0x4004_54ca, req.as_mut_ptr()) };
        assert_eq!(r, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
        // SAFETY: clears FD_CLOEXEC so the VMM inherits it, as domusd does for handed-over files.
        let r = unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        assert_eq!(r, 0);
        fd
    });
    let dir = temp_dir("net-fd");
    let spec = serde_json::json!({
        "name": "fd", "uuid": "00000000-0000-4000-8000-000000000001", "domain_type": "pvh",
        "memory_mib": 64, "maxmem_mib": 64, "vcpus": 1,
        "kernel": { "path": common::probe() }, "boot": "pvh", "ramdisk": null,
        "cmdline": "probe=net-ping ip=10.0.6.2/24 target=10.0.6.1 count=3",
        "disks": [], "rng": null,
        "nics": [{ "devid": 0, "mac": "00:16:3e:00:06:02", "mtu": 1500, "rate": null,
                   "tap": { "name": "tapfd", "fd": fd } }],
    });
    let path = dir.join("spec.json");
    std::fs::write(&path, spec.to_string()).unwrap();
    // The child inherits `fd` (FD_CLOEXEC cleared above).
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(common::vmm())
        .args(["--spec-json", path.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    // SAFETY: closing the parent's copy of the descriptor it opened above.
    unsafe { libc::close(fd) };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("PROBE net-ping target=10.0.6.1 sent=3 received=3 "),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
}
