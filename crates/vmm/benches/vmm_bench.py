#!/usr/bin/env python3
"""Whole-system benchmarks of domus-vmm against QEMU -M microvm, booting the same probe ELF.

Figures (see BENCHMARKS.md, section "VMM"):
  start   process start -> first console byte of `probe=hello` (domus-vmm vs QEMU, interleaved runs)
  rss     VMM resident memory beyond the guest pages touched, 1 vCPU / 64 MiB, probe idling (`probe=echo`)
  loop    `probe=loop` CPL3 compute vs the same instructions as a host process (guests/probe/tools/host-loop.c)

Usage (from the repository root, after `cargo build -p domus-vmm -p domus-probe`):
  python3 crates/vmm/benches/vmm_bench.py [--target-dir target] [--profile debug|release] [--runs 10] [start|rss|loop ...]
Not a test: it never asserts, it prints figures.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

QEMU = ["qemu-system-x86_64", "-M", "microvm", "-accel", "kvm", "-cpu", "qemu64", "-m", "64",
        "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio"]


PIN = []


def vmm_cmd(t, cmdline, mem=64):
    return PIN + [f"{t}/domus-vmm", "--kernel", f"{t}/domus-probe", "--cmdline", cmdline,
            "--memory", str(mem), "--vcpus", "1"]


def qemu_cmd(t, cmdline):
    return PIN + QEMU + ["-kernel", f"{t}/domus-probe", "-append", cmdline]


def first_byte_s(cmd):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    b = p.stdout.read(1)
    t1 = time.perf_counter()
    p.stdout.read()
    p.wait(timeout=60)
    if not b:
        raise RuntimeError(f"no output from {cmd}")
    return t1 - t0


def bench_start(t, runs):
    ours, qemu = [], []
    have_qemu = shutil.which(QEMU[0]) is not None
    for _ in range(runs):
        ours.append(first_byte_s(vmm_cmd(t, "probe=hello")))
        if have_qemu:
            qemu.append(first_byte_s(qemu_cmd(t, "probe=hello")))
    if not have_qemu:
        print(f"start->first byte (median of {runs}): domus-vmm {statistics.median(ours)*1000:.1f} ms "
              f"(min {min(ours)*1000:.1f} ms); QEMU not installed here: no peer figure")
        return
    o, q = statistics.median(ours), statistics.median(qemu)
    print(f"start->first byte (median of {runs}): domus-vmm {o*1000:.1f} ms, QEMU microvm {q*1000:.1f} ms, "
          f"ratio {o/q:.3f}x  (min {min(ours)*1000:.1f} / {min(qemu)*1000:.1f} ms)")


def smaps(pid):
    """Sums over /proc/PID/smaps: Rss, Pss, Anonymous (kB), and the Rss of the guest-RAM mapping (the one
    mapping of exactly 64 MiB)."""
    tot = {"Rss:": 0, "Pss:": 0, "Anonymous:": 0}
    guest = 0
    size = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if parts[0] == "Size:":
                size = int(parts[1])
            elif parts[0] in tot:
                tot[parts[0]] += int(parts[1])
                if parts[0] == "Rss:" and size == 64 * 1024:
                    guest = max(guest, int(parts[1]))
    return tot["Rss:"], tot["Pss:"], tot["Anonymous:"], guest


def rss_of(cmd):
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    buf = b""
    deadline = time.time() + 30
    os.set_blocking(p.stdout.fileno(), False)
    while b"echo ready" not in buf and time.time() < deadline:
        try:
            chunk = p.stdout.read()
        except BlockingIOError:
            chunk = None
        if chunk:
            buf += chunk
        time.sleep(0.01)
    time.sleep(0.5)
    figures = smaps(p.pid)
    p.kill()
    p.wait()
    return figures


def bench_rss(t):
    peers = [("domus-vmm", vmm_cmd(t, "probe=echo"))]
    if shutil.which(QEMU[0]):
        peers.append(("QEMU microvm", qemu_cmd(t, "probe=echo")))
    for name, cmd in peers:
        rss, pss, anon, guest = rss_of(cmd)
        print(f"RSS {name}: total {rss/1024:.2f} MiB, guest RAM touched {guest/1024:.2f} MiB -> "
              f"RSS beyond guest {(rss-guest)/1024:.2f} MiB (PSS beyond guest {(pss-guest)/1024:.2f} MiB, "
              f"private anonymous beyond guest {(anon-guest)/1024:.2f} MiB)")


def cycles(cmd, prefix):
    out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=300).stdout.decode()
    for line in out.splitlines():
        if line.startswith(prefix):
            return int(line.split("cycles=")[1].split()[0])
    raise RuntimeError(f"no {prefix} line from {cmd}: {out!r}")


def bench_loop(t, runs, iters):
    host_bin = os.path.join(tempfile.gettempdir(), "domus-host-loop")
    src = os.path.join(os.path.dirname(__file__), "../../../guests/probe/tools/host-loop.c")
    subprocess.run(["cc", "-O2", "-o", host_bin, src], check=True)
    guest, host = [], []
    for _ in range(runs):
        guest.append(cycles(vmm_cmd(t, f"probe=loop iters={iters}"), "PROBE loop"))
        host.append(cycles(PIN + [host_bin, str(iters)], "HOST loop"))
    g, h = min(guest), min(host)
    print(f"loop iters={iters} (best of {runs}, TSC cycles): guest CPL3 {g}, host {h}, ratio {g/h:.4f}x "
          f"(medians {statistics.median(guest)} / {statistics.median(host)})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target-dir", default=os.environ.get("CARGO_TARGET_DIR", "target"))
    ap.add_argument("--profile", default="debug", help="debug or release (cargo build --release)")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--iters", type=int, default=500_000_000)
    ap.add_argument("--pin", help="host CPU to pin every measured process to (taskset -c), e.g. 1")
    ap.add_argument("what", nargs="*", default=["start", "rss", "loop"])
    a = ap.parse_args()
    a.target_dir = os.path.join(a.target_dir, a.profile)
    if a.pin is not None:
        PIN[:] = ["taskset", "-c", a.pin]
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {os.uname().nodename} nproc={os.cpu_count()} "
          f"load={os.getloadavg()[0]:.2f} binaries={a.target_dir}")
    for w in a.what:
        {"start": lambda: bench_start(a.target_dir, a.runs),
         "rss": lambda: bench_rss(a.target_dir),
         "loop": lambda: bench_loop(a.target_dir, max(3, a.runs // 2), a.iters)}[w]()


if __name__ == "__main__":
    sys.exit(main())
