#!/usr/bin/env python3
"""Process start -> first console byte (and -> exit) of `probe=hello`: domus-vmm vs QEMU microvm.

usage: guests/probe/tools/boot-latency.py [-n RUNS] [--vmm PATH] [--elf PATH] [--cmdline TEXT]
Runs are interleaved (vmm, qemu, vmm, qemu, ...) so both see the same machine load; prints
median and min per VMM and the median ratio. Without --vmm (or if it does not exist) only QEMU
is measured. The first console byte is the probe's ring-0 greeting (`PROBE boot`), written at
the PVH entry before long mode.
"""
import argparse, os, statistics, subprocess, tempfile, time

def measure(argv):
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    first = p.stdout.read(1)
    t1 = time.monotonic()
    p.stdout.read()
    p.wait()
    t2 = time.monotonic()
    if not first:
        raise SystemExit(f"no console output from {argv[0]} (exit {p.returncode})")
    return (t1 - t0) * 1000, (t2 - t0) * 1000

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20)
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    ap.add_argument("--vmm", default=os.path.join(target, "debug", "domus-vmm"))
    ap.add_argument("--elf", default=os.path.join(target, "debug", "domus-probe"))
    ap.add_argument("--cmdline", default="probe=hello")
    a = ap.parse_args()
    elf = os.path.abspath(a.elf)
    runs = {"qemu-microvm": ["qemu-system-x86_64", "-M", "microvm", "-accel", "kvm", "-cpu", "qemu64", "-m", "64",
                             "-nographic", "-no-reboot", "-kernel", elf, "-append", a.cmdline]}
    tmp = tempfile.mkdtemp(prefix="probe-boot-")
    if os.path.exists(a.vmm):
        cfg = os.path.join(tmp, "hello.cfg")
        with open(cfg, "w") as f:
            f.write(f'name = "hello"\nkernel = "{elf}"\nmemory = 64\nvcpus = 1\nextra = "{a.cmdline}"\n')
        runs = {"domus-vmm": [a.vmm, "--config", cfg], **runs}
    results = {name: [] for name in runs}
    for _ in range(a.n):
        for name, argv in runs.items():
            results[name].append(measure(argv))
    for name, r in results.items():
        fb = [x[0] for x in r]
        ex = [x[1] for x in r]
        print(f"{name:13} first byte median {statistics.median(fb):7.1f} ms (min {min(fb):6.1f})   "
              f"exit median {statistics.median(ex):7.1f} ms (min {min(ex):6.1f})   n={len(r)}")
    if len(results) == 2:
        v = statistics.median(x[0] for x in results["domus-vmm"])
        q = statistics.median(x[0] for x in results["qemu-microvm"])
        print(f"ratio domus-vmm / qemu-microvm (first byte, medians): {v / q:.3f}")

if __name__ == "__main__":
    main()
