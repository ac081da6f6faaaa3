//! The probe's DHCP reply parser on arbitrary bytes: as a bare BOOTP payload (transaction and
//! client taken from the input itself, so the option walk is reached) and inside an Ethernet
//! frame through the IPv4 parser.
#![no_main]

use domus_probe::dhcp::parse_reply;
use domus_probe::ipv4::{parse, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let xid = data
        .get(4..8)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let mut mac = [0u8; 6];
    if let Some(m) = data.get(28..34) {
        mac.copy_from_slice(m);
    }
    if let Some(r) = parse_reply(data, xid, mac) {
        assert!(r.prefix.is_none_or(|p| p <= 32));
    }
    if let Parsed::Udp { data: payload, .. } = parse(data) {
        let _ = parse_reply(payload, xid, mac);
    }
});
