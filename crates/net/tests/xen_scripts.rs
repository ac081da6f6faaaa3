//! Debian's own Xen `vif-bridge` (xen-utils-common 4.17, fetched by scripts/fetch-test-deps.sh)
//! run unmodified as a `script=` hotplug script: it reads `bridge` from a Domus store (the store
//! library's server, reached through `XENSTORED_PATH` by Xen's xenstore clients) and makes the TAP
//! a port of the bridge; `remove` takes it out again. The script runs inside the test namespace
//! through `ip netns exec` (which also gives it the namespace's /sys, which the script reads), with
//! a private tmpfs on /var/log holding the `/var/log/xen` that Xen's scripts log to (a Xen host has
//! it from xen-utils-common; this machine must not be changed).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Netns;
use domus_net::globalconf::NetDefaults;
use domus_net::netlink::Netlink;
use domus_net::vif::{VifPlan, VifRequest};
use domus_store::client::{Client, TxId};
use domus_store::server::{self, ServerConfig};

fn xen() -> PathBuf {
    let base = std::env::var_os("DOMUS_TESTDEPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/testdeps"));
    let xen = base.join("xen");
    assert!(
        xen.join("etc/xen/scripts/vif-bridge").exists() && xen.join("usr/bin/xenstore-read").exists(),
        "Debian's Xen scripts and clients are missing under {}: run scripts/fetch-test-deps.sh (or set DOMUS_TESTDEPS)",
        xen.display()
    );
    xen
}

#[test]
fn debians_vif_bridge_bridges_the_tap_from_the_domus_store() {
    let xen = xen();
    let ns = Netns::new("xs");
    ns.sh(
        "ip link add bridge0 type bridge && ip link set bridge0 mtu 1400 && ip link set bridge0 up",
    );
    let dir = std::env::temp_dir().join(format!("domus-net-xs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let sock = dir.join("store.sock");
    let store =
        server::spawn(ServerConfig::new(dir.join("state"), vec![sock.clone()])).expect("store");
    let mut c = Client::connect(&sock).expect("connect");
    c.write(
        TxId::NONE,
        "/local/domain/0/backend/vif/9/0/bridge",
        b"bridge0",
    )
    .expect("write");
    c.write(
        TxId::NONE,
        "/local/domain/0/backend/vif/9/0/script",
        b"vif-bridge",
    )
    .expect("write");

    let wrapper = dir.join("vif-bridge-in-ns");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexport PATH={x}/usr/bin:{x}/usr/sbin:$PATH LD_LIBRARY_PATH={x}/usr/lib/x86_64-linux-gnu\n\
             exec ip netns exec {ns} sh -c 'mount -t tmpfs none /var/log && mkdir /var/log/xen && exec \"$0\" \"$@\"' \
             {x}/etc/xen/scripts/vif-bridge \"$@\"\n",
            x = xen.display(),
            ns = ns.name
        ),
    )
    .expect("write");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let script = wrapper.display().to_string();
    let sock2 = sock.clone();
    ns.run(move || {
        let mut nl = Netlink::open().expect("netlink");
        let plan = VifPlan::resolve(
            9,
            0,
            &VifRequest {
                script: Some(&script),
                ..Default::default()
            },
            &NetDefaults::default(),
            &[],
        )
        .expect("plan");
        let t = Duration::from_secs(30);
        let fd = plan
            .plumb(&mut nl, Some(&sock2), t)
            .expect("vif-bridge add");
        let l = nl.link("vif9.0").expect("dump").expect("tap");
        assert_eq!(l.master, Some(nl.index("bridge0").expect("index")), "{l:?}");
        assert_eq!(l.mtu, Some(1400), "vif-bridge set the bridge's MTU");
        assert!(l.up);
        drop(fd);
        plan.unplumb(&mut nl, Some(&sock2), t)
            .expect("vif-bridge remove");
        assert!(nl.link("vif9.0").expect("dump").is_none());
    });
    store.shutdown().expect("store shutdown");
    std::fs::remove_dir_all(&dir).ok();
}
