#!/usr/bin/env python3
"""vCPU hotplug latency (issue 16): time from a `set-vcpus` request (what `domus vcpu-set` sends) to
the probe's `PROBE cpu N up` line, and to `PROBE cpu N down` for a removal; and, side by side, the
boot-time AP bring-up of the same probe code (`probe=smp`: from the BSP's `cpu 0 up` line to the
AP's `cpu 1 up` line) on domus-vmm and on QEMU `-M microvm`, which has no CPU hotplug.

usage: hotplug_bench.py TARGET_DIR [--rounds N]
Console lines are timestamped on arrival (host monotonic clock); medians are reported.
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


class Console:
    """Reads a process's stdout line by line, remembering when each line arrived."""

    def __init__(self, proc):
        self.lines = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()

    def _read(self, f):
        for raw in iter(f.readline, b""):
            line = raw.decode(errors="replace").strip()
            with self.cond:
                self.lines.append((time.monotonic(), line))
                self.cond.notify_all()

    def wait(self, text, after=0, timeout=30.0):
        """Time of the first line at index >= after containing text, and its index."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i in range(after, len(self.lines)):
                    if text in self.lines[i][1]:
                        return self.lines[i][0], i
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{text!r} not seen; got {self.lines[-5:]}")
                self.cond.wait(left)


def control(path, req):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall((json.dumps(req) + "\n").encode())
    reply = s.makefile().readline()
    s.close()
    return json.loads(reply)


def hotplug(target, rounds):
    d = tempfile.mkdtemp(prefix="hotplug-bench-")
    ctl = os.path.join(d, "ctl.sock")
    vmm = subprocess.Popen(
        [f"{target}/domus-vmm", "--kernel", f"{target}/domus-probe", "--cmdline", "probe=idle",
         "--memory", "64", "--vcpus", "1", "--maxvcpus", "2", "--control", ctl,
         "--console", "stdio"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    con = Console(vmm)
    ups, downs = [], []
    try:
        _, idx = con.wait("PROBE idle ready")
        for _ in range(rounds):
            t0 = time.monotonic()
            assert control(ctl, {"cmd": "set-vcpus", "online": 2})["ok"]
            t1, idx = con.wait("PROBE cpu 1 up", idx + 1)
            ups.append(t1 - t0)
            t0 = time.monotonic()
            assert control(ctl, {"cmd": "set-vcpus", "online": 1})["ok"]
            t1, idx = con.wait("PROBE cpu 1 down", idx + 1)
            downs.append(t1 - t0)
        control(ctl, {"cmd": "destroy"})
    finally:
        vmm.kill()
        vmm.wait()
        subprocess.run(["rm", "-rf", d], check=False)
    return ups, downs


def boot_ap(cmd):
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    con = Console(proc)
    try:
        t0, i = con.wait("PROBE cpu 0 up")
        t1, _ = con.wait("PROBE cpu 1 up", i + 1)
        con.wait("PROBE smp ")
        return t1 - t0
    finally:
        proc.kill()
        proc.wait()


def ms(xs):
    return f"{statistics.median(xs) * 1000:.2f} ms (min {min(xs) * 1000:.2f}, n={len(xs)})"


def main():
    target = sys.argv[1]
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 20
    ups, downs = hotplug(target, rounds)
    vmm_boot = [boot_ap([f"{target}/domus-vmm", "--kernel", f"{target}/domus-probe",
                         "--cmdline", "probe=smp", "--memory", "64", "--vcpus", "2",
                         "--console", "stdio"]) for _ in range(rounds // 2)]
    qemu = os.path.join(REPO, "guests/probe/run-qemu.sh")
    env_elf = {**os.environ, "PROBE_ELF": f"{target}/domus-probe"}
    os.environ.update(env_elf)
    qemu_boot = [boot_ap([qemu, "-smp", "2", "--", "probe=smp"]) for _ in range(rounds // 2)]
    print(f"domus-vmm set-vcpus 1->2 to 'PROBE cpu 1 up':   {ms(ups)}")
    print(f"domus-vmm set-vcpus 2->1 to 'PROBE cpu 1 down': {ms(downs)}")
    print(f"domus-vmm boot-time AP bring-up (probe=smp):    {ms(vmm_boot)}")
    print(f"QEMU microvm boot-time AP bring-up (probe=smp): {ms(qemu_boot)}")


if __name__ == "__main__":
    main()
