//! `probe=rng bytes=N` (default 4096): reads N bytes from the first virtio-rng device and prints
//! `PROBE rng bytes=<N> sha256=<hex>` over them (two boots print different hashes), or
//! `PROBE error rng reason=<why>`.

use super::Scenario;
use crate::cmdline::Args;
use crate::virtio::rng::Rng;
use crate::virtio::DEVICE_RNG;
use crate::Machine;
use domus_probe::sha256::{Hex, Sha256};

/// The scenario entry.
pub const SCENARIO: Scenario = Scenario { name: "rng", run };

/// Where the entropy lands (physical, identity mapped; below the block scenarios' 16 MiB).
const BUF: u64 = 0x90_0000;
/// Bytes per request.
const CHUNK: u64 = 4096;
/// Most bytes one run asks for.
const MAX_BYTES: u64 = 16 << 20;
/// Requests answered with 0 bytes in a row before giving up.
const MAX_EMPTY: u32 = 1000;

fn run(machine: &Machine, args: &Args<'_>) {
    let bytes = match args.get_u64("bytes", 4096) {
        Ok(n) if n <= MAX_BYTES => n,
        Ok(n) => {
            return crate::report!("error rng reason=bytes-too-large bytes={n} max={MAX_BYTES}")
        }
        Err(v) => return crate::report!("error rng reason=bad-bytes value={v}"),
    };
    let devices = crate::virtio::discover(machine.acpi.as_ref());
    let Some(t) = devices.nth_of_type(DEVICE_RNG, 0) else {
        return crate::report!("error rng reason=no-device");
    };
    let mut rng = match Rng::init(t, 0) {
        Ok(r) => r,
        Err(e) => return crate::report!("error rng reason={e} addr={:#x}", t.base),
    };
    let mut h = Sha256::new();
    let mut got = 0u64;
    let mut empty = 0u32;
    while got < bytes {
        let want = (bytes - got).min(CHUNK) as u32;
        let Some(n) = rng.read(BUF, want) else {
            return crate::report!("error rng reason=no-answer got={got}");
        };
        let n = n.min(want);
        if n == 0 {
            empty += 1;
            if empty == MAX_EMPTY {
                return crate::report!("error rng reason=empty-answers got={got}");
            }
            continue;
        }
        empty = 0;
        // SAFETY: `BUF` is RAM only this scenario uses; the device wrote `n` <= CHUNK bytes there.
        let data = unsafe { core::slice::from_raw_parts(BUF as usize as *const u8, n as usize) };
        h.update(data);
        got += u64::from(n);
    }
    crate::report!("rng bytes={bytes} sha256={}", Hex(h.finish()));
}
