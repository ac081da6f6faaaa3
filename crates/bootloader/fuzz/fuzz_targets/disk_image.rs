//! Fuzzes everything the sandboxed child does with a disk image, in-process: partition tables (gptman,
//! mbrman), filesystem recognition and reading (ext4-view, fatfs, our ISO 9660 reader), config search and
//! parsing, entry choice, and the report of the kernel and ramdisk (sizes checked against the limits).
//! Seed: small real images (ext2, ext4, FAT, ISO 9660, MBR and GPT disks) made with Debian's tools.
//!
//! Known and accepted, both contained by the sandboxed child (tests/launch.rs shows each):
//! - a FAT directory whose cluster chain loops without an end-of-directory entry makes fatfs walk
//!   forever: the child's CPU-time limit ends it; such inputs are not part of the corpus;
//! - a FAT cluster number below 2 makes fatfs 0.3.6 subtract with overflow (a panic with overflow
//!   checks): the child's panic hook reports it. Panics located in fatfs are therefore tolerated here;
//!   any other panic is a finding.
#![no_main]

use std::cell::RefCell;
use std::io::{Cursor, Seek};
use std::panic::{self, AssertUnwindSafe};

use domus_bootloader::disk::Region;
use domus_bootloader::find;
use domus_bootloader::protocol::{self, Limits, Writer};
use domus_bootloader::BootRequest;
use libfuzzer_sys::fuzz_target;

thread_local! {
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    let libfuzzer_hook = panic::take_hook();
    panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| l.file().to_string());
        PANIC_AT.with(|p| *p.borrow_mut() = at);
    }));
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| check(data)));
    panic::set_hook(libfuzzer_hook);
    if let Err(payload) = outcome {
        let at = PANIC_AT.with(|p| p.borrow_mut().take()).unwrap_or_default();
        if !at.contains("/fatfs-0.3.6/") {
            panic::resume_unwind(payload);
        }
    }
});

fn check(data: &[u8]) {
    let disk = Region::from_bytes(data.to_vec());
    let limits = Limits {
        kernel_bytes: 1 << 20,
        ramdisk_bytes: 1 << 20,
    };
    for req in [
        BootRequest::default(),
        BootRequest {
            entry: Some("1".into()),
            args: Some("extra".into()),
            ..BootRequest::default()
        },
        BootRequest {
            kernel: Some("/boot/vmlinuz".into()),
            ramdisk: Some("/boot/initrd.img".into()),
            ..BootRequest::default()
        },
    ] {
        let Ok(found) = find::find(&disk, &req) else {
            continue;
        };
        let mut out = Cursor::new(Vec::new());
        let mut w = Writer::new(&mut out).expect("in-memory write");
        if find::report(&found, limits, &mut w).is_ok() {
            w.finish().expect("in-memory write");
            out.rewind().expect("in-memory seek");
            let (mut k, mut r) = (Vec::new(), Vec::new());
            let rep = protocol::parse(&mut out, limits, &mut k, &mut r).expect("our own report parses");
            assert_eq!(rep.kernel_bytes, Some(k.len() as u64));
            assert!(k.len() as u64 <= limits.kernel_bytes && r.len() as u64 <= limits.ramdisk_bytes);
        }
    }
}
