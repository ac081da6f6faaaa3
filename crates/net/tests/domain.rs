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
        let plans: Vec<_> = foo_p.into_iter().chain(nbsd_p).map(|p| p.plan).collect();
        domain::teardown(&mut nl, &plans, ENV);
        domain::teardown(&mut nl, &plans, ENV);
        for n in ["vif1.0", "vif2.0"] {
            assert!(nl.link(n).expect("dump").is_none(), "{n}");
        }
    });
}
