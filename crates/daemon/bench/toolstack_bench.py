#!/usr/bin/env python3
"""Whole-system toolstack figures for BENCHMARKS.md ("Toolstack"): real domusd, domus-vmm and the probe guest.

Usage: toolstack_bench.py BIN_DIR [--max-domains N] [--fit-limit N]
  BIN_DIR holds domus, domusd, domus-vmm, domus-probe (e.g. target/release).
Measures, each in a fresh temp host (DOMUS_* dirs):
  1. create -> running: wall time of `domus create` (returns once the VMM answers on its control socket),
     and until `domus list` shows the domain; median of 20.
  2. create -> console greeting: from exec of `domus create` to "PROBE idle ready" in the console log.
  3. `domus list` latency with 1, 64 and 256 running 16 MiB probe domains (median and p90 of 50 runs).
  4. domusd memory: RSS with 0 and 256 domains -> per domain; VMM RSS per domain; domusd CPU when idle.
  5. how many 16 MiB probe domains fit: keep creating until a create fails or --fit-limit is reached.
"""
import json, os, shutil, signal, statistics, subprocess, sys, tempfile, time

BIN = os.path.abspath(sys.argv[1])
args = sys.argv[2:]
FIT_LIMIT = int(args[args.index("--fit-limit") + 1]) if "--fit-limit" in args else 0
MAXDOM = int(args[args.index("--max-domains") + 1]) if "--max-domains" in args else 256


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class HostEnv:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="domus-bench-")
        for d in ("run", "state", "log", "cfg"):
            os.makedirs(os.path.join(self.dir, d))
        self.env = dict(os.environ, DOMUS_RUNTIME_DIR=f"{self.dir}/run", DOMUS_STATE_DIR=f"{self.dir}/state",
                        DOMUS_LOG_DIR=f"{self.dir}/log", DOMUS_CONFIG_DIR=f"{self.dir}/cfg")
        with open(f"{self.dir}/cfg/idle.cfg", "w") as f:
            f.write(f'type="pvh"\nkernel="{BIN}/domus-probe"\nextra="probe=idle"\nmemory=16\nvcpus=1\n')
        self.domusd = subprocess.Popen([f"{BIN}/domusd", "--foreground"], env=self.env,
                                       stdout=open(f"{self.dir}/domusd.log", "w"), stderr=subprocess.STDOUT)
        while subprocess.run([f"{BIN}/domus", "list"], env=self.env, capture_output=True).returncode:
            time.sleep(0.01)

    def domus(self, *a, check=True):
        r = subprocess.run([f"{BIN}/domus", *a], env=self.env, capture_output=True, text=True)
        if check and r.returncode:
            raise RuntimeError(f"domus {a}: {r.stderr}")
        return r

    def create(self, name):
        return self.domus("create", "-q", "idle.cfg", f'name="{name}"')

    def close(self):
        for f in os.listdir(f"{self.dir}/state/domains"):
            if f.endswith(".json"):
                try:
                    pid = json.load(open(f"{self.dir}/state/domains/{f}"))["vmm"]["pid"]
                    os.kill(pid, signal.SIGKILL)
                except Exception:
                    pass
        self.domusd.kill()
        self.domusd.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])  # utime + stime, in 1/100 s


def ms(x):
    return f"{x * 1000:.1f} ms"


def bench_create():
    h = HostEnv()
    ret, listed, greet = [], [], []
    try:
        for i in range(20):
            name = f"c{i}"
            log = f"{h.dir}/log/console/guest-{name}.log"
            t0 = time.perf_counter()
            h.create(name)
            t1 = time.perf_counter()
            while name not in h.domus("list").stdout:
                pass
            t2 = time.perf_counter()
            while True:
                try:
                    if "PROBE idle ready" in open(log).read():
                        break
                except FileNotFoundError:
                    pass
                time.sleep(0.0005)
            t3 = time.perf_counter()
            ret.append(t1 - t0)
            listed.append(t2 - t0)
            greet.append(t3 - t0)
            h.domus("destroy", name)
    finally:
        h.close()
    print(f"create -> create returns (VMM answering): median {ms(statistics.median(ret))}, min {ms(min(ret))}")
    print(f"create -> listed by domus list:           median {ms(statistics.median(listed))}")
    print(f"create -> console greeting (PROBE idle ready in the console log): median {ms(statistics.median(greet))}, min {ms(min(greet))}")


def time_to_text(cmd, text, env=None):
    """Seconds from exec of cmd until text appears on its stdout."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env)
    buf = b""
    while text.encode() not in buf:
        chunk = os.read(p.stdout.fileno(), 4096)
        if not chunk:
            break
        buf += chunk
    t = time.perf_counter() - t0
    p.kill()
    p.wait()
    return t


def bench_greeting_peers():
    """create -> 'PROBE hello' through the toolstack, vs domus-vmm alone, vs QEMU microvm (same ELF)."""
    h = HostEnv()
    with open(f"{h.dir}/cfg/hello.cfg", "w") as f:
        f.write(f'type="pvh"\nkernel="{BIN}/domus-probe"\nextra="probe=hello"\nmemory=16\nvcpus=1\n')
    stack, vmm, qemu = [], [], []
    try:
        for i in range(15):
            stack.append(time_to_text([f"{BIN}/domus", "create", "-c", "-q", "hello.cfg", f'name="h{i}"'], "PROBE hello", h.env))
            vmm.append(time_to_text([f"{BIN}/domus-vmm", "--config", f"{h.dir}/cfg/hello.cfg"], "PROBE hello"))
            if shutil.which("qemu-system-x86_64"):
                qemu.append(time_to_text(["qemu-system-x86_64", "-M", "microvm", "-accel", "kvm", "-cpu", "qemu64",
                                          "-m", "16", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
                                          "-kernel", f"{BIN}/domus-probe", "-append", "probe=hello"], "PROBE hello"))
    finally:
        h.close()
    m = statistics.median
    print(f"exec -> 'PROBE hello' on the console: domus create -c {ms(m(stack))}; domus-vmm alone {ms(m(vmm))}"
          + (f"; QEMU -M microvm {ms(m(qemu))} (toolstack path / QEMU = {m(stack) / m(qemu):.2f})" if qemu else "; QEMU not installed"))


def list_latency(h, n):
    xs = []
    for _ in range(50):
        t0 = time.perf_counter()
        h.domus("list")
        xs.append(time.perf_counter() - t0)
    xs.sort()
    print(f"domus list with {n:3d} domains: median {ms(statistics.median(xs))}, p90 {ms(xs[int(len(xs) * 0.9)])}")


def bench_list_and_memory():
    h = HostEnv()
    try:
        time.sleep(0.5)
        base = rss_kib(h.domusd.pid)
        created = 0
        for target in (1, 64, MAXDOM):
            while created < target:
                h.create(f"d{created}")
                created += 1
            time.sleep(1.0)
            list_latency(h, target)
        time.sleep(1.0)
        full = rss_kib(h.domusd.pid)
        print(f"domusd RSS: {base} KiB with 0 domains, {full} KiB with {created}: {(full - base) / created:.0f} KiB per domain")
        pids = [json.load(open(f"{h.dir}/state/domains/{f}"))["vmm"]["pid"]
                for f in os.listdir(f"{h.dir}/state/domains") if f.endswith(".json")]
        v = [rss_kib(p) for p in pids]
        print(f"domus-vmm RSS per 16 MiB probe domain: median {statistics.median(v):.0f} KiB")
        time.sleep(10)  # past the 10 s "hot" period: watchers poll each VMM once a second
        c0 = cpu_ticks(h.domusd.pid)
        time.sleep(10)
        c1 = cpu_ticks(h.domusd.pid)
        print(f"domusd CPU with {created} idle domains (one state poll per VMM per second): {(c1 - c0) / 10:.1f} % of one CPU")
    finally:
        h.close()


def bench_fit():
    if not FIT_LIMIT:
        return
    h = HostEnv()
    n = 0
    try:
        t0 = time.time()
        while n < FIT_LIMIT:
            r = h.domus("create", "-q", "idle.cfg", f'name="f{n}"', check=False)
            if r.returncode:
                print(f"create #{n + 1} failed: {r.stderr.strip()[:300]}")
                break
            n += 1
        avail = [l for l in open("/proc/meminfo") if l.startswith("MemAvailable")][0].split()[1]
        print(f"16 MiB probe domains running at once: {n} (limit {FIT_LIMIT}) in {time.time() - t0:.0f} s; MemAvailable then {int(avail) // 1024} MiB")
    finally:
        h.close()


if __name__ == "__main__":
    bench_greeting_peers()
    bench_create()
    bench_list_and_memory()
    bench_fit()
