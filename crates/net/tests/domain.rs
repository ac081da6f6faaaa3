//! A domain's vifs as a unit: all or nothing, MAC refusals before anything is made, teardown.

mod common;

use std::time::Duration;

use common::Netns;
use domus_net::domain::{self, DomainVif, ScriptEnv};
use domus_net::globalconf::NetDefaults;
use domus_net::netlink::Netlink;
use domus_net::vif::VifRequest;

const ENV: ScriptEnv<'static> = ScriptEnv {
    dirs: &[],
    xenstored_path: None,
    timeout: Duration::from_secs(5),
};

#[test]
fn howto_vifs_on_a_test_bridge_and_all_or_nothing() {
    let ns = Netns::new("dom");
    ns.run(|| {
        let mut nl = Netlink::open().expect("netlink");
        nl.add_bridge("bridge0").expect("bridge");
        let d = NetDefaults::default();
        // The HOWTO's foo: mac=aa:00:00:d1:00:09,bridge=bridge0.
        let foo = [DomainVif {
            devid: 0,
            mac: [0xaa, 0, 0, 0xd1, 0, 0x09],
            req: VifRequest {
                bridge: Some("bridge0"),
                ..Default::default()
            },
        }];
        let foo_p = domain::setup(&mut nl, 1, "foo", &foo, &[], &d, ENV).expect("foo");
        // nbsd reusing foo's MAC is refused, naming foo, before anything is made.
        let dup = [DomainVif {
            devid: 0,
            mac: foo[0].mac,
            req: foo[0].req.clone(),
        }];
        let running = vec![("foo".to_owned(), foo[0].mac)];
        let e = domain::setup(&mut nl, 2, "nbsd", &dup, &running, &d, ENV).expect_err("dup");
        assert_eq!(
            e.to_string(),
            "vif 0: mac=aa:00:00:d1:00:09 is already used by domain 'foo'"
        );
        assert!(nl.link("vif2.0").expect("dump").is_none());
        // A second vif on a missing bridge: the first one is taken down again.
        let two = [
            DomainVif {
                devid: 0,
                mac: [0xaa, 0, 0, 0x50, 0x02, 0xf0],
                req: VifRequest {
                    bridge: Some("bridge0"),
                    ..Default::default()
                },
            },
            DomainVif {
                devid: 1,
                mac: [0x00, 0x16, 0x3e, 0, 0, 2],
                req: VifRequest {
                    bridge: Some("nobridge"),
                    ..Default::default()
                },
            },
        ];
        let e =
            domain::setup(&mut nl, 2, "nbsd", &two, &running, &d, ENV).expect_err("missing bridge");
        assert!(
            e.to_string()
                .contains("vif 1: bridge `nobridge` does not exist"),
            "{e}"
        );
        assert!(
            nl.link("vif2.0").expect("dump").is_none(),
            "vif2.0 removed again"
        );
        assert!(nl.link("vif2.1").expect("dump").is_none());
        // The HOWTO's nbsd: mac=aa:00:00:50:02:f0,bridge=bridge0.
        let nbsd_p = domain::setup(&mut nl, 2, "nbsd", &two[..1], &running, &d, ENV).expect("nbsd");
        let br = nl.index("bridge0").expect("index");
        for n in ["vif1.0", "vif2.0"] {
            assert_eq!(
                nl.link(n).expect("dump").expect("tap").master,
                Some(br),
                "{n}"
            );
        }
        // A frame foo's guest sends (written to its TAP, after the 10-byte virtio-net header the
        // TAP expects by default) comes out of nbsd's TAP: the two guests share the bridge.
        nl.set_up("bridge0", true).expect("bridge up");
        let mut frame = vec![0u8; 10];
        frame.extend_from_slice(&[0xff; 6]);
        frame.extend_from_slice(&foo[0].mac);
        frame.extend_from_slice(&[0x88, 0xb5]);
        frame.extend_from_slice(b"from foo to nbsd, via bridge0 (padding to 60 bytes ....)");
        write_fd(&foo_p[0].fd, &frame);
        let got = read_until(&nbsd_p[0].fd, |f| f.len() > 24 && f[22..24] == [0x88, 0xb5]);
        assert_eq!(&got[10..], &frame[10..]);
        let plans: Vec<_> = foo_p.into_iter().chain(nbsd_p).map(|p| p.plan).collect();
        domain::teardown(&mut nl, &plans, ENV);
        domain::teardown(&mut nl, &plans, ENV);
        for n in ["vif1.0", "vif2.0"] {
            assert!(nl.link(n).expect("dump").is_none(), "{n}");
        }
    });
}

fn write_fd(fd: &std::os::fd::OwnedFd, buf: &[u8]) {
    use std::os::fd::AsRawFd;
    // SAFETY: write(2) from a live buffer of that length to an open TAP descriptor.
    let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    assert_eq!(n, buf.len() as isize, "{}", std::io::Error::last_os_error());
}

/// Reads frames from the TAP until `want` matches one (2 s at most).
fn read_until(fd: &std::os::fd::OwnedFd, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    use std::os::fd::AsRawFd;
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let mut buf = vec![0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(!left.is_zero(), "frame did not arrive");
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll(2) on one live pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) };
        if r <= 0 {
            continue;
        }
        // SAFETY: read(2) into a live buffer of that length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 && want(&buf[..n as usize]) {
            return buf[..n as usize].to_vec();
        }
    }
}
