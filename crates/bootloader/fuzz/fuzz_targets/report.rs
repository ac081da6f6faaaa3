//! Fuzzes the parent's parser of the child's report (the only bytes from the sandbox the parent reads):
//! never panic, never copy more than the limits, and re-encoding a parsed report parses the same.
#![no_main]

use std::io::{Cursor, Seek, Write};

use domus_bootloader::protocol::{self, Limits, Tag, Writer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        kernel_bytes: 4096,
        ramdisk_bytes: 4096,
    };
    let (mut k, mut r) = (Vec::new(), Vec::new());
    let Ok(rep) = protocol::parse(&mut Cursor::new(data), limits, &mut k, &mut r) else {
        return;
    };
    assert!(k.len() <= 4096 && r.len() <= 4096);
    assert_eq!(rep.kernel_bytes.unwrap_or(0), k.len() as u64);
    // Re-encode and parse again.
    let mut out = Cursor::new(Vec::new());
    let mut w = Writer::new(&mut out).expect("in-memory write");
    for (tag, v) in [
        (Tag::Title, &rep.title),
        (Tag::Position, &rep.position),
        (Tag::Volume, &rep.volume),
        (Tag::Config, &rep.config),
        (Tag::KernelPath, &rep.kernel_path),
        (Tag::RamdiskPath, &rep.ramdisk_path),
        (Tag::Args, &rep.args),
        (Tag::Error, &rep.error),
    ] {
        if let Some(v) = v {
            w.text(tag, v).expect("in-memory write");
        }
    }
    for warning in &rep.warnings {
        w.text(Tag::Warning, warning).expect("in-memory write");
    }
    if rep.kernel_bytes.is_some() {
        w.data(Tag::KernelData, |o| o.write_all(&k)).expect("in-memory write");
    }
    if rep.ramdisk_bytes.is_some() {
        w.data(Tag::RamdiskData, |o| o.write_all(&r)).expect("in-memory write");
    }
    w.finish().expect("in-memory write");
    out.rewind().expect("in-memory seek");
    let (mut k2, mut r2) = (Vec::new(), Vec::new());
    let again = protocol::parse(&mut out, limits, &mut k2, &mut r2).expect("re-encoded report parses");
    assert_eq!(again, rep);
    assert_eq!((k2, r2), (k, r));
});
