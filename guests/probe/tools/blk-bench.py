#!/usr/bin/env python3
"""`probe=blk-bench` under domus-vmm vs QEMU microvm (virtio-blk-device, cache=none) vs host O_DIRECT (fio).

usage: guests/probe/tools/blk-bench.py IMAGE [-n ROUNDS] [--vmm PATH] [--elf PATH] [--no-fio]
IMAGE is a raw file (e.g. 512 MiB of random data); both VMMs open it with O_DIRECT (domus-vmm: the
disk's `direct-io-safe` flag; QEMU: cache=none). Runs are interleaved (domus, qemu, domus, ...) per
case; times come from the guest's TSC cycle count converted with the TSC rate that domus-vmm's run
calibrated against the ACPI PM timer (QEMU microvm has no PM timer, so its own calibration is
only a 4 GHz guess). Prints the median MB/s (1e6 bytes/s) and IOPS per case and the ratios.
"""
import argparse, os, re, statistics, subprocess, tempfile

CASES = [("seq", 1), ("seq", 4), ("rand", 1), ("rand", 32)]

def probe_run(argv):
    out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                         timeout=300).stdout.decode(errors="replace")
    m = re.search(r"PROBE blk-bench .*ops=(\d+) us=\d+ cycles=(\d+) tsc_hz=(\d+)", out)
    if not m:
        raise SystemExit(f"no blk-bench line from {argv[0]}:\n{out}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))

def fio(image, mode, qd):
    rw, bs = ("read", "1M") if mode == "seq" else ("randread", "4k")
    extra = ["--size=512M"] if mode == "seq" else ["--number_ios=20000"]
    out = subprocess.run(["fio", "--name=h", f"--filename={image}", "--direct=1", f"--rw={rw}", f"--bs={bs}",
                          f"--iodepth={qd}", "--ioengine=libaio", "--output-format=terse", "--terse-version=3",
                          *extra], stdout=subprocess.PIPE, check=True).stdout.decode()
    f = out.strip().split(";")
    bw_kib, iops = float(f[6]), float(f[7])
    return bw_kib * 1024 / 1e6, iops

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("image")
    ap.add_argument("-n", type=int, default=3)
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    ap.add_argument("--vmm", default=os.path.join(target, "debug", "domus-vmm"))
    ap.add_argument("--elf", default=os.path.join(target, "debug", "domus-probe"))
    ap.add_argument("--no-fio", action="store_true")
    a = ap.parse_args()
    image, elf = os.path.abspath(a.image), os.path.abspath(a.elf)
    tmp = tempfile.mkdtemp(prefix="blk-bench-")
    print(f"{'case':<12} {'domus MB/s':>10} {'IOPS':>8} {'qemu MB/s':>10} {'IOPS':>8} {'host MB/s':>10} {'IOPS':>8}"
          f" {'d/qemu':>7} {'d/host':>7}")
    for mode, qd in CASES:
        args = f"probe=blk-bench mode={mode} qd={qd} mib=512 ops=20000"
        cfg = os.path.join(tmp, "b.cfg")
        with open(cfg, "w") as f:
            f.write(f'name = "bench"\nkernel = "{elf}"\nmemory = 96\nvcpus = 1\nextra = "{args}"\n'
                    f"disk = ['{image},raw,xvda,rw,direct-io-safe']\n")
        qemu = ["qemu-system-x86_64", "-M", "microvm", "-accel", "kvm", "-cpu", "qemu64", "-m", "96", "-nographic",
                "-no-reboot", "-kernel", elf, "-append", args, "-global", "virtio-mmio.force-legacy=false",
                "-drive", f"file={image},if=none,id=d0,format=raw,cache=none", "-device", "virtio-blk-device,drive=d0"]
        d, q, hz = [], [], []
        for _ in range(a.n):
            ops, cyc, h = probe_run([a.vmm, "--config", cfg])
            hz.append(h)
            d.append((ops, cyc))
            q.append(probe_run(qemu)[:2])
        tsc = statistics.median(hz)
        size = (1 << 20) if mode == "seq" else 4096
        def rate(samples):
            secs = [c / tsc for _, c in samples]
            ops = samples[0][0]
            s = statistics.median(secs)
            return ops * size / s / 1e6, ops / s
        dm, di = rate(d)
        qm, qi = rate(q)
        hm, hi = fio(image, mode, qd) if not a.no_fio else (float("nan"), float("nan"))
        key = "mbps" if mode == "seq" else "iops"
        dv, qv, hv = (dm, qm, hm) if key == "mbps" else (di, qi, hi)
        print(f"{mode+' qd='+str(qd):<12} {dm:>10.0f} {di:>8.0f} {qm:>10.0f} {qi:>8.0f} {hm:>10.0f} {hi:>8.0f}"
              f" {dv/qv:>7.2f} {dv/hv:>7.2f}")

if __name__ == "__main__":
    main()
