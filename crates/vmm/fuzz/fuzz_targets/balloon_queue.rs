//! The balloon's queue walk is driven by untrusted guest memory: any descriptor table, available ring
//! and PFN list must be served (or refused) without panicking or looping forever; a PFN outside guest
//! RAM is ignored, never discarded.
#![no_main]

use std::sync::Arc;

use domus_vmm::devices::virtio::balloon::device::{BalloonDevice, BalloonShared};
use domus_vmm::devices::virtio::balloon::event_handler::process;
use domus_vmm::devices::virtio::mmio::MmioTransport;
use domus_vmm::devices::virtio::test_utils::{handshake, test_ram, QueueLayout};
use libfuzzer_sys::fuzz_target;
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::EventFd;

const RING: [u64; 2] = [0x1000, 0x4000];
/// Where the input's PFN bytes land (descriptors may point anywhere).
const PFNS: u64 = 0x8000;

fuzz_target!(|data: &[u8]| {
    let ram = test_ram(1 << 20);
    // Input: 1 byte queue selector (bit 0: inflate or deflate), 256 bytes of descriptor table
    // (16 entries), the available ring (flags, idx, 16 entries = 36 bytes), then PFN bytes.
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let queue = usize::from(sel & 1);
    let (table, rest) = rest.split_at(rest.len().min(256));
    let (avail, pfns) = rest.split_at(rest.len().min(36));
    let base = RING[queue];
    let _ = ram.write_slice(table, GuestAddress(base));
    let _ = ram.write_slice(&pfns[..pfns.len().min(4096)], GuestAddress(PFNS));
    let Ok(irq) = EventFd::new(libc::EFD_NONBLOCK) else {
        return;
    };
    let shared = Arc::new(BalloonShared::default());
    let Ok(t) = MmioTransport::new(
        "balloon".into(),
        Box::new(BalloonDevice::new(Arc::clone(&shared))),
        ram.clone(),
        irq,
    ) else {
        return;
    };
    let layout = |i: usize| QueueLayout {
        index: i as u32,
        size: 16,
        desc: GuestAddress(RING[i]),
        avail: GuestAddress(RING[i] + 0x1000),
        used: GuestAddress(RING[i] + 0x2000),
    };
    if !handshake(&t, 0, &[layout(0), layout(1)]) {
        return;
    }
    // The driver publishes its ring after DRIVER_OK.
    let _ = ram.write_slice(avail, GuestAddress(base + 0x1000));
    process(&t, &shared, queue);
    process(&t, &shared, queue);
});
