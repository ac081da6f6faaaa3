//! One vif's host side in each mode, inside test namespaces: what is made, and that failures and
//! `unplumb` leave nothing behind.

mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use common::Netns;
use domus_net::globalconf::NetDefaults;
use domus_net::hotplug::Mode;
use domus_net::netlink::Netlink;
use domus_net::tap::HOST_SIDE_MAC;
use domus_net::vif::{VifPlan, VifRequest};

const T: Duration = Duration::from_secs(5);

fn plan(domid: u32, devid: u32, req: &VifRequest<'_>) -> VifPlan {
    VifPlan::resolve(domid, devid, req, &NetDefaults::default(), &[]).expect("resolves")
}

#[test]
fn resolution_follows_xl_defaults() {
    let p = plan(3, 0, &VifRequest::default());
    assert_eq!(
        (p.ifname.as_str(), p.mode.clone(), p.bridge.as_str()),
        ("vif3.0", Mode::Bridge, "xenbr0")
    );
    assert!(!p.vifname_set);
    let d = NetDefaults {
        script: "vif-nat".into(),
        ..NetDefaults::default()
    };
    let p = VifPlan::resolve(
        3,
        1,
        &VifRequest {
            vifname: Some("web0"),
            ip: Some("192.168.122.9"),
            ..Default::default()
        },
        &d,
        &[],
    )
    .expect("nat");
    assert_eq!(
        (p.ifname.as_str(), p.mode.clone(), p.bridge.as_str()),
        ("web0", Mode::Nat, "domusnat0")
    );
    assert!(p.vifname_set);
    assert_eq!(p.ips, vec![Ipv4Addr::new(192, 168, 122, 9)]);
    let e = VifPlan::resolve(
        3,
        2,
        &VifRequest {
            script: Some("vif-route"),
            ..Default::default()
        },
        &d,
        &[],
    )
    .expect_err("route without ip");
    assert!(
        e.to_string().contains("vif 2: script=vif-route needs ip="),
        "{e}"
    );
    let e = VifPlan::resolve(
        3,
        2,
        &VifRequest {
            ip: Some("10.0.0.300"),
            ..Default::default()
        },
        &d,
        &[],
    )
    .expect_err("bad ip");
    assert!(
        e.to_string()
            .contains("`10.0.0.300` is not an IPv4 address"),
        "{e}"
    );
    let e = VifPlan::resolve(
        3,
        2,
        &VifRequest {
            vifname: Some("much-too-long-name"),
            ..Default::default()
        },
        &d,
        &[],
    )
    .expect_err("long name");
    assert!(e.to_string().contains("much-too-long-name"), "{e}");
    let e = VifPlan::resolve(
        3,
        2,
        &VifRequest {
            script: Some("no-such-script"),
            ..Default::default()
        },
        &d,
        &[],
    )
    .expect_err("script");
    assert!(e.to_string().contains("no-such-script"), "{e}");
}

#[test]
fn bridge_mode_port_mtu_and_cleanup_and_missing_bridge() {
    let ns = Netns::new("vb");
    ns.run(|| {
        let mut nl = Netlink::open().expect("netlink");
        let p = plan(
            1,
            0,
            &VifRequest {
                bridge: Some("bridge0"),
                ..Default::default()
            },
        );
        let e = p.plumb(&mut nl, None, T).expect_err("no bridge");
        let m = e.to_string();
        assert!(
            m.contains("bridge `bridge0` does not exist")
                && m.contains("ip link add bridge0 type bridge")
                && m.contains("script=vif-nat"),
            "{m}"
        );
        assert!(nl.link("vif1.0").expect("dump").is_none(), "no TAP left");

        nl.add_bridge("bridge0").expect("bridge");
        nl.set_mtu("bridge0", 1400).expect("mtu");
        let fd = p.plumb(&mut nl, None, T).expect("plumb");
        let l = nl.link("vif1.0").expect("dump").expect("tap");
        assert_eq!(l.master, Some(nl.index("bridge0").expect("index")));
        assert_eq!(
            (l.mtu, l.mac, l.up),
            (Some(1400), Some(HOST_SIDE_MAC), true)
        );
        let q = plan(
            2,
            0,
            &VifRequest {
                bridge: Some("bridge0"),
                mtu: Some(1300),
                ..Default::default()
            },
        );
        let fd2 = q.plumb(&mut nl, None, T).expect("plumb mtu=");
        assert_eq!(
            nl.link("vif2.0").expect("dump").expect("tap").mtu,
            Some(1300)
        );
        drop((fd, fd2));
        p.unplumb(&mut nl, None, T).expect("unplumb");
        q.unplumb(&mut nl, None, T).expect("unplumb");
        p.unplumb(&mut nl, None, T).expect("unplumb twice");
        assert!(nl.link("vif1.0").expect("dump").is_none());
        assert!(nl.link("vif2.0").expect("dump").is_none());
    });
}

#[test]
fn route_mode_routes_proxy_arp_and_cleanup() {
    let ns = Netns::new("vr");
    ns.sh("ip link add eth0 type veth peer name eth1 && ip addr add 10.2.0.1/24 dev eth0 && ip link set eth0 up");
    ns.run(|| {
        let mut nl = Netlink::open().expect("netlink");
        let p = plan(
            4,
            0,
            &VifRequest {
                script: Some("vif-route"),
                ip: Some("10.2.0.50 10.2.0.51"),
                gatewaydev: Some("eth0"),
                ..Default::default()
            },
        );
        let fd = p.plumb(&mut nl, None, T).expect("plumb");
        let mut routes = nl.host_routes("vif4.0").expect("routes");
        routes.sort();
        assert_eq!(
            routes,
            vec![Ipv4Addr::new(10, 2, 0, 50), Ipv4Addr::new(10, 2, 0, 51)]
        );
        assert_eq!(
            nl.addresses("vif4.0").expect("addrs"),
            vec![(Ipv4Addr::new(10, 2, 0, 1), 32)]
        );
        for f in [
            "/proc/sys/net/ipv4/conf/vif4.0/proxy_arp",
            "/proc/sys/net/ipv4/conf/eth0/proxy_arp",
            "/proc/sys/net/ipv4/ip_forward",
        ] {
            assert_eq!(
                std::fs::read_to_string(f).expect("sysctl").trim(),
                "1",
                "{f}"
            );
        }
        drop(fd);
        p.unplumb(&mut nl, None, T).expect("unplumb");
        assert!(nl.link("vif4.0").expect("dump").is_none());
    });
}

fn script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p
}

#[test]
fn script_mode_runs_add_and_remove_and_a_failure_leaves_no_tap() {
    let ns = Netns::new("vs");
    let dir = std::env::temp_dir().join(format!("domus-net-vs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let log = dir.join("log");
    let good = script(
        &dir,
        "my-bridge",
        &format!("echo \"$1 $vif\" >> {l}; [ \"$1\" = add ] && ip link set \"$vif\" master bridge0 && ip link set \"$vif\" up; exit 0", l = log.display()),
    );
    let bad = script(&dir, "broken", "echo 'cannot find bridge' >&2; exit 1");
    let (good_s, bad_s) = (good.display().to_string(), bad.display().to_string());
    ns.run(move || {
        let mut nl = Netlink::open().expect("netlink");
        nl.add_bridge("bridge0").expect("bridge");
        let p = plan(
            5,
            0,
            &VifRequest {
                script: Some(&good_s),
                ..Default::default()
            },
        );
        assert_eq!(p.mode, Mode::Script(good_s.clone().into()));
        let fd = p.plumb(&mut nl, None, T).expect("plumb");
        let l = nl.link("vif5.0").expect("dump").expect("tap");
        assert_eq!(
            l.master,
            Some(nl.index("bridge0").expect("index")),
            "the script bridged it"
        );
        drop(fd);
        p.unplumb(&mut nl, None, T).expect("unplumb");
        assert!(nl.link("vif5.0").expect("dump").is_none());

        let q = plan(
            6,
            0,
            &VifRequest {
                script: Some(&bad_s),
                ..Default::default()
            },
        );
        let e = q.plumb(&mut nl, None, T).expect_err("script fails");
        assert!(
            e.to_string().contains("vif 0") && e.to_string().contains("cannot find bridge"),
            "{e}"
        );
        assert!(nl.link("vif6.0").expect("dump").is_none(), "no TAP left");
    });
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        "add vif5.0\nremove vif5.0\n"
    );
    std::fs::remove_dir_all(&dir).ok();
}
