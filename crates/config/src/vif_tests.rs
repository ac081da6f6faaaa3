//! Table-driven tests of vif specs: every key of xl-network-configuration(5).

use super::*;

fn spec(text: &str) -> VifSpec {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn keys_table() {
    type Check = fn(&VifSpec) -> bool;
    let cases: &[(&str, Check)] = &[
        ("", |v| *v == VifSpec::default()),
        ("mac=00:16:3E:74:3d:76", |v| {
            v.mac == Some(MacAddr([0x00, 0x16, 0x3e, 0x74, 0x3d, 0x76]))
        }),
        ("mac=aa:00:00:d1:00:09,bridge=bridge0", |v| {
            v.mac == Some(MacAddr([0xaa, 0, 0, 0xd1, 0, 0x09]))
                && v.bridge.as_deref() == Some("bridge0")
        }),
        ("mac=aa:00:00:50:02:f0, bridge=bridge0", |v| {
            v.mac == Some(MacAddr([0xaa, 0, 0, 0x50, 0x02, 0xf0]))
                && v.bridge.as_deref() == Some("bridge0")
        }),
        ("ip=192.0.2.1 192.0.2.2", |v| {
            v.ip.as_deref() == Some("192.0.2.1 192.0.2.2")
        }),
        ("script=vif-route", |v| {
            v.script.as_deref() == Some("vif-route")
        }),
        ("vifname=web0", |v| v.vifname.as_deref() == Some("web0")),
        ("model=e1000", |v| v.model.as_deref() == Some("e1000")),
        ("type=ioemu", |v| v.vif_type == Some(VifType::Ioemu)),
        ("type=vif", |v| v.vif_type == Some(VifType::Vif)),
        ("mtu=9000", |v| v.mtu == Some(9000)),
        ("gatewaydev=eth0", |v| {
            v.gatewaydev.as_deref() == Some("eth0")
        }),
        ("netdev=eth1", |v| v.gatewaydev.as_deref() == Some("eth1")),
        ("backend=netdom", |v| v.backend.as_deref() == Some("netdom")),
        ("devid=3", |v| v.devid == Some(3)),
        ("accel=netfront", |v| *v == VifSpec::default()),
        (" , bridge = xenbr1 ,", |v| {
            v.bridge.as_deref() == Some("xenbr1")
        }),
    ];
    for (text, check) in cases {
        let v = spec(text);
        assert!(check(&v), "{text}: {v:?}");
        assert_eq!(spec(&v.to_string()), v, "{text} round trip via {v}");
    }
}

#[test]
fn rates() {
    let cases: &[(&str, u64, u64)] = &[
        ("10Mb/s", 1_250_000, 50_000),
        ("250KB/s", 250_000, 50_000),
        ("1MB/s@20ms", 1_000_000, 20_000),
        ("1GB/s@1s", 1_000_000_000, 1_000_000),
        ("8b/s@100us", 1, 100),
        ("100B/s@300", 100, 300),
        ("5Gb/s", 625_000_000, 50_000),
        ("64Kb/s", 8_000, 50_000),
        ("12/s", 12, 50_000),
    ];
    for (text, bytes, interval) in cases {
        let v = spec(&format!("rate={text}"));
        let rate = v.rate.unwrap();
        assert_eq!(rate.bytes_per_second, *bytes, "{text}");
        assert_eq!(rate.interval_us, *interval, "{text}");
        assert_eq!(spec(&v.to_string()), v, "{text}");
    }
}

#[test]
fn bad_specs() {
    let cases: &[(&str, &str)] = &[
        (
            "mac=00:16:3e:zz:00:01",
            "invalid MAC address `00:16:3e:zz:00:01`: expected six pairs of hex digits",
        ),
        (
            "mac=00:16:3e:00:01",
            "invalid MAC address `00:16:3e:00:01`: expected six pairs",
        ),
        (
            "mac=00:16:3e:00:01:02:03",
            "invalid MAC address `00:16:3e:00:01:02:03`",
        ),
        ("mac=0:16:3e:0:1:2", "invalid MAC address `0:16:3e:0:1:2`"),
        ("mac=001122334455", "invalid MAC address `001122334455`"),
        (
            "mac=01:00:5e:00:00:01",
            "invalid MAC address `01:00:5e:00:00:01`: the multicast bit",
        ),
        (
            "mac=00:00:00:00:00:00",
            "invalid MAC address `00:00:00:00:00:00`: expected a non-zero address",
        ),
        ("mac=", "invalid MAC address ``"),
        ("bridge", "unknown vif parameter `bridge`"),
        (
            "colour=red",
            "unknown vif parameter `colour=red`: expected mac=, bridge=",
        ),
        (
            "bridge=a,bridge=b",
            "vif parameter `bridge` is specified twice",
        ),
        (
            "gatewaydev=a,netdev=b",
            "vif parameter `gatewaydev` is specified twice",
        ),
        ("type=pci", "invalid vif type `pci`: expected ioemu or vif"),
        (
            "mtu=10",
            "invalid mtu `10`: expected a decimal MTU between 68 and 65535",
        ),
        ("mtu=+1500", "invalid mtu `+1500`"),
        ("mtu=70000", "invalid mtu `70000`"),
        ("devid=x", "invalid devid `x`: expected a decimal device id"),
        (
            "rate=10Mb",
            "invalid rate `10Mb`: expected RATE/s[@INTERVAL]",
        ),
        ("rate=10XB/s", "invalid rate `10XB/s`: expected a unit"),
        (
            "rate=Mb/s",
            "invalid rate `Mb/s`: expected a decimal number",
        ),
        (
            "rate=0MB/s",
            "invalid rate `0MB/s`: expected at least 1 byte per second",
        ),
        (
            "rate=1b/s",
            "invalid rate `1b/s`: expected at least 1 byte per second",
        ),
        (
            "rate=1MB/s@",
            "invalid rate `1MB/s@`: expected a decimal interval",
        ),
        (
            "rate=1MB/s@5h",
            "invalid rate `1MB/s@5h`: expected an interval unit",
        ),
        (
            "rate=1MB/s@0ms",
            "invalid rate `1MB/s@0ms`: expected an interval between",
        ),
        (
            "rate=99999999999999GB/s",
            "invalid rate `99999999999999GB/s`: rate too large",
        ),
    ];
    for (text, want) in cases {
        let err = text.parse::<VifSpec>().unwrap_err().to_string();
        assert!(err.starts_with(want), "{text}:\n got {err}\nwant {want}");
    }
}

#[test]
fn resolve_generates_xen_macs_and_devids() {
    let v = VifConfig::resolve(&VifSpec::default(), 2);
    assert_eq!(v.devid, 2);
    assert_eq!(&v.mac.0[..3], &[0x00, 0x16, 0x3e]);
    assert_eq!(v.mac.0[3] & 0x80, 0);
    let other = VifConfig::resolve(&VifSpec::default(), 2);
    assert_ne!(v.mac, other.mac, "two generated MACs should differ");
    let given = VifConfig::resolve(&spec("mac=aa:00:00:d1:00:09,devid=7"), 0);
    assert_eq!(given.devid, 7);
    assert_eq!(given.mac.to_string(), "aa:00:00:d1:00:09");
    let json = serde_json::to_value(&given).unwrap();
    assert_eq!(json["mac"], "aa:00:00:d1:00:09");
    assert_eq!(json["devid"], 7);
    assert!(json["bridge"].is_null());
    assert!(json["type"].is_null());
    let back: VifConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back, given);
    assert_eq!(VifConfig::resolve(&VifSpec::from(&given), 0), given);
}
