//! Host networking end to end (issue 14): domusd runs inside a network namespace the test creates
//! (`ip netns exec`), with the probe guest answering ARP/ICMP on its virtio-net; the host side is
//! checked from inside that namespace (links, bridge ports, ICMP echo from a thread that joined
//! it) and through the store with Xen's own clients. No interface outside the namespace is
//! touched; dropping the host stops domusd and its VMMs, dropping the namespace removes what is
//! left in it.

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
