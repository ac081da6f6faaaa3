//! virtio-blk requests are parsed from untrusted descriptor chains and guest memory: `Request::parse`
//! (and the DISCARD/WRITE_ZEROES payload reader) must reject anything malformed without panicking, and
//! every data range it accepts must lie in guest RAM and inside the disk.
#![no_main]

use domus_vmm::devices::virtio::block::request::Request;
use domus_vmm::devices::virtio::test_utils::test_ram;
use libfuzzer_sys::fuzz_target;
use virtio_queue::desc::split::Descriptor;
use vm_memory::GuestAddress;

fuzz_target!(|data: &[u8]| {
    let ram = test_ram(1 << 20);
    // Input: 1 byte of flags (bit 0: terminated), 8 bytes of disk size in sectors, then 16-byte
    // descriptors (addr, len, flags, next) up to 2 KiB, then guest memory contents at 0x1000.
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (sectors, rest) = rest.split_at(rest.len().min(8));
    let mut s = [0u8; 8];
    s[..sectors.len()].copy_from_slice(sectors);
    let sectors = u64::from_le_bytes(s) % (1 << 40);
    let (table, memory) = rest.split_at(rest.len().min(2048));
    let descs: Vec<Descriptor> = table
        .chunks_exact(16)
        .map(|c| {
            let addr = u64::from_le_bytes(c[0..8].try_into().unwrap_or_default()) % (2 << 20);
            let len = u32::from_le_bytes(c[8..12].try_into().unwrap_or_default());
            let fl = u16::from_le_bytes([c[12], c[13]]);
            let next = u16::from_le_bytes([c[14], c[15]]);
            Descriptor::new(addr, len, fl, next)
        })
        .collect();
    let _ = ram.write_slice(memory, GuestAddress(0x1000));
    if let Ok(req) = Request::parse(&descs, flags & 1 == 1, &ram, sectors, 254) {
        for seg in &req.data {
            assert!(ram.is_ram(seg.gpa(), seg.len()));
        }
        if matches!(req.kind, 0 | 1) {
            assert!(req.sector + req.data_len / 512 <= sectors);
        }
        let _ = req.ranges(&ram, sectors);
    }
});
