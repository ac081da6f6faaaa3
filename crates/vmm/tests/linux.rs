//! Real Linux: Debian's cloud kernel, as a bzImage (64-bit boot protocol) and as the ELF vmlinux
//! extracted from it (which carries a PVH note, so it boots through PVH). PVM stops the kernel later; we
//! wait only for its first lines: "Linux version", our command line and our e820 map. Both boots run in
//! this one test function, one after the other (they are slow and must not run in parallel).
//!
//! The kernel comes from `scripts/fetch-test-deps.sh` into $DOMUS_TESTDEPS (default
//! `<workspace>/.cache/testdeps`): `linux/vmlinuz`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{control, read_until, spawn, temp_dir, wait_bounded, wait_for_path};

fn testdeps() -> PathBuf {
    std::env::var_os("DOMUS_TESTDEPS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/testdeps"),
        PathBuf::from,
    )
}

/// Decodes one LZ4 block (lz4 block format: token, literals, offset, match) into `out`.
fn lz4_block(src: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let mut i = 0;
    let len_ext = |i: &mut usize, mut n: usize| -> Option<usize> {
        if n == 15 {
            loop {
                let b = *src.get(*i)?;
                *i += 1;
                n += usize::from(b);
                if b != 255 {
                    break;
                }
            }
        }
        Some(n)
    };
    while i < src.len() {
        let token = src[i];
        i += 1;
        let lit = len_ext(&mut i, usize::from(token >> 4))?;
        out.extend_from_slice(src.get(i..i + lit)?);
        i += lit;
        if i >= src.len() {
            break;
        }
        let offset = usize::from(u16::from_le_bytes([*src.get(i)?, *src.get(i + 1)?]));
        i += 2;
        let mlen = len_ext(&mut i, usize::from(token & 15))? + 4;
        let start = out.len().checked_sub(offset).filter(|_| offset > 0)?;
        for k in 0..mlen {
            let b = out[start + k];
            out.push(b);
        }
    }
    Some(())
}

/// Extracts the vmlinux ELF from a bzImage whose payload is LZ4 (legacy frame, magic 0x184c2102), as
/// the kernel's scripts/extract-vmlinux does with `unlz4`.
fn extract_vmlinux(bzimage: &[u8]) -> Vec<u8> {
    const MAGIC: [u8; 4] = [0x02, 0x21, 0x4c, 0x18];
    let mut pos = bzimage
        .windows(4)
        .position(|w| w == MAGIC)
        .expect("bzImage payload is not LZ4 (no legacy LZ4 magic)")
        + 4;
    let mut out = Vec::new();
    // Blocks: u32 compressed size + data. The payload ends with the 4-byte decompressed size, which
    // is far larger than any legal block (at most compressBound(8 MiB)): that ends the stream.
    while let Some(sz) = bzimage.get(pos..pos + 4) {
        let sz = u32::from_le_bytes(sz.try_into().unwrap());
        if sz == u32::from_le_bytes(MAGIC) {
            pos += 4;
            continue;
        }
        let sz = usize::try_from(sz).unwrap();
        if sz == 0 || sz > 8_454_144 || pos + 4 + sz > bzimage.len() {
            break;
        }
        let mut block = Vec::new();
        if lz4_block(&bzimage[pos + 4..pos + 4 + sz], &mut block).is_none() {
            break;
        }
        out.extend_from_slice(&block);
        pos += 4 + sz;
    }
    assert!(
        out.starts_with(b"\x7fELF"),
        "extracted payload is not an ELF ({} bytes)",
        out.len()
    );
    out
}

/// Boots `kernel` and waits for the first lines; then destroys the domain.
fn boot_and_check(kernel: &Path, marker: &str, limit: Duration) {
    let dir = temp_dir("linux");
    let ctl = dir.join("ctl.sock");
    let con = dir.join("con.sock");
    let cmdline = format!("console=ttyS0 earlyprintk=ttyS0 {marker}");
    let con_arg = format!("unix:{}", con.display());
    let child = spawn(&[
        "--kernel",
        kernel.to_str().unwrap(),
        "--cmdline",
        &cmdline,
        "--memory",
        "512",
        "--vcpus",
        "1",
        "--console",
        &con_arg,
        "--control",
        ctl.to_str().unwrap(),
        "--outcome-linger-s",
        "5",
    ]);
    wait_for_path(&con, Duration::from_secs(30));
    let mut s = common::connect(&con);
    let out = read_until(
        &mut s,
        "BIOS-e820: [mem 0x0000000000100000-0x000000001fffffff] usable",
        limit,
    );
    assert!(out.contains("Linux version"), "{out}");
    assert!(out.contains(&format!("Command line: {cmdline}")), "{out}");
    assert!(
        out.contains("BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable"),
        "{out}"
    );
    assert!(
        out.contains("BIOS-e820: [mem 0x000000000009fc00-0x00000000000fffff] reserved"),
        "{out}"
    );
    let v = control(&ctl, r#"{"cmd":"destroy"}"#);
    assert_eq!(v["ok"], true, "{v}");
    let r = wait_bounded(child, Duration::from_secs(30), "linux");
    assert_eq!(r.code, 0, "{r:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn debian_kernel_prints_its_first_lines() {
    common::probe(); // asserts /dev/kvm
    let vmlinuz = testdeps().join("linux/vmlinuz");
    assert!(
        vmlinuz.exists(),
        "{} missing: run scripts/fetch-test-deps.sh (or set DOMUS_TESTDEPS)",
        vmlinuz.display()
    );
    // bzImage: the decompressor runs at emulated CPL0 first, which takes minutes here.
    boot_and_check(&vmlinuz, "domus_boot=bzimage", Duration::from_secs(600));

    let bz = std::fs::read(&vmlinuz).unwrap();
    let elf = extract_vmlinux(&bz);
    let dir = temp_dir("vmlinux");
    let vmlinux = dir.join("vmlinux");
    std::fs::write(&vmlinux, &elf).unwrap();
    boot_and_check(&vmlinux, "domus_boot=pvh-elf", Duration::from_secs(300));
    std::fs::remove_dir_all(&dir).unwrap();
}
