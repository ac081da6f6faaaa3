//! Kernel files are untrusted input: classification (ELF notes, bzImage header) and ELF segment loading
//! into a small guest memory must reject anything malformed without panicking.
#![no_main]

use std::path::Path;

use domus_vmm::boot::image::{classify, KernelKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(kind) = classify(data, Path::new("fuzz")) else {
        return;
    };
    if matches!(kind, KernelKind::Pvh { .. } | KernelKind::LinuxElf { .. }) {
        if let Ok(mem) = domus_vmm::vstate::memory::create_guest_memory(16 << 20) {
            let _ = domus_vmm::boot::load_elf(&mem, data);
        }
    }
});
