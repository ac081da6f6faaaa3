//! Disk scenarios over the CPL3 virtio-blk driver (`virtio/blk.rs`):
//!
//! - `blk-sum`: `PROBE blk-sum disk=<i> sectors=<n> id=<GET_ID answer or -> sha256=<hex>` over the
//!   whole of each disk, then
//!   `PROBE blk-sum disks=<n>`.
//! - `blk-fill seed=N`: fills disk 0 with a xorshift64 pattern seeded by N (1 MiB writes), FLUSHes,
//!   and prints `PROBE blk-fill sha256=<hex> bytes=<n> flush=<status>` of what it wrote; with
//!   `hold=1` it then prints `PROBE blk-fill holding` and halts (for kill -9 tests).
//! - `blk-zero`: WRITE_ZEROES over sectors [0, 2048) and DISCARD over [2048, 4096) of disk 0, FLUSH,
//!   read back: `PROBE blk-zero write_zeroes=<s> discard=<s> flush=<s> zero=<1 if all read as 0>`.
//! - `blk-ro`: a write to disk 0 must fail with IOERR: `PROBE blk-ro ok` (else `PROBE blk-ro
//!   failed status=<s> ro_feature=<0|1>`).
//! - `blk-bench mode=seq|rand qd=N [rw=read|write] [mib=M] [ops=K]`: sequential 1 MiB or random
//!   4 KiB requests on disk 0 with N in flight; `PROBE blk-bench mode=.. qd=.. rw=.. mbps=<MB/s>
//!   iops=<n> ops=<k> us=<t> cycles=<c> tsc_hz=<f>` (timed with the TSC, calibrated against the ACPI
//!   PM timer; without one (QEMU microvm) the calibration assumes 4 GHz, so compare `cycles` with
//!   a TSC rate measured elsewhere).
//!
//! Data buffers are physical memory from [`DATA_BASE`] (the guest needs at least 16 MiB + qd MiB).

use super::Scenario;
use crate::cmdline::Args;
use crate::io::rdtsc;
use crate::virtio::blk::{Blk, T_DISCARD, T_FLUSH, T_GET_ID, T_IN, T_OUT, T_WRITE_ZEROES};
use crate::Machine;
use domus_probe::sha256::{Hex, Sha256};

/// First data buffer (after the rings at 8 MiB).
pub const DATA_BASE: u64 = 0x100_0000;
const MIB: u64 = 1 << 20;
const SPINS: u64 = 4_000_000_000;

/// `blk-sum`.
pub const SUM: Scenario = Scenario {
    name: "blk-sum",
    run: sum,
};
/// `blk-fill`.
pub const FILL: Scenario = Scenario {
    name: "blk-fill",
    run: fill,
};
/// `blk-ro`.
pub const RO: Scenario = Scenario {
    name: "blk-ro",
    run: ro,
};
/// `blk-zero`.
pub const ZERO: Scenario = Scenario {
    name: "blk-zero",
    run: zero,
};
/// `blk-bench`.
pub const BENCH: Scenario = Scenario {
    name: "blk-bench",
    run: bench,
};

/// Every virtio-blk device, initialised (failures reported).
pub fn disks(machine: &Machine, mut each: impl FnMut(usize, Blk)) -> usize {
    let devices = crate::virtio::discover(machine.acpi.as_ref());
    let mut n = 0;
    for (i, t) in devices.of_type(crate::virtio::DEVICE_BLOCK).enumerate() {
        match Blk::init(t, i) {
            Ok(b) => each(i, b),
            Err(e) => crate::report!("error blk-init disk={i} addr={:#x} reason={e}", t.base),
        }
        n += 1;
    }
    n
}

fn first_disk(machine: &Machine, what: &str) -> Option<Blk> {
    let mut out = None;
    disks(machine, |i, b| {
        if i == 0 {
            out = Some(b);
        }
    });
    if out.is_none() {
        crate::report!("error {what} reason=no-disk");
    }
    out
}

fn buf(addr: u64, len: usize) -> &'static mut [u8] {
    // SAFETY: `addr` is RAM at DATA_BASE or above that only this scenario uses (identity mapped).
    unsafe { core::slice::from_raw_parts_mut(addr as usize as *mut u8, len) }
}

fn sum(machine: &Machine, _args: &Args<'_>) {
    let n = disks(machine, |i, mut b| {
        buf(DATA_BASE, 20).fill(0);
        let id_status = b.sync(T_GET_ID, 0, DATA_BASE, 20);
        let raw = buf(DATA_BASE, 20);
        let len = raw.iter().position(|&c| c == 0).unwrap_or(20);
        let id = match core::str::from_utf8(&raw[..len]) {
            Ok(s) if id_status == 0 && !s.is_empty() && s.bytes().all(|c| c.is_ascii_graphic()) => {
                s
            }
            _ => "-",
        };
        let mut id_buf = [0u8; 20];
        id_buf[..id.len()].copy_from_slice(id.as_bytes());
        let id = core::str::from_utf8(&id_buf[..id.len()]).unwrap_or("-");
        let mut h = Sha256::new();
        let mut s = 0u64;
        while s < b.sectors {
            let count = (b.sectors - s).min(MIB / 512);
            let len = (count * 512) as u32;
            let st = b.sync(T_IN, s, DATA_BASE, len);
            if st != 0 {
                crate::report!("error blk-sum disk={i} sector={s} status={st}");
                return;
            }
            h.update(buf(DATA_BASE, len as usize));
            s += count;
        }
        crate::report!(
            "blk-sum disk={i} sectors={} id={id} sha256={}",
            b.sectors,
            Hex(h.finish())
        );
    });
    crate::report!("blk-sum disks={n}");
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn fill(machine: &Machine, args: &Args<'_>) {
    let seed = args.get_u64("seed", 1).unwrap_or(1);
    let Some(mut b) = first_disk(machine, "blk-fill") else {
        return;
    };
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut h = Sha256::new();
    let mut s = 0u64;
    while s < b.sectors {
        let count = (b.sectors - s).min(MIB / 512);
        let len = (count * 512) as usize;
        let data = buf(DATA_BASE, len);
        for c in data.chunks_exact_mut(8) {
            c.copy_from_slice(&xorshift(&mut state).to_le_bytes());
        }
        h.update(data);
        let st = b.sync(T_OUT, s, DATA_BASE, len as u32);
        if st != 0 {
            crate::report!("error blk-fill sector={s} status={st}");
            return;
        }
        s += count;
    }
    let flush = b.sync(T_FLUSH, 0, 0, 0);
    crate::report!(
        "blk-fill sha256={} bytes={} flush={flush}",
        Hex(h.finish()),
        b.sectors * 512
    );
    if args.get("hold") == Some("1") {
        crate::report!("blk-fill holding");
        crate::syscall::halt_forever();
    }
}

fn ro(machine: &Machine, _args: &Args<'_>) {
    let Some(mut b) = first_disk(machine, "blk-ro") else {
        return;
    };
    buf(DATA_BASE, 512).fill(0x5a);
    let st = b.sync(T_OUT, 0, DATA_BASE, 512);
    let read = b.sync(T_IN, 0, DATA_BASE, 512);
    if st == 1 && read == 0 {
        crate::report!("blk-ro ok");
    } else {
        crate::report!(
            "blk-ro failed status={st} read={read} ro_feature={}",
            u8::from(b.read_only)
        );
    }
}

/// WRITE_ZEROES over sectors [0, 2048), DISCARD over [2048, 4096) of disk 0, then both read back.
fn zero(machine: &Machine, _args: &Args<'_>) {
    let Some(mut b) = first_disk(machine, "blk-zero") else {
        return;
    };
    if !b.discard || b.sectors < 4096 {
        crate::report!(
            "error blk-zero reason=no-discard-or-small sectors={}",
            b.sectors
        );
        return;
    }
    let seg = DATA_BASE;
    let mut run = |kind: u32, start: u64| {
        let e = buf(seg, 16);
        e[0..8].copy_from_slice(&start.to_le_bytes());
        e[8..12].copy_from_slice(&2048u32.to_le_bytes());
        e[12..16].copy_from_slice(&0u32.to_le_bytes());
        b.sync(kind, 0, seg, 16)
    };
    let wz = run(T_WRITE_ZEROES, 0);
    let dc = run(T_DISCARD, 2048);
    let fl = b.sync(T_FLUSH, 0, 0, 0);
    let mut zero = true;
    for s in (0..4096u64).step_by(2048) {
        if b.sync(T_IN, s, DATA_BASE, 1 << 20) != 0 {
            zero = false;
        }
        zero &= buf(DATA_BASE, 1 << 20).iter().all(|&x| x == 0);
    }
    crate::report!(
        "blk-zero write_zeroes={wz} discard={dc} flush={fl} zero={}",
        u8::from(zero)
    );
}

/// TSC ticks per second, measured against the PM timer over 50 ms.
pub fn tsc_hz(machine: &Machine) -> u64 {
    let t0 = rdtsc();
    crate::clock::delay_us(machine.acpi.as_ref(), 50_000);
    rdtsc().wrapping_sub(t0).saturating_mul(20)
}

fn bench(machine: &Machine, args: &Args<'_>) {
    let seq = match args.get("mode").unwrap_or("seq") {
        "seq" => true,
        "rand" => false,
        other => {
            crate::report!("error blk-bench bad-mode={other}");
            return;
        }
    };
    let write = args.get("rw") == Some("write");
    let qd = args.get_u64("qd", 1).unwrap_or(1).clamp(1, 32) as usize;
    let Some(mut b) = first_disk(machine, "blk-bench") else {
        return;
    };
    let (req_bytes, ops) = if seq {
        let mib = args.get_u64("mib", 256).unwrap_or(256);
        (MIB, mib.min(b.sectors * 512 / MIB).max(1))
    } else {
        (4096, args.get_u64("ops", 20_000).unwrap_or(20_000))
    };
    let span = (b.sectors * 512 / req_bytes).max(1);
    let hz = tsc_hz(machine);
    let kind = if write { T_OUT } else { T_IN };
    let mut rng = 0x1234_5678_9abc_def1u64;
    let mut next = 0u64;
    let target = |n: u64, rng: &mut u64| {
        if seq {
            (n % span) * (req_bytes / 512)
        } else {
            (xorshift(rng) % span) * (req_bytes / 512)
        }
    };
    let t0 = rdtsc();
    let mut inflight = 0usize;
    for slot in 0..qd.min(ops as usize) {
        let s = target(next, &mut rng);
        b.queue(
            slot,
            kind,
            s,
            DATA_BASE + slot as u64 * req_bytes,
            req_bytes as u32,
        );
        next += 1;
        inflight += 1;
    }
    b.notify();
    let mut done = 0u64;
    while inflight > 0 {
        let Some(d) = b.wait(SPINS) else {
            crate::report!("error blk-bench reason=timeout done={done}");
            return;
        };
        if d.status != 0 {
            crate::report!("error blk-bench status={} done={done}", d.status);
            return;
        }
        done += 1;
        inflight -= 1;
        let mut queued = false;
        let mut more = Some(d);
        while let Some(d) = more {
            if next < ops {
                let s = target(next, &mut rng);
                b.queue(
                    d.slot,
                    kind,
                    s,
                    DATA_BASE + d.slot as u64 * req_bytes,
                    req_bytes as u32,
                );
                next += 1;
                inflight += 1;
                queued = true;
            }
            more = b.poll();
            if let Some(x) = more {
                if x.status != 0 {
                    crate::report!("error blk-bench status={} done={done}", x.status);
                    return;
                }
                done += 1;
                inflight -= 1;
            }
        }
        if queued {
            b.notify();
        }
    }
    let cycles = rdtsc().wrapping_sub(t0).max(1);
    let us = (u128::from(cycles) * 1_000_000 / u128::from(hz.max(1))).max(1) as u64;
    let bytes = done * req_bytes;
    crate::report!(
        "blk-bench mode={} qd={qd} rw={} mbps={} iops={} ops={done} us={us} cycles={cycles} tsc_hz={hz}",
        if seq { "seq" } else { "rand" },
        if write { "write" } else { "read" },
        bytes / us,
        done * 1_000_000 / us
    );
}
