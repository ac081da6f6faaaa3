#!/usr/bin/env python3
"""domus-vmm sandboxed (`--sandbox`: own mount/IPC/UTS/net namespaces, empty root, uid 65534, no
capabilities, per-thread seccomp filters) vs unsandboxed, side by side in one run, interleaved.

Figures (see BENCHMARKS.md, section "Sandbox"):
  start  process start -> first console byte of `probe=hello`       (vmm_bench.first_byte_s)
  rss    resident memory beyond the guest pages touched, probe idling (vmm_bench.rss_of)
  blk    virtio-blk `probe=blk-bench` seq qd=4 (MB/s) and rand qd=32 (IOPS) (blk-bench.py's probe_run)
  net    virtio-net guest->host and host->guest UDP stream (MB/s)       (net-bench.py's g2h / h2g)

Both arms run through the same tiny `exec` wrapper (one with --sandbox), so they pay the same shell
start-up. Needs root. Usage (repository root, after `cargo build -p domus-vmm -p domus-probe`):
  python3 crates/vmm/benches/sandbox_bench.py [--profile debug|release] [-n 5] [--image IMG] [start rss blk net]
Not a test: it never asserts, it prints figures.
"""
import argparse
import importlib.util
import os
import shutil
import statistics
import stat
import sys
import tempfile
import types

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(HERE, "../../../guests/probe/tools")


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


vb = load("vmm_bench", os.path.join(HERE, "vmm_bench.py"))


def wrapper(tmp, vmm, extra):
    path = os.path.join(tmp, "vmm-" + ("sandboxed" if extra else "plain"))
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\nexec '{vmm}' {extra} \"$@\"\n")
    os.chmod(path, stat.S_IRWXU)
    return path


def cmd(w, t, cmdline):
    return [w] + vb.vmm_cmd(t, cmdline)[1:]


def order(i, arms):
    """The arms in alternating order per round, so neither always runs on a warmer host."""
    items = list(arms.items())
    return items if i % 2 == 0 else items[::-1]


def ratio_line(what, unit, plain, boxed):
    p, b = statistics.median(plain), statistics.median(boxed)
    if os.environ.get("SANDBOX_BENCH_RAW"):
        print(f"  raw {what}: plain {[round(x, 1) for x in plain]} sandboxed {[round(x, 1) for x in boxed]}")
    print(f"{what:<28} plain {p:>9.1f} {unit:<5} sandboxed {b:>9.1f} {unit:<5} sandboxed/plain {b / p:.3f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target-dir", default=os.environ.get("CARGO_TARGET_DIR", "target"))
    ap.add_argument("--profile", default="debug")
    ap.add_argument("-n", type=int, default=5)
    ap.add_argument("--image", help="raw image for blk (default: 128 MiB of random data in a temp dir)")
    ap.add_argument("what", nargs="*", default=["start", "rss", "blk", "net"])
    a = ap.parse_args()
    t = os.path.abspath(os.path.join(a.target_dir, a.profile))
    vmm, elf = os.path.join(t, "domus-vmm"), os.path.join(t, "domus-probe")
    tmp = tempfile.mkdtemp(prefix="sandbox-bench-")
    try:
        run(a, t, elf, vmm, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(a, t, elf, vmm, tmp):
    arms = {"plain": wrapper(tmp, vmm, ""), "sandboxed": wrapper(tmp, vmm, "--sandbox")}
    print(f"{a.profile} build, {a.n} interleaved rounds per figure, medians")
    if "start" in a.what:
        r = {k: [] for k in arms}
        for i in range(a.n * 4):
            for k, w in order(i, arms):
                r[k].append(vb.first_byte_s(cmd(w, t, "probe=hello")) * 1000)
        ratio_line("start -> first console byte", "ms", r["plain"], r["sandboxed"])
    if "rss" in a.what:
        r = {k: [] for k in arms}
        for i in range(a.n):
            for k, w in order(i, arms):
                rss, _pss, _anon, guest = vb.rss_of(cmd(w, t, "probe=echo"))
                r[k].append((rss - guest) / 1024)
        ratio_line("RSS beyond guest RAM", "MiB", r["plain"], r["sandboxed"])
    if "blk" in a.what:
        bb = load("blk_bench", os.path.join(TOOLS, "blk-bench.py"))
        image = a.image or os.path.join(tmp, "img")
        if not a.image:
            with open(image, "wb") as f:
                f.write(os.urandom(128 << 20))
        for mode, qd, mib in [("seq", 4, 128), ("rand", 32, 128)]:
            args = f"probe=blk-bench mode={mode} qd={qd} mib={mib} ops=20000"
            cfg = os.path.join(tmp, "b.cfg")
            with open(cfg, "w") as f:
                f.write(f'name = "bench"\nkernel = "{elf}"\nmemory = 96\nvcpus = 1\nextra = "{args}"\n'
                        f"disk = ['{image},raw,xvda,rw,direct-io-safe']\n")
            r = {k: [] for k in arms}
            for i in range(a.n):
                for k, w in order(i, arms):
                    ops, cyc, hz = bb.probe_run([w, "--config", cfg])
                    secs = cyc / hz
                    size = (1 << 20) if mode == "seq" else 4096
                    r[k].append(ops * size / secs / 1e6 if mode == "seq" else ops / secs)
            ratio_line(f"virtio-blk {mode} qd={qd}", "MB/s" if mode == "seq" else "IOPS",
                       r["plain"], r["sandboxed"])
    if "net" in a.what:
        nb = load("net_bench", os.path.join(TOOLS, "net-bench.py"))
        # The TSC rate as the guest calibrates it (ACPI PM timer), as net-bench.py does.
        ns = nb.Ns("hz")
        try:
            ns.tap("tap0", "10.9.5.1/24")
            a0 = types.SimpleNamespace(vmm=arms["plain"], elf=elf, mb=50)
            g = nb.guest(ns, "domus", a0, "tap0", "00:16:3e:09:05:02",
                         "probe=net-ping ip=10.9.5.2/24 target=10.9.5.1 count=1", tmp)
            hz = int(nb.read_until(g, r"tsc_hz=(\d+)").group(1))
            nb.finish(g)
        finally:
            ns.close()
        for case, fn in [("g->h", nb.g2h), ("h->g", nb.h2g)]:
            r = {k: [] for k in arms}
            for i in range(a.n):
                for k, w in order(i, arms):
                    arm = types.SimpleNamespace(vmm=w, elf=elf, mb=50)
                    r[k].append(fn("domus", arm, tmp, hz))
            ratio_line(f"virtio-net {case} UDP stream", "MB/s", r["plain"], r["sandboxed"])


if __name__ == "__main__":
    sys.exit(main())
