#!/usr/bin/env python3
"""Balloon benchmark: domus-vmm vs QEMU `-M microvm -device virtio-balloon-device`, same probe ELF.

Each run boots `probe=idle touch_mib=4096` (the probe writes all its free RAM) with RAM MEM MiB and an
empty balloon, waits for the guest to settle, then sets the balloon target to TARGET MiB (domus-vmm:
the control socket's `balloon-set`, what `domus mem-set` sends; QEMU: QMP `balloon`) and measures
  - the VMM's VmRSS before and after (after a down: once the console shows the probe caught up, plus
    0.5 s; after an up: once RSS stopped growing, the probe having written its returned pages),
  - the time from sending the request to `PROBE balloon target_mib=TARGET` on the console,
then sets it back to MEM and measures the same (deflate: RSS grows as the probe writes its pages again).
Runs alternate domus-vmm and QEMU so both see the same load. Not a test: prints a table.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Console:
    def __init__(self, path):
        self.path = path

    def wait(self, text, timeout=60):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with open(self.path, "rb") as f:
                if text.encode() in f.read():
                    return time.monotonic()
            time.sleep(0.002)
        raise TimeoutError(text)


def settle(pid, secs=0.5):
    time.sleep(secs)
    return rss_mib(pid)


def stable(pid, timeout=30):
    """RSS once it stopped changing for 0.5 s (the probe re-writing its pages after a deflate)."""
    end = time.monotonic() + timeout
    last = rss_mib(pid)
    while time.monotonic() < end:
        time.sleep(0.5)
        now = rss_mib(pid)
        if abs(now - last) < 1:
            return now
        last = now
    return last


def run_domus(vmm, elf, mem, target, tmp):
    cfg = os.path.join(tmp, "b.cfg")
    with open(cfg, "w") as f:
        f.write(f'name = "b"\ntype = "pvh"\nkernel = "{elf}"\nmemory = {mem}\nvcpus = 1\n'
                f'extra = "probe=idle touch_mib=4096"\n')
    ctl = os.path.join(tmp, "ctl.sock")
    out = os.path.join(tmp, "domus.out")
    p = subprocess.Popen([vmm, "--config", cfg, "--control", ctl], stdout=open(out, "wb"),
                         stderr=subprocess.DEVNULL)
    con = Console(out)
    try:
        con.wait("PROBE idle ready")
        while not os.path.exists(ctl):
            time.sleep(0.01)

        def req(obj):
            s = socket.socket(socket.AF_UNIX)
            s.connect(ctl)
            s.sendall((json.dumps(obj) + "\n").encode())
            r = s.makefile().readline()
            s.close()
            return json.loads(r)

        pid = req({"cmd": "state"})["pid"]
        res = one_cycle(pid, con, mem, target, lambda mib: req({"cmd": "balloon-set", "target_mib": mib}))
        req({"cmd": "destroy"})
        p.wait(10)
        return res
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def run_qemu(elf, mem, target, tmp):
    qmp = os.path.join(tmp, "qmp.sock")
    out = os.path.join(tmp, "qemu.out")
    p = subprocess.Popen(["qemu-system-x86_64", "-M", "microvm", "-accel", "kvm", "-cpu", "qemu64",
                          "-m", str(mem), "-nodefaults", "-no-user-config", "-display", "none",
                          "-serial", f"file:{out}", "-global", "virtio-mmio.force-legacy=false",
                          "-device", "virtio-balloon-device", "-qmp", f"unix:{qmp},server=on,wait=off",
                          "-kernel", elf, "-append", "probe=idle touch_mib=4096"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    con = Console(out)
    try:
        while not os.path.exists(qmp) or not os.path.exists(out):
            time.sleep(0.01)
        con.wait("PROBE idle ready")
        s = socket.socket(socket.AF_UNIX)
        s.connect(qmp)
        f = s.makefile()
        f.readline()

        def cmd(obj):
            s.sendall((json.dumps(obj) + "\n").encode())
            while True:
                r = json.loads(f.readline())
                if "return" in r or "error" in r:
                    return r

        cmd({"execute": "qmp_capabilities"})
        res = one_cycle(p.pid, con, mem, target,
                        lambda mib: cmd({"execute": "balloon", "arguments": {"value": mib << 20}}))
        cmd({"execute": "quit"})
        p.wait(10)
        return res
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def one_cycle(pid, con, mem, target, set_target):
    before = settle(pid, 1.0)
    t0 = time.monotonic()
    set_target(target)
    t1 = con.wait(f"PROBE balloon target_mib={target} ")
    down = settle(pid)
    t2 = time.monotonic()
    set_target(mem)
    t3 = con.wait(f"PROBE balloon target_mib={mem} ")
    up = stable(pid)
    return {"before": before, "down": down, "up": up, "down_ms": (t1 - t0) * 1e3, "up_ms": (t3 - t2) * 1e3}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=5)
    ap.add_argument("--mem", type=int, default=512)
    ap.add_argument("--target", type=int, default=128)
    target_dir = os.environ.get("CARGO_TARGET_DIR", "target")
    ap.add_argument("--vmm", default=os.path.join(target_dir, "debug", "domus-vmm"))
    ap.add_argument("--elf", default=os.path.join(target_dir, "debug", "domus-probe"))
    a = ap.parse_args()
    elf = os.path.abspath(a.elf)
    results = {"domus-vmm": [], "qemu-microvm": []}
    for _ in range(a.n):
        with tempfile.TemporaryDirectory(prefix="balloon-bench-") as tmp:
            results["domus-vmm"].append(run_domus(a.vmm, elf, a.mem, a.target, tmp))
        with tempfile.TemporaryDirectory(prefix="balloon-bench-") as tmp:
            results["qemu-microvm"].append(run_qemu(elf, a.mem, a.target, tmp))
    print(f"RAM {a.mem} MiB, probe touches all its free RAM; mem-set {a.mem} -> {a.target} -> {a.mem}; "
          f"medians of {a.n}")
    print("| VMM | RSS before (MiB) | RSS after down | RSS after up | catch-up down (ms) | catch-up up (ms) |")
    print("|---|---|---|---|---|---|")
    for name, rs in results.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        print(f"| {name} | {med['before']:.1f} | {med['down']:.1f} | {med['up']:.1f} | "
              f"{med['down_ms']:.1f} | {med['up_ms']:.1f} |")
        print(f"  raw {name}: " + "; ".join(
            f"{r['before']:.0f}/{r['down']:.0f}/{r['up']:.0f} MiB {r['down_ms']:.0f}/{r['up_ms']:.0f} ms" for r in rs))


if __name__ == "__main__":
    main()
