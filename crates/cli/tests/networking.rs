//! Host networking end to end (issue 14): domusd runs inside a network namespace the test creates
//! (`ip netns exec`), with the probe guest answering ARP/ICMP on its virtio-net; the host side is
//! checked from inside that namespace (links, bridge ports, ICMP echo from a thread that joined
//! it) and through the store with Xen's own clients. No interface outside the namespace is
//! touched; dropping the host stops domusd and its VMMs, dropping the namespace removes what is
//! left in it.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use support::netns::Netns;
use support::{wait_for, Host, TIMEOUT};

/// The HOWTO's vif lines.
const FOO_VIF: &str = "vif = ['mac=aa:00:00:d1:00:09,bridge=bridge0']\n";
const NBSD_VIF: &str = "vif = ['mac=aa:00:00:50:02:f0,bridge=bridge0']\n";

/// A namespace with `bridge0` (10.0.9.1/24) and an "uplink" port with an ordinary MAC, as a
/// host's bridge has its physical NIC.
fn bridged_ns(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    ns.sh(
        "ip link add bridge0 type bridge && ip link add up0 address 02:00:00:00:00:01 type veth peer name up1 \
         && ip link set up0 master bridge0 && ip link set up0 up && ip link set up1 up \
         && ip addr add 10.0.9.1/24 dev bridge0 && ip link set bridge0 up",
    );
    ns
}

fn host_in(ns: &Netns) -> Host {
    Host::start_in(Some(&ns.name), Vec::new())
}

/// A probe config `file` for domain `name` running `scenario` with `vif` (virtio-net's queues
/// need more than the 16 MiB the other tests give the probe).
fn net_cfg(h: &Host, file: &str, name: &str, scenario: &str, vif: &str) {
    std::fs::write(
        h.path(&format!("cfg/{file}")),
        format!(
            "name = \"{name}\"\ntype = \"pvh\"\nkernel = \"{}\"\nextra = \"probe={scenario}\"\nmemory = 64\nvcpus = 1\n{vif}",
            h.bins.probe.display()
        ),
    )
    .unwrap();
}

fn vifs(ns: &Netns) -> Vec<String> {
    ns.links()
        .into_iter()
        .filter(|l| l.starts_with("vif"))
        .collect()
}

#[test]
fn howto_foo_and_nbsd_on_bridge0_answer_ping_and_reach_each_other() {
    let ns = bridged_ns("br");
    let h = host_in(&ns);
    let bridge_mac = ns.mac("bridge0");
    net_cfg(&h, "foo.cfg", "foo", "net-echo ip=10.0.9.10/24", FOO_VIF);
    net_cfg(&h, "nbsd.cfg", "nbsd", "net-echo ip=10.0.9.11/24", NBSD_VIF);
    h.ok(&["create", "foo.cfg"]);
    h.ok(&["create", "nbsd.cfg"]);
    let foo = h.row("foo").expect("foo listed").domid;
    let nbsd = h.row("nbsd").expect("nbsd listed").domid;
    h.wait_console("foo", "PROBE net-echo ready mac=aa:00:00:d1:00:09");
    h.wait_console("nbsd", "PROBE net-echo ready mac=aa:00:00:50:02:f0");
    for (d, _) in [(foo, "foo"), (nbsd, "nbsd")] {
        let vif = format!("vif{d}.0");
        assert_eq!(ns.master(&vif).as_deref(), Some("bridge0"), "{vif}");
        assert_eq!(ns.mac(&vif), "fe:ff:ff:ff:ff:ff", "{vif}");
    }
    assert_eq!(
        ns.mac("bridge0"),
        bridge_mac,
        "the bridge keeps its address"
    );
    assert!(ns.ping([10, 0, 9, 10], 5), "foo answers ping from the host");
    assert!(
        ns.ping([10, 0, 9, 11], 5),
        "nbsd answers ping from the host"
    );

    // network-list in xl's columns.
    let nl = h.ok(&["network-list", "foo"]);
    let lines: Vec<&str> = nl.lines().collect();
    assert_eq!(
        lines[0],
        "Idx BE Mac Addr.         handle state evt-ch   tx-/rx-ring-ref BE-path"
    );
    assert_eq!(
        lines[1],
        format!("0   0  aa:00:00:d1:00:09      0     4      -     -/-           /local/domain/0/backend/vif/{foo}/0")
    );
    // Store nodes as Xen has them, read with Xen's clients.
    let be = format!("/local/domain/0/backend/vif/{foo}/0");
    let fe = format!("/local/domain/{foo}/device/vif/0");
    let read = |p: &str| h.xenstore("xenstore-read", &[p]).trim().to_owned();
    assert_eq!(read(&format!("{be}/bridge")), "bridge0");
    assert_eq!(read(&format!("{be}/mac")), "aa:00:00:d1:00:09");
    assert_eq!(read(&format!("{be}/script")), "vif-bridge");
    assert_eq!(read(&format!("{be}/frontend")), fe);
    assert_eq!(read(&format!("{be}/frontend-id")), foo.to_string());
    assert_eq!(read(&format!("{be}/handle")), "0");
    assert_eq!(read(&format!("{be}/hotplug-status")), "connected");
    assert_eq!(read(&format!("{fe}/backend")), be);
    assert_eq!(read(&format!("{fe}/backend-id")), "0");
    assert_eq!(read(&format!("{fe}/mac")), "aa:00:00:d1:00:09");
    let ls = h.xenstore("xenstore-ls", &["-p", &be]);
    assert!(ls.contains(&format!("(n0,r{foo})")), "{ls}");
    let ls = h.xenstore("xenstore-ls", &["-p", &fe]);
    assert!(ls.contains(&format!("(n{foo},r0)")), "{ls}");
    let ls = h.xenstore("xenstore-ls", &[&be]);
    assert!(
        !ls.contains("vifname"),
        "no vifname node without vifname=: {ls}"
    );
    // list -l shows the resolved nic.
    let l = h.ok(&["list", "-l", "foo"]);
    let v: serde_json::Value = serde_json::from_str(&l).unwrap();
    let nic = &v[0]["config"]["nics"][0];
    assert_eq!(nic["mac"], "aa:00:00:d1:00:09", "{l}");
    assert_eq!(nic["bridge"], "bridge0", "{l}");
    assert_eq!(nic["script"], "vif-bridge", "{l}");

    // Guest to guest: nbsd again (same MAC, reused after its destroy), now pinging foo.
    h.ok(&["destroy", "nbsd"]);
    wait_for("vif of nbsd gone", TIMEOUT, || {
        (!ns.links().contains(&format!("vif{nbsd}.0"))).then_some(())
    });
    net_cfg(
        &h,
        "nbsd2.cfg",
        "nbsd",
        "net-ping ip=10.0.9.11/24 target=10.0.9.10 count=3",
        NBSD_VIF,
    );
    h.ok(&["create", "nbsd2.cfg"]);
    h.wait_console("nbsd", "PROBE net-ping target=10.0.9.10 sent=3 received=3");

    // nbsd powers off after its pings (on_poweroff destroy): its vif goes with it.
    wait_for("nbsd gone", TIMEOUT, || {
        h.row("nbsd").is_none().then_some(())
    });
    h.ok(&["destroy", "foo"]);
    wait_for("no vif left", TIMEOUT, || {
        vifs(&ns).is_empty().then_some(())
    });
    assert_eq!(
        ns.mac("bridge0"),
        bridge_mac,
        "the bridge keeps its address"
    );
    let ls = h.xenstore("xenstore-ls", &["/local/domain/0"]);
    assert!(
        !ls.contains("aa:00:00:d1:00:09") && !ls.contains("aa:00:00:50:02:f0"),
        "vif nodes removed: {ls}"
    );
}

/// Nothing of a refused create is left: no TAP, record, store node or extra domain.
fn assert_nothing_left(h: &Host, ns: &Netns, keep: &[String]) {
    assert_eq!(vifs(ns), keep, "only the expected TAPs exist");
    let names: Vec<String> = h.list().into_iter().map(|r| r.name).collect();
    assert_eq!(names.len(), 1 + keep.len(), "{names:?}");
    assert_eq!(h.records().len(), keep.len(), "no record left");
    let ls = h.xenstore("xenstore-ls", &["/local/domain"]);
    // Its name node (a bare "bad" would also match a random UUID's hex digits).
    assert!(
        !ls.contains("name = \"bad\""),
        "no store node of the refused domain: {ls}"
    );
}

#[test]
fn bad_input_is_refused_clearly_and_leaves_nothing() {
    let ns = bridged_ns("bad");
    let h = host_in(&ns);
    net_cfg(
        &h,
        "nobr.cfg",
        "bad",
        "net-echo ip=10.0.9.40/24",
        "vif = ['bridge=nobridge7']\n",
    );
    let e = h.fails(&["create", "nobr.cfg"]);
    assert!(
        e.contains("cannot start domain 'bad'")
            && e.contains("bridge `nobridge7` does not exist")
            && e.contains("script=vif-nat"),
        "{e}"
    );
    assert_nothing_left(&h, &ns, &[]);

    let script = h.path("failing-hotplug");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"refusing $1 for $vif\" >&2\nexit 3\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    net_cfg(
        &h,
        "fail.cfg",
        "bad",
        "net-echo ip=10.0.9.40/24",
        &format!("vif = ['bridge=bridge0,script={}']\n", script.display()),
    );
    let e = h.fails(&["create", "fail.cfg"]);
    assert!(
        e.contains("refusing add for vif"),
        "the script's stderr: {e}"
    );
    assert_nothing_left(&h, &ns, &[]);

    net_cfg(&h, "foo.cfg", "foo", "net-echo ip=10.0.9.10/24", FOO_VIF);
    h.ok(&["create", "foo.cfg"]);
    let foo = format!("vif{}.0", h.row("foo").unwrap().domid);
    net_cfg(&h, "dup.cfg", "bad", "net-echo ip=10.0.9.40/24", FOO_VIF);
    let e = h.fails(&["create", "dup.cfg"]);
    assert!(
        e.contains("mac=aa:00:00:d1:00:09 is already used by domain 'foo'"),
        "{e}"
    );
    assert_nothing_left(&h, &ns, std::slice::from_ref(&foo));
    net_cfg(
        &h,
        "mc.cfg",
        "bad",
        "net-echo ip=10.0.9.40/24",
        "vif = ['mac=01:00:5e:00:00:01,bridge=bridge0']\n",
    );
    let e = h.fails(&["create", "mc.cfg"]);
    assert!(e.contains("multicast"), "{e}");
    assert_nothing_left(&h, &ns, std::slice::from_ref(&foo));
    assert!(ns.ping([10, 0, 9, 10], 5), "foo unaffected");
    h.ok(&["destroy", "foo"]);
    wait_for("no vif left", TIMEOUT, || {
        vifs(&ns).is_empty().then_some(())
    });
}

fn nft_rules(ns: &Netns) -> String {
    ns.try_sh("nft list table inet domus").1
}

#[test]
fn kill9_domusd_keeps_the_network_and_a_later_destroy_cleans_up() {
    let ns = bridged_ns("k9");
    let mut h = host_in(&ns);
    net_cfg(
        &h,
        "foo.cfg",
        "foo",
        "net-echo ip=10.0.9.10/24",
        "vif = ['mac=aa:00:00:d1:00:09,bridge=bridge0,ip=10.0.9.10']\n",
    );
    h.ok(&["create", "foo.cfg"]);
    h.wait_console("foo", "PROBE net-echo ready");
    let vif = format!("vif{}.0", h.row("foo").unwrap().domid);
    assert!(ns.ping([10, 0, 9, 10], 5));
    let rules = nft_rules(&ns);
    assert_eq!(
        rules.matches(&format!("\"{vif}\"")).count(),
        1,
        "one anti-spoofing chain for the vif: {rules}"
    );
    h.kill9_domusd();
    assert!(ns.ping([10, 0, 9, 10], 5), "network works without domusd");
    // What a domusd killed inside a destroy (record gone, TAP not yet) leaves: swept at restart.
    ns.sh("ip tuntap add dev vif77.0 mode tap && ip link set vif77.0 address fe:ff:ff:ff:ff:ff");
    h.start_domusd();
    assert!(h.domusd_log().contains("re-adopted running domain"));
    assert!(ns.ping([10, 0, 9, 10], 5), "and after its restart");
    assert_eq!(
        nft_rules(&ns),
        rules,
        "the restarted domusd duplicated nothing"
    );
    assert_eq!(
        vifs(&ns),
        std::slice::from_ref(&vif),
        "vif77.0 swept, foo's kept"
    );
    h.ok(&["destroy", "foo"]);
    wait_for("no vif left", TIMEOUT, || {
        vifs(&ns).is_empty().then_some(())
    });
    assert!(
        !nft_rules(&ns).contains(&vif),
        "rules removed: {}",
        nft_rules(&ns)
    );
}

#[test]
fn ip_in_the_vif_line_drops_frames_from_other_source_addresses() {
    let ns = bridged_ns("spoof");
    let h = host_in(&ns);
    net_cfg(
        &h,
        "ok.cfg",
        "honest",
        "net-echo ip=10.0.9.10/24",
        "vif = ['mac=aa:00:00:00:00:10,bridge=bridge0,ip=10.0.9.10']\n",
    );
    net_cfg(
        &h,
        "spoof.cfg",
        "spoofer",
        "net-echo ip=10.0.9.22/24",
        "vif = ['mac=aa:00:00:00:00:22,bridge=bridge0,ip=10.0.9.12']\n",
    );
    h.ok(&["create", "ok.cfg"]);
    h.ok(&["create", "spoof.cfg"]);
    h.wait_console("honest", "PROBE net-echo ready");
    h.wait_console("spoofer", "PROBE net-echo ready");
    assert!(ns.ping([10, 0, 9, 10], 5), "its own address passes");
    assert!(
        !ns.ping([10, 0, 9, 22], 3),
        "replies from an address not in ip= are dropped"
    );
    h.ok(&["destroy", "spoofer"]);
    h.ok(&["destroy", "honest"]);
    wait_for("no vif left", TIMEOUT, || {
        vifs(&ns).is_empty().then_some(())
    });
    assert_eq!(
        nft_rules(&ns),
        "",
        "the domus table is gone with the last ip= vif"
    );
}

#[test]
fn routed_vif_answers_ping_through_a_host_route() {
    let ns = Netns::new("route");
    ns.sh(
        "ip link add eth0 type veth peer name eth1 && ip addr add 10.0.8.1/24 dev eth0 \
         && ip link set eth0 up && ip link set eth1 up",
    );
    let h = host_in(&ns);
    net_cfg(
        &h,
        "r.cfg",
        "routed",
        "net-echo ip=10.0.8.30/24",
        "vif = ['mac=aa:00:00:00:00:30,script=vif-route,ip=10.0.8.30,gatewaydev=eth0']\n",
    );
    h.ok(&["create", "r.cfg"]);
    h.wait_console("routed", "PROBE net-echo ready");
    let vif = format!("vif{}.0", h.row("routed").unwrap().domid);
    let routes = ns.sh("ip -4 route show 10.0.8.30");
    assert!(routes.contains(&format!("dev {vif}")), "{routes}");
    assert!(ns.ping([10, 0, 8, 30], 5), "routed guest answers");
    h.ok(&["destroy", "routed"]);
    wait_for("no vif left", TIMEOUT, || {
        vifs(&ns).is_empty().then_some(())
    });
    assert_eq!(ns.sh("ip -4 route show 10.0.8.30"), "", "route removed");
}

/// Debian's Xen scripts and clients (scripts/fetch-test-deps.sh).
fn xen_deps() -> std::path::PathBuf {
    let base = std::env::var_os("DOMUS_TESTDEPS").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/testdeps"),
        std::path::PathBuf::from,
    );
    let xen = base.join("xen");
    assert!(
        xen.join("etc/xen/scripts/vif-bridge").exists(),
        "Debian's Xen scripts are missing under {}: run scripts/fetch-test-deps.sh",
        xen.display()
    );
    xen
}

#[test]
fn debians_vif_bridge_as_script_bridges_the_guest() {
    let xen = xen_deps();
    let ns = bridged_ns("xs");
    let h = host_in(&ns);
    // Debian's script, unmodified, with Xen's clients on PATH and a private /var/log/xen (a Xen
    // host has it from xen-utils-common; this machine's /var/log is not touched).
    let wrapper = h.path("vif-bridge-debian");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexport PATH={x}/usr/bin:{x}/usr/sbin:$PATH LD_LIBRARY_PATH={x}/usr/lib/x86_64-linux-gnu\n\
             exec unshare -m --propagation private sh -c 'mount -t tmpfs none /var/log && mkdir /var/log/xen && exec \"$0\" \"$@\"' \
             {x}/etc/xen/scripts/vif-bridge \"$@\"\n",
            x = xen.display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    net_cfg(
        &h,
        "x.cfg",
        "xs",
        "net-echo ip=10.0.9.50/24",
        &format!(
            "vif = ['mac=aa:00:00:00:00:50,bridge=bridge0,script={}']\n",
            wrapper.display()
        ),
    );
    h.ok(&["create", "x.cfg"]);
    h.wait_console("xs", "PROBE net-echo ready");
    let d = h.row("xs").unwrap().domid;
    let vif = format!("vif{d}.0");
    assert_eq!(ns.master(&vif).as_deref(), Some("bridge0"));
    assert!(ns.ping([10, 0, 9, 50], 5));
    let st = h.xenstore(
        "xenstore-read",
        &[&format!("/local/domain/0/backend/vif/{d}/0/hotplug-status")],
    );
    assert_eq!(st.trim(), "connected");
    h.ok(&["destroy", "xs"]);
    wait_for("no vif left", TIMEOUT, || {
        vifs(&ns).is_empty().then_some(())
    });
}

/// Source addresses of the ICMP echo requests arriving in the calling thread's namespace within
/// `limit` (a raw socket sees a copy of each).
fn echo_request_sources(limit: std::time::Duration) -> Vec<[u8; 4]> {
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    let start = std::time::Instant::now();
    let mut out = Vec::new();
    while start.elapsed() < limit {
        let mut buf = [0u8; 256];
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n > 28 {
            let ihl = usize::from(buf[0] & 15) * 4;
            if buf[ihl] == 8 {
                out.push([buf[12], buf[13], buf[14], buf[15]]);
            }
        } else {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    // SAFETY: closing the socket opened above.
    unsafe { libc::close(fd) };
    out
}

/// Collects, in `remote`'s namespace for `secs` seconds, the source address of each ICMP echo request.
fn sniff_echo_request_sources(remote: &Netns, secs: u64) -> std::thread::JoinHandle<Vec<[u8; 4]>> {
    let path = format!("/run/netns/{}", remote.name);
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(path).unwrap();
        // SAFETY: setns(2) on a namespace descriptor just opened; only this thread moves.
        let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0);
        echo_request_sources(std::time::Duration::from_secs(secs))
    })
}

#[test]
fn nat_vif_reaches_a_remote_host_through_masquerade_with_a_static_lease() {
    let ns = Netns::new("nat");
    let remote = Netns::new("remote");
    ns.sh(&format!(
        "ip link add up0 type veth peer name up1 && ip link set up1 netns {} \
         && ip addr add 10.0.7.1/24 dev up0 && ip link set up0 up",
        remote.name
    ));
    remote.sh("ip addr add 10.0.7.2/24 dev up1 && ip link set up1 up");
    let h = host_in(&ns);
    net_cfg(
        &h,
        "n.cfg",
        "natted",
        "net-ping ip=192.168.122.50/24 gw=192.168.122.1 target=10.0.7.2 count=3",
        "vif = ['mac=aa:00:00:00:00:60,script=vif-nat,ip=192.168.122.50']\non_poweroff = \"preserve\"\n",
    );
    let sniff = sniff_echo_request_sources(&remote, 8);
    std::thread::sleep(std::time::Duration::from_millis(200));
    h.ok(&["create", "n.cfg"]);
    h.wait_console("natted", "PROBE net-ping target=10.0.7.2 sent=3 received=3");
    let seen = sniff.join().unwrap();
    assert!(
        !seen.is_empty() && seen.iter().all(|s| *s == [10, 0, 7, 1]),
        "the remote sees the host's address only: {seen:?}"
    );
    let hosts = std::fs::read_to_string(h.path("state/nat/dnsmasq.hosts")).unwrap();
    assert_eq!(
        hosts, "aa:00:00:00:00:60,192.168.122.50\n",
        "ip= is a static lease"
    );
    // The guest powered off after its pings (on_poweroff = "preserve"): a stopped domain has no
    // network, and the NAT network (bridge, dnsmasq, masquerade) goes with the last running NAT vif.
    wait_for("NAT network gone with the guest", TIMEOUT, || {
        (!ns.links().iter().any(|l| l == "domusnat0")
            && vifs(&ns).is_empty()
            && nft_rules(&ns).is_empty())
        .then_some(())
    });
    assert!(h.row("natted").is_some(), "the domain itself is preserved");
    h.ok(&["destroy", "natted"]);
    assert_eq!(h.list().len(), 1);
}

#[test]
fn a_random_mac_survives_on_reboot_restart_and_the_vif_is_recreated() {
    let ns = bridged_ns("rb");
    let h = host_in(&ns);
    net_cfg(
        &h,
        "r.cfg",
        "rebooter",
        "net-echo ip=10.0.9.70/24",
        "vif = ['bridge=bridge0']\non_reboot = \"restart\"\n",
    );
    h.ok(&["create", "r.cfg"]);
    h.wait_console("rebooter", "PROBE net-echo ready");
    let first = h.row("rebooter").unwrap().domid;
    // Whole MACs only: the log may end in the middle of a line the guest is still printing.
    let mac_of = |log: &str| -> Vec<String> {
        log.lines()
            .filter_map(|l| l.split("PROBE net-echo ready mac=").nth(1))
            .map(|r| r.split_whitespace().next().unwrap_or("").to_owned())
            .filter(|m| m.len() == "00:16:3e:00:00:00".len())
            .collect()
    };
    wait_for("first boot's MAC on the console", TIMEOUT, || {
        (!mac_of(&h.console_log("rebooter")).is_empty()).then_some(())
    });
    let macs = mac_of(&h.console_log("rebooter"));
    assert!(macs[0].starts_with("00:16:3e:"), "{macs:?}");
    assert!(ns.ping([10, 0, 9, 70], 5));
    h.ok(&["reboot", "rebooter"]);
    let second = wait_for("restarted", TIMEOUT, || {
        h.row("rebooter").map(|r| r.domid).filter(|d| *d != first)
    });
    wait_for("second boot on the console", TIMEOUT, || {
        (mac_of(&h.console_log("rebooter")).len() >= 2).then_some(())
    });
    let macs = mac_of(&h.console_log("rebooter"));
    assert_eq!(macs[0], macs[1], "the same guest MAC after the restart");
    assert_eq!(
        vifs(&ns),
        [format!("vif{second}.0")],
        "old vif gone, new one made"
    );
    assert_eq!(
        ns.master(&format!("vif{second}.0")).as_deref(),
        Some("bridge0")
    );
    assert!(ns.ping([10, 0, 9, 70], 5));
    h.ok(&["destroy", "rebooter"]);
    wait_for("no vif left", TIMEOUT, || {
        vifs(&ns).is_empty().then_some(())
    });
}

#[test]
fn nat_vif_with_ip_dhcp_gets_a_lease_and_reaches_a_remote_host_masqueraded() {
    let ns = Netns::new("natd");
    let remote = Netns::new("remoted");
    ns.sh(&format!(
        "ip link add up0 type veth peer name up1 && ip link set up1 netns {} \
         && ip addr add 10.0.8.1/24 dev up0 && ip link set up0 up",
        remote.name
    ));
    remote.sh("ip addr add 10.0.8.2/24 dev up1 && ip link set up1 up");
    let h = host_in(&ns);
    net_cfg(
        &h,
        "d.cfg",
        "leased",
        "net-ping ip=dhcp target=10.0.8.2 count=3",
        "vif = ['mac=aa:00:00:00:00:61,script=vif-nat']\n",
    );
    let sniff = sniff_echo_request_sources(&remote, 15);
    std::thread::sleep(std::time::Duration::from_millis(200));
    h.ok(&["create", "d.cfg"]);
    h.wait_console("leased", "PROBE net-ping target=10.0.8.2 sent=3 received=3");
    let log = h.console_log("leased");
    let lease = log
        .lines()
        .find_map(|l| l.split("PROBE net-ping dhcp ip=").nth(1))
        .unwrap_or_else(|| panic!("no dhcp line: {log}"));
    assert!(
        lease.starts_with("192.168.122.") && lease.contains("gw=192.168.122.1"),
        "a lease from the NAT network's dnsmasq, with the host as router: {lease}"
    );
    let seen = sniff.join().unwrap();
    assert!(
        !seen.is_empty() && seen.iter().all(|s| *s == [10, 0, 8, 1]),
        "the remote sees the host's address only: {seen:?}"
    );
}
