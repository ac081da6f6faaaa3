#!/usr/bin/env python3
"""Scheduler weights and caps through the per-domain cgroups (BENCHMARKS.md, "Resources").

Usage: sched_bench.py BIN_DIR [--seconds N]
  BIN_DIR holds domus, domusd, domus-vmm, domus-probe (e.g. target/debug).
In a fresh temp host (DOMUS_* dirs), with busy `probe=loop` domains whose vCPU is pinned to host CPU 0:
  1. weights 512 vs 256, then (the peer, same run) 256 vs 256: CPU time of each VMM over N seconds;
  2. one domain with cap 25 alone on CPU 0, then the same domain uncapped (sched-credit -c 0).
CPU time is utime+stime of each domus-vmm from /proc/PID/stat. Prints figures, never asserts.
"""
import json, os, shutil, signal, subprocess, sys, tempfile, time

BIN = os.path.abspath(sys.argv[1])
args = sys.argv[2:]
SECS = float(args[args.index("--seconds") + 1]) if "--seconds" in args else 10.0
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / TICK


class HostEnv:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="domus-sched-")
        for d in ("run", "state", "log", "cfg"):
            os.makedirs(os.path.join(self.dir, d))
        self.env = dict(os.environ, DOMUS_RUNTIME_DIR=f"{self.dir}/run", DOMUS_STATE_DIR=f"{self.dir}/state",
                        DOMUS_LOG_DIR=f"{self.dir}/log", DOMUS_CONFIG_DIR=f"{self.dir}/cfg")
        with open(f"{self.dir}/cfg/loop.cfg", "w") as f:
            f.write(f'type="pvh"\nkernel="{BIN}/domus-probe"\nextra="probe=loop iters=1000000000000"\n'
                    f'memory=16\nvcpus=1\ncpus="0"\n')
        self.domusd = subprocess.Popen([f"{BIN}/domusd", "--foreground"], env=self.env,
                                       stdout=open(f"{self.dir}/domusd.log", "w"), stderr=subprocess.STDOUT)
        while subprocess.run([f"{BIN}/domus", "list"], env=self.env, capture_output=True).returncode:
            time.sleep(0.01)

    def domus(self, *a):
        r = subprocess.run([f"{BIN}/domus", *a], env=self.env, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"domus {a}: {r.stderr}")
        return r.stdout

    def create(self, name, weight=256, cap=0):
        self.domus("create", "-q", "loop.cfg", f'name="{name}"', f"cpu_weight={weight}", f"cpu_cap={cap}")
        return self.pid(name)

    def pid(self, name):
        for f in os.listdir(f"{self.dir}/state/domains"):
            if f.endswith(".json"):
                rec = json.load(open(f"{self.dir}/state/domains/{f}"))
                if rec["name"] == name:
                    return rec["vmm"]["pid"]
        raise RuntimeError(f"no record for {name}")

    def close(self):
        for name in ("a", "b", "c"):
            subprocess.run([f"{BIN}/domus", "destroy", name], env=self.env, capture_output=True)
        self.domusd.send_signal(signal.SIGTERM)
        self.domusd.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def share(pids):
    t0 = {p: cpu_s(p) for p in pids}
    w0 = time.monotonic()
    time.sleep(SECS)
    wall = time.monotonic() - w0
    return {p: (cpu_s(p) - t0[p]) / wall for p in pids}


def main():
    h = HostEnv()
    try:
        a, b = h.create("a", weight=512), h.create("b", weight=256)
        time.sleep(1)
        s = share([a, b])
        print(f"weights 512:256  -> CPU {s[a]:.3f} : {s[b]:.3f} of CPU 0, ratio {s[a] / s[b]:.2f} (goal 2.00 +-10%)")
        h.domus("sched-credit", "-d", "a", "-w", "256")
        time.sleep(1)
        s = share([a, b])
        print(f"weights 256:256  -> CPU {s[a]:.3f} : {s[b]:.3f} of CPU 0, ratio {s[a] / s[b]:.2f} (peer: equal weights)")
        h.domus("destroy", "a")
        h.domus("destroy", "b")
        c = h.create("c", cap=25)
        time.sleep(1)
        s = share([c])
        print(f"cap 25 alone     -> CPU {s[c]:.3f} of one CPU (goal ~0.25)")
        h.domus("sched-credit", "-d", "c", "-c", "0")
        time.sleep(1)
        s = share([c])
        print(f"uncapped alone   -> CPU {s[c]:.3f} of one CPU (peer)")
    finally:
        h.close()


main()
