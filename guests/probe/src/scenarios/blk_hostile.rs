//! `probe=hostile`: malformed requests and handshakes against every virtio-blk device, printing what
//! the device answered. Per device and case: `PROBE hostile disk=<i> case=<name> status=<s>
//! used_len=<n> dev_status=<hex>` (status 1 = IOERR, 0xff = never written, `timeout` if no used
//! entry came back), and after the cases a fresh handshake and a good read:
//! `PROBE hostile disk=<i> alive=<0 if the read succeeded>`. Finally `PROBE hostile disks=<n>`.
//!
//! Cases: `out-of-range` (read at sector = capacity), `beyond-end` (a read that starts inside and
//! ends past the disk), `data-outside-ram`, `header-outside-ram`, `huge-len` (a 4 GiB - 512 data
//! descriptor), `loop` (a chain whose descriptors point at each other), `bad-avail-idx` (an
//! available index 1000 ahead: the device must set DEVICE_NEEDS_RESET), `no-handshake` (notify
//! without ever finishing the handshake: nothing may happen), `queue-outside-ram` (DRIVER_OK
//! with the descriptor table outside RAM: DEVICE_NEEDS_RESET).

use super::blk::DATA_BASE;
use super::Scenario;
use crate::cmdline::Args;
use crate::io::{mmio_read32, mmio_write32};
use crate::virtio::blk::{
    reg, Blk, Desc, D_NEXT, D_WRITE, S_ACK, S_DRIVER, S_DRIVER_OK, S_FEATURES_OK, T_IN,
};
use crate::Machine;

/// The scenario entry.
pub const SCENARIO: Scenario = Scenario {
    name: "hostile",
    run,
};

/// Outside any guest RAM the probe is given (and outside the identity map: only the device reads it).
const NOWHERE: u64 = 0x7f00_0000_0000;
const SPINS: u64 = 500_000_000;

fn report(i: usize, case: &str, b: &mut Blk) {
    let st = b.device_status();
    match b.wait(SPINS) {
        Some(d) => crate::report!(
            "hostile disk={i} case={case} status={} used_len={} dev_status={st:#x}",
            d.status,
            d.len
        ),
        None => crate::report!(
            "hostile disk={i} case={case} status=timeout used_len=0 dev_status={st:#x}"
        ),
    }
}

fn chain(b: &mut Blk, descs: &[Desc]) {
    for (k, d) in descs.iter().enumerate() {
        b.set_desc(k as u16, *d);
    }
    b.push_avail(0);
    b.notify();
}

/// Submits a well-formed read chain (16-byte header, one writable data buffer, status byte) whose
/// addresses and length the caller chooses: each case makes exactly one of them hostile.
fn read_chain(b: &mut Blk, header_addr: u64, data_addr: u64, data_len: u32) {
    let st = b.status_addr(0);
    chain(
        b,
        &[
            Desc {
                addr: header_addr,
                len: 16,
                flags: D_NEXT,
                next: 1,
            },
            Desc {
                addr: data_addr,
                len: data_len,
                flags: D_NEXT | D_WRITE,
                next: 2,
            },
            Desc {
                addr: st,
                len: 1,
                flags: D_WRITE,
                next: 0,
            },
        ],
    );
}

fn header(b: &Blk, sector: u64) -> u64 {
    let h = b.header_addr(0);
    crate::virtio::blk::write_header(h, T_IN, sector);
    // SAFETY: the status area of the driver's ring pages.
    unsafe { (b.status_addr(0) as usize as *mut u8).write_volatile(0xff) };
    h
}

fn cases(i: usize, t: &crate::virtio::Transport, mut b: Blk) {
    b.queue(0, T_IN, b.sectors, DATA_BASE, 512);
    b.notify();
    report(i, "out-of-range", &mut b);
    b.queue(0, T_IN, b.sectors.saturating_sub(1), DATA_BASE, 4096);
    b.notify();
    report(i, "beyond-end", &mut b);

    let h = header(&b, 0);
    read_chain(&mut b, h, NOWHERE, 4096);
    report(i, "data-outside-ram", &mut b);

    header(&b, 0);
    read_chain(&mut b, NOWHERE, DATA_BASE, 512);
    report(i, "header-outside-ram", &mut b);

    let h = header(&b, 0);
    read_chain(&mut b, h, DATA_BASE, 0xffff_fe00);
    report(i, "huge-len", &mut b);

    let h = header(&b, 0);
    chain(
        &mut b,
        &[
            Desc {
                addr: h,
                len: 16,
                flags: D_NEXT,
                next: 1,
            },
            Desc {
                addr: DATA_BASE,
                len: 512,
                flags: D_NEXT | D_WRITE,
                next: 0,
            },
        ],
    );
    report(i, "loop", &mut b);

    b.corrupt_avail_idx(1000);
    b.notify();
    let mut dev = 0;
    for _ in 0..SPINS / 100 {
        dev = b.device_status();
        if dev & 64 != 0 {
            break;
        }
    }
    crate::report!(
        "hostile disk={i} case=bad-avail-idx needs_reset={} dev_status={dev:#x}",
        u8::from(dev & 64 != 0)
    );

    // A driver that never finishes the handshake, then notifies.
    let base = t.base;
    mmio_write32(base + reg::STATUS, 0);
    mmio_write32(base + reg::STATUS, S_ACK);
    mmio_write32(base + reg::STATUS, S_ACK | S_DRIVER);
    mmio_write32(base + reg::QUEUE_NOTIFY, 0);
    let mut spins = 0u64;
    while spins < SPINS / 10 && b.poll().is_none() {
        spins += 1;
    }
    let dev = mmio_read32(base + reg::STATUS);
    crate::report!(
        "hostile disk={i} case=no-handshake completed={} dev_status={dev:#x}",
        u8::from(spins < SPINS / 10)
    );

    // DRIVER_OK with the descriptor table outside RAM.
    match Blk::init(t, i) {
        Ok(_) => {
            mmio_write32(base + reg::STATUS, 0);
            mmio_write32(base + reg::STATUS, S_ACK | S_DRIVER);
            mmio_write32(base + reg::DRIVER_FEATURES_SEL, 1);
            mmio_write32(base + reg::DRIVER_FEATURES, 1);
            mmio_write32(base + reg::STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
            mmio_write32(base + reg::QUEUE_SEL, 0);
            mmio_write32(base + reg::QUEUE_NUM, 256);
            mmio_write32(base + reg::QUEUE_DESC_LOW, NOWHERE as u32);
            mmio_write32(base + reg::QUEUE_DESC_HIGH, (NOWHERE >> 32) as u32);
            mmio_write32(base + reg::QUEUE_READY, 1);
            mmio_write32(
                base + reg::STATUS,
                S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK,
            );
            let dev = mmio_read32(base + reg::STATUS);
            crate::report!(
                "hostile disk={i} case=queue-outside-ram needs_reset={} dev_status={dev:#x}",
                u8::from(dev & 64 != 0)
            );
        }
        Err(e) => crate::report!("hostile disk={i} case=queue-outside-ram reinit-failed={e}"),
    }

    match Blk::init(t, i) {
        Ok(mut b) => {
            let s = b.sync(T_IN, 0, DATA_BASE, 4096);
            crate::report!("hostile disk={i} alive={s}");
        }
        Err(e) => crate::report!("hostile disk={i} alive=reinit-failed-{e}"),
    }
}

fn run(machine: &Machine, _args: &Args<'_>) {
    let devices = crate::virtio::discover(machine.acpi.as_ref());
    let mut n = 0;
    for (i, t) in devices.of_type(crate::virtio::DEVICE_BLOCK).enumerate() {
        match Blk::init(t, i) {
            Ok(b) => cases(i, t, b),
            Err(e) => crate::report!("hostile disk={i} init-failed={e}"),
        }
        n += 1;
    }
    crate::report!("hostile disks={n}");
}
