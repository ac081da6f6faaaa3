//! The snapshot stream reader (`xl restore`, `migrate-receive`: bytes from a file or another host):
//! any input is either a machine state or a refusal, never a panic, and RAM runs never land outside
//! guest memory.
#![no_main]

use domus_vmm::snapshot;
use domus_vmm::vstate::memory::{GuestRam, RamBacking};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(ram) = GuestRam::new(1 << 20, RamBacking::Anonymous) else {
        return;
    };
    let _ = snapshot::read(data, ram.mmap());
});
