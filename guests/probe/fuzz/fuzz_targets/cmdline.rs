//! The probe's command-line parser on arbitrary text.
#![no_main]

use domus_probe::cmdline::{parse_u64, Args};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let args = Args::parse(&text);
    let _ = args.scenario();
    for key in ["iters", "kind", "sig", "probe"] {
        let _ = args.get_u64(key, 1);
    }
    let _ = parse_u64(&text);
});
