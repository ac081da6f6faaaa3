#!/usr/bin/env python3
"""Save/restore and live-migration figures (issue 18): Domus (domusd + `domus` CLI + domus-vmm) against
QEMU `-M microvm` with the same probe ELF, measured in the same run, interleaved.

  save     `domus save DOM FILE` wall time  vs QEMU `stop` + `migrate "exec:cat > FILE"` until completed
           (max-bandwidth raised: QEMU's default caps migration at 128 MiB/s)
  restore  `domus restore FILE` wall time (domain running) vs QEMU started with `-incoming "exec:cat FILE"`
           until `query-status` says running
  migrate  `domus migrate --debug` between two local domusd (total time, downtime from its statistics) vs
           QEMU `migrate unix:` to a second QEMU started with `-incoming` (`query-migrate` total-time,
           downtime; downtime-limit 300 ms as ours, max-bandwidth raised so the link is not capped);
           and, as context with the scope of `domus migrate`'s total (which starts the target), the wall
           time from starting the target QEMU with `-incoming` (once the source guest is ready) to its
           RESUME event, in separate runs interleaved with the others

Guests: `probe=mem-soak mib=M` (half the RAM filled, rewritten once a second) or `probe=idle`.
Usage (repository root, after `cargo build --release -p domus-vmm -p domusd -p domus -p domus-probe`):
  python3 crates/cli/benches/save_migrate.py [--target-dir target/release] [--runs 3]
`BENCH_RUST_LOG=debug` gives the VMMs debug logs (the migration's phase lines, with timestamps).
`BENCH_LOGDIR=DIR` keeps both VMMs' logs of each migration there.
Not a test: prints figures, asserts nothing.
"""
import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

QEMU = ["qemu-system-x86_64", "-M", "microvm", "-accel", "kvm", "-cpu", "qemu64", "-nographic",
        "-nodefaults", "-no-reboot", "-serial", "stdio"]


class Host:
    """A private Domus host: its own directories and domusd (no cgroups: two share this machine)."""

    def __init__(self, t, root, name):
        self.t, self.dir = t, os.path.join(root, name)
        for d in ["run", "state", "log", "cfg"]:
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        # RUST_LOG=info: the VMMs log when a migrating guest was paused and when it runs again.
        self.env = dict(os.environ, RUST_LOG=os.environ.get("BENCH_RUST_LOG", "info"), DOMUS_RUNTIME_DIR=self.p("run"), DOMUS_STATE_DIR=self.p("state"),
                        DOMUS_LOG_DIR=self.p("log"), DOMUS_CONFIG_DIR=self.p("cfg"))
        self.proc = subprocess.Popen([f"{t}/domusd", "--foreground", "--no-cgroups"], env=self.env,
                                     stdout=open(self.p("domusd.log"), "w"), stderr=subprocess.STDOUT)
        for _ in range(200):
            if self.domus("list", check=False).returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError("domusd did not start")

    def p(self, rel):
        return os.path.join(self.dir, rel)

    def domus(self, *args, check=True):
        r = subprocess.run([f"{self.t}/domus", *args], env=self.env, capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError(f"domus {args}: {r.stderr}")
        return r

    def console(self, name):
        try:
            return open(self.p(f"log/console/guest-{name}.log")).read()
        except FileNotFoundError:
            return ""

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def wait(what, f, limit=60, poll=0.02):
    end = time.time() + limit
    while time.time() < end:
        v = f()
        if v:
            return v
        time.sleep(poll)
    raise RuntimeError(f"timed out waiting for {what}")


def epoch_at_least(text, n):
    e = [int(m) for m in re.findall(r"mem-soak epoch=(\d+) ok", text)]
    return e and max(e) >= n


def cfg(h, name, mem, scenario):
    with open(h.p(f"cfg/{name}.cfg"), "w") as f:
        f.write(f'name = "{name}"\ntype = "pvh"\nkernel = "{h.t}/domus-probe"\nextra = "probe={scenario}"\n'
                f"memory = {mem}\nvcpus = 1\n")


def ready(text, scenario):
    return epoch_at_least(text, 1) if scenario.startswith("mem-soak") else "idle ready" in text


class Qmp:
    def __init__(self, path, poll=0.02):
        self.s = socket.socket(socket.AF_UNIX)

        def connect():
            # The socket file appears a moment before QEMU listens on it.
            try:
                self.s.connect(path)
                return True
            except (FileNotFoundError, ConnectionRefusedError):
                return None
        wait("qmp socket", connect, poll=poll)
        self.f = self.s.makefile("rw")
        self.f.readline()
        self.events = []
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "return" in r or "error" in r:
                return r
            if "event" in r:
                ts = r.get("timestamp", {})
                self.events.append((r["event"], ts.get("seconds", 0) + ts.get("microseconds", 0) / 1e6))

    def event_time(self, name, limit=30):
        """Wall-clock time of the first `name` event (waits for it)."""
        def find():
            for e, ts in self.events:
                if e == name:
                    return ts
            self.cmd("query-status")
            return None
        return wait(f"QMP event {name}", find, limit)


def qemu_start(t, mem, scenario, qmp, extra=(), out=None):
    return subprocess.Popen(QEMU + ["-m", str(mem), "-kernel", f"{t}/domus-probe", "-append", f"probe={scenario}",
                                    "-qmp", f"unix:{qmp},server=on,wait=off", *extra],
                            stdout=open(out, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def read(path):
    try:
        return open(path).read()
    except FileNotFoundError:
        return ""


SEQ = [0]


def fresh(prefix):
    """A domain name not used before in this run (console logs are kept per name)."""
    SEQ[0] += 1
    return f"{prefix}{SEQ[0]}"


def domus_save_restore(a, mem, scenario, img):
    name = fresh(f"sr{mem}-")
    cfg(a, name, mem, scenario)
    a.domus("create", f"{name}.cfg")
    wait("guest ready", lambda: ready(a.console(name), scenario))
    t0 = time.perf_counter()
    a.domus("save", name, img)
    t_save = time.perf_counter() - t0
    size = os.path.getsize(img)
    # Where the time went: the VMM writing its stream, domusd from its request to the VMM until the
    # image is synced and renamed (the rest: CLI and API hops, destroying the domain afterwards).
    vmm_ms = last_ms(a.p(f"log/domus-vmm-{name}.log"), "snapshot written")
    domusd_ms = last_ms(a.p("domusd.log"), "domain saved")
    t0 = time.perf_counter()
    a.domus("restore", img)
    t_restore = time.perf_counter() - t0
    a.domus("destroy", name)
    os.unlink(img)
    return t_save, t_restore, size, vmm_ms, domusd_ms


def last_ms(path, needle):
    """The `ms=N` of the last log line of `path` containing `needle` (None without one)."""
    ms = None
    try:
        for line in open(path, errors="replace"):
            line = re.sub(r"\x1b\[[0-9;]*m", "", line)
            if needle in line:
                m = re.search(r"\bms=(\d+)", line)
                ms = int(m.group(1)) if m else ms
    except FileNotFoundError:
        pass
    return ms


def qemu_save_restore(t, root, mem, scenario, img):
    qmp, out = os.path.join(root, "q.qmp"), os.path.join(root, "q.out")
    q = qemu_start(t, mem, scenario, qmp, out=out)
    c = Qmp(qmp)
    wait("qemu guest ready", lambda: ready(read(out), scenario))
    # No bandwidth cap (QEMU's default caps migration at 128 MiB/s).
    c.cmd("migrate-set-parameters", **{"max-bandwidth": 64 << 30})
    t0 = time.perf_counter()
    c.cmd("stop")
    c.cmd("migrate", uri=f"exec:cat > {img}")
    wait("qemu save", lambda: c.cmd("query-migrate")["return"].get("status") in ("completed", "failed"), 120)
    t_save = time.perf_counter() - t0
    q.kill()
    q.wait()
    size = os.path.getsize(img)
    os.unlink(qmp)
    t0 = time.perf_counter()
    q = qemu_start(t, mem, scenario, qmp, extra=["-incoming", f"exec:cat {img}"], out=out)
    c = Qmp(qmp)
    wait("qemu restore", lambda: c.cmd("query-status")["return"].get("status") in ("running", "paused", "postmigrate")
         and c.cmd("query-migrate")["return"].get("status") == "completed", 120)
    # An image saved while stopped restores paused: `cont` is part of getting it running.
    c.cmd("cont")
    wait("qemu running", lambda: c.cmd("query-status")["return"].get("status") == "running")
    t_restore = time.perf_counter() - t0
    q.kill()
    q.wait()
    os.unlink(qmp)
    os.unlink(img)
    return t_save, t_restore, size


def domus_migrate(a, b, mem, scenario, root):
    name = fresh(f"mg{mem}-")
    cfg(a, name, mem, scenario)
    a.domus("create", f"{name}.cfg")
    wait("guest ready", lambda: ready(a.console(name), scenario))
    time.sleep(1)
    ssh = os.path.join(root, "ssh-b")
    with open(ssh, "w") as f:
        env = " ".join(f"{k}={b.env[k]}" for k in ["DOMUS_RUNTIME_DIR", "DOMUS_STATE_DIR", "DOMUS_LOG_DIR",
                                                   "DOMUS_CONFIG_DIR"])
        f.write(f'#!/bin/sh\nshift 2\nexec env {env} {a.t}/domus "$@"\n')
    os.chmod(ssh, 0o755)
    r = a.domus("migrate", "--debug", "-s", ssh, name, "hostb")
    if os.environ.get("BENCH_VERBOSE"):
        print(r.stderr)
    total = float(re.search(r"total time:\s+([\d.]+) s", r.stderr).group(1))
    down = float(re.search(r"downtime:\s+([\d.]+) s", r.stderr).group(1))
    rounds = int(re.search(r"pre-copy rounds:\s+(\d+)", r.stderr).group(1))
    tracking = re.search(r"dirty tracking:\s+(\w+)", r.stderr).group(1)
    b.domus("destroy", name)
    if os.environ.get("BENCH_LOGDIR"):
        # Both VMMs' logs kept for a phase breakdown (with BENCH_RUST_LOG=debug).
        os.makedirs(os.environ["BENCH_LOGDIR"], exist_ok=True)
        for h, side in ((a, "source"), (b, "target")):
            shutil.copy(h.p(f"log/domus-vmm-{name}.log"), os.path.join(os.environ["BENCH_LOGDIR"], f"{name}-{side}.log"))
    # Guest-visible downtime: the source VMM's "paused" line to the target VMM's "running" line
    # (written by its main thread once it handed the vCPUs over, as QEMU's RESUME event comes
    # before its vCPU threads run). Context: to vCPU 0's thread running (VMMs that log it).
    target_log = b.p(f"log/domus-vmm-{name}.log")
    paused = log_time(a.p(f"log/domus-vmm-{name}.log"), "guest paused for the stop-and-copy")
    gap = log_time(target_log, "restored guest running") - paused
    try:
        gap_thread = log_time(target_log, "restored vCPU thread running") - paused
    except RuntimeError:
        gap_thread = None
    return total, down, rounds, tracking, gap, gap_thread


def log_time(path, needle):
    """The UTC timestamp (s) of the last line of `path` containing `needle`."""
    import datetime
    ts = None
    for line in open(path, errors="replace"):
        if needle in line:
            m = re.search(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", line)
            if m:
                ts = datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.timezone.utc).timestamp()
    if ts is None:
        raise RuntimeError(f"{needle!r} not in {path}")
    return ts


def qemu_migrate(t, root, mem, scenario, scope=False):
    """QEMU's migration: its `total-time` and downtime with a target QEMU started beside the source
    (and waiting on `-incoming` long before the migration). With `scope`, the target QEMU is started
    only once the source guest is ready, and the result's last figure is the wall time from starting
    it to its RESUME event: what `domus migrate`'s total covers (the target's start included)."""
    qa, qb = os.path.join(root, "qa.qmp"), os.path.join(root, "qb.qmp")
    oa, ob = os.path.join(root, "qa.out"), os.path.join(root, "qb.out")
    mig = os.path.join(root, "qmig.sock")
    src = qemu_start(t, mem, scenario, qa, out=oa)
    dst = None if scope else qemu_start(t, mem, scenario, qb, extra=["-incoming", f"unix:{mig}"], out=ob)
    try:
        ca = Qmp(qa)
        cb = None if scope else Qmp(qb)
        wait("qemu guest ready", lambda: ready(read(oa), scenario))
        time.sleep(1)
        ca.cmd("migrate-set-parameters", **{"downtime-limit": 300, "max-bandwidth": 64 << 30})
        started = time.time()
        if scope:
            dst = qemu_start(t, mem, scenario, qb, extra=["-incoming", f"unix:{mig}"], out=ob)
            # Polled every ms: the migration starts as soon as the target answers.
            cb = Qmp(qb, poll=0.001)
        ca.cmd("migrate", uri=f"unix:{mig}")
        st = wait("qemu migration", lambda: (lambda r: r if r.get("status") in ("completed", "failed") else None)(
            ca.cmd("query-migrate")["return"]), 120)
        # Guest-visible downtime: the source's STOP to the target's RESUME (QEMU's own `downtime` field
        # ends on the source).
        resumed = cb.event_time("RESUME")
        gap = resumed - ca.event_time("STOP")
    finally:
        for q in (src, dst):
            if q is not None:
                q.kill()
                q.wait()
    for p in (qa, qb, mig):
        if os.path.exists(p):
            os.unlink(p)
    return (st.get("total-time", 0) / 1000, st.get("downtime", 0) / 1000, st.get("ram", {}).get("dirty-sync-count", 0),
            gap, resumed - started)


def qemu_retried(t, root, mem, scenario, scope=False):
    """`qemu_migrate`, run once more when it timed out waiting (seen once: the source's STOP event
    never came within 30 s); the failure is printed."""
    try:
        return qemu_migrate(t, root, mem, scenario, scope)
    except RuntimeError as e:
        print(f"  (QEMU migration run failed, repeated: {e})", flush=True)
        return qemu_migrate(t, root, mem, scenario, scope)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target-dir", default="target/release")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", choices=("all", "save", "migrate"), default="all",
                    help="save: only save/restore; migrate: only live migration")
    ap.add_argument("--sizes", default="256,1024", help="save/restore guest sizes, MiB (comma-separated)")
    args = ap.parse_args()
    t = os.path.abspath(args.target_dir)
    root = tempfile.mkdtemp(prefix="domus-bench-")
    have_qemu = shutil.which(QEMU[0]) is not None
    a, b = Host(t, root, "a"), Host(t, root, "b")
    try:
        for mem in ([int(m) for m in args.sizes.split(",")] if args.only != "migrate" else []):
            scen = f"mem-soak mib={mem // 2}"
            ours, theirs = [], []
            for _ in range(args.runs):
                ours.append(domus_save_restore(a, mem, scen, os.path.join(root, "d.img")))
                if have_qemu:
                    theirs.append(qemu_save_restore(t, root, mem, scen, os.path.join(root, "q.img")))
            for i, what in ((0, "save"), (1, "restore")):
                o = statistics.median(r[i] for r in ours)
                line = f"{what} {mem} MiB ({scen}), median of {args.runs}: domus {o*1000:.0f} ms"
                if theirs:
                    q = statistics.median(r[i] for r in theirs)
                    line += f", QEMU {q*1000:.0f} ms, ratio {o/q:.2f}x"
                print(line, flush=True)
            vmm = [r[3] for r in ours if r[3] is not None]
            dsd = [r[4] for r in ours if r[4] is not None]
            if vmm and dsd:
                print(f"  domus save breakdown (median): VMM writes its stream {statistics.median(vmm):.0f} ms, "
                      f"domusd request -> image synced and renamed {statistics.median(dsd):.0f} ms", flush=True)
            print(f"  image size: domus {ours[0][2] >> 20} MiB" +
                  (f", QEMU {theirs[0][2] >> 20} MiB" if theirs else ""), flush=True)
        for scen in (("idle", "mem-soak mib=128") if args.only != "save" else ()):
            ours, theirs, scoped = [], [], []
            for _ in range(args.runs):
                ours.append(domus_migrate(a, b, 256, scen, root))
                if have_qemu:
                    theirs.append(qemu_retried(t, root, 256, scen))
                    scoped.append(qemu_retried(t, root, 256, scen, scope=True))
            o_tot, o_down = statistics.median(r[0] for r in ours), statistics.median(r[1] for r in ours)
            o_gap = statistics.median(r[4] for r in ours)
            line = (f"migrate 256 MiB ({scen}), median of {args.runs}: domus total {o_tot*1000:.0f} ms, "
                    f"downtime {o_down*1000:.0f} ms to the target's confirmation, paused->target running "
                    f"{o_gap*1000:.1f} ms (rounds {[r[2] for r in ours]}, {ours[0][3]})")
            if all(r[5] is not None for r in ours):
                line += (f", paused->target vCPU thread running "
                         f"{statistics.median(r[5] for r in ours)*1000:.1f} ms")
            if theirs:
                q_tot, q_down = statistics.median(r[0] for r in theirs), statistics.median(r[1] for r in theirs)
                q_gap = statistics.median(r[3] for r in theirs)
                line += (f"; QEMU total {q_tot*1000:.0f} ms, downtime {q_down*1000:.0f} ms (its own field), "
                         f"STOP->target RESUME {q_gap*1000:.1f} ms (syncs {[r[2] for r in theirs]}); ratios total "
                         f"{o_tot/q_tot:.2f}x, guest-visible downtime {o_gap/max(q_gap, 1e-4):.2f}x")
            if scoped:
                # Context, not the goal's figure: QEMU from starting the target with -incoming to the
                # target running, the scope of `domus migrate`'s total (which starts the target).
                q_scope = statistics.median(r[4] for r in scoped)
                line += (f"; equal scope (context): QEMU target start -> target running {q_scope*1000:.0f} ms "
                         f"(total-time in those runs {statistics.median(r[0] for r in scoped)*1000:.0f} ms), "
                         f"domus total / that {o_tot/q_scope:.2f}x")
            print(line, flush=True)
    finally:
        for h in (a, b):
            for d in json.loads(h.domus("list", "-l", check=False).stdout or "[]"):
                h.domus("destroy", d.get("name", ""), check=False)
            h.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
