//! The virtio-net parsers of untrusted guest bytes: a control-queue command (any class, command and
//! data against any negotiated features) and a transmit header (any header, frame length and
//! features) must be answered without panicking, and a refused command must leave the filter as it was.
#![no_main]

use domus_vmm::devices::virtio::net::ctrl::{apply, RxFilter, ERR};
use domus_vmm::devices::virtio::net::header::check_tx;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Input: 8 bytes of features, 12 bytes of header, 2 bytes of frame length, 2 of MTU, then the
    // control command.
    let take = |d: &[u8], n: usize| -> (Vec<u8>, Vec<u8>) {
        let k = d.len().min(n);
        (d[..k].to_vec(), d[k..].to_vec())
    };
    let (f, rest) = take(data, 8);
    let (h, rest) = take(&rest, 12);
    let (l, rest) = take(&rest, 2);
    let (m, cmd) = take(&rest, 2);
    let mut fb = [0u8; 8];
    fb[..f.len()].copy_from_slice(&f);
    let features = u64::from_le_bytes(fb);
    let mut hdr = [0u8; 12];
    hdr[..h.len()].copy_from_slice(&h);
    let frame_len = usize::from(u16::from_le_bytes([*l.first().unwrap_or(&0), *l.get(1).unwrap_or(&0)])) * 2;
    let mtu = u16::from_le_bytes([*m.first().unwrap_or(&0xdc), *m.get(1).unwrap_or(&5)]);
    let _ = check_tx(&hdr, frame_len, features, mtu);
    let mut filter = RxFilter::new([0, 0x16, 0x3e, 1, 2, 3]);
    let before = filter.clone();
    let (ack, _effect) = apply(&cmd, &mut filter, features);
    if ack == ERR {
        assert_eq!(filter, before, "a refused command changed the filter");
    }
    assert!(filter.uni.len() <= 64 && filter.multi.len() <= 64);
});
