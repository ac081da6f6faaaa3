//! The entropy device's queue walk is driven by untrusted guest memory: any descriptor table,
//! available ring and rate must be served (or refused) without panicking or looping forever, and never
//! write outside guest RAM.
#![no_main]

use std::time::Instant;

use domus_vmm::devices::virtio::mmio::MmioTransport;
use domus_vmm::devices::virtio::rng::device::RngDevice;
use domus_vmm::devices::virtio::rng::event_handler::process;
use domus_vmm::devices::virtio::rng::rate::TokenBucket;
use domus_vmm::devices::virtio::test_utils::{handshake, test_ram, QueueLayout};
use libfuzzer_sys::fuzz_target;
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::EventFd;

const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;

fuzz_target!(|data: &[u8]| {
    let ram = test_ram(1 << 20);
    // Input: 256 bytes of descriptor table (16 entries), the available ring (flags, idx, 16
    // entries = 36 bytes), then 2 bytes of rate (KiB/s, 0 = unlimited).
    let (table, rest) = data.split_at(data.len().min(256));
    let (avail, rest) = rest.split_at(rest.len().min(36));
    let rate = rest
        .get(..2)
        .map_or(0, |r| u64::from(u16::from_le_bytes([r[0], r[1]])) << 10);
    let _ = ram.write_slice(table, GuestAddress(DESC));
    let Ok(irq) = EventFd::new(libc::EFD_NONBLOCK) else {
        return;
    };
    let Ok(t) = MmioTransport::new(
        "rng".into(),
        Box::new(RngDevice::default()),
        ram.clone(),
        irq,
    ) else {
        return;
    };
    let q = QueueLayout {
        index: 0,
        size: 16,
        desc: GuestAddress(DESC),
        avail: GuestAddress(AVAIL),
        used: GuestAddress(USED),
    };
    if !handshake(&t, 0, &[q]) {
        return;
    }
    // The driver publishes its ring after DRIVER_OK.
    let _ = ram.write_slice(avail, GuestAddress(AVAIL));
    let mut bucket = TokenBucket::new(rate, Instant::now());
    let mut fill = |b: &mut [u8]| {
        b.fill(0x5a);
        Ok(())
    };
    process(&t, &mut bucket, &mut fill);
    process(&t, &mut bucket, &mut fill);
});
