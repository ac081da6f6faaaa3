#!/usr/bin/env python3
"""Boot every probe scenario under QEMU (KVM) and check its PROBE lines and how QEMU ended.

usage: guests/probe/tools/check-qemu.py [PROBE_ELF] [-k SCENARIO ...]
Default ELF: $CARGO_TARGET_DIR or target/debug/domus-probe. Needs qemu-system-x86_64 and /dev/kvm.
Each case: machine (microvm or pc), extra QEMU args, command line, expected lines (regexes, in
order), and the expected end (QMP event: SHUTDOWN with reason guest-shutdown / guest-reset /
guest-panic, or a host-driven power button). Prints one line per case and the boot time to the
first console byte; exits 1 if any case failed.
"""
import json, os, re, socket, subprocess, sys, tempfile, threading, time

QEMU = "qemu-system-x86_64"
MACHINES = {
    "microvm": ["-M", "microvm", "-accel", "kvm", "-cpu", "qemu64", "-m", "64"],
    "pc": ["-M", "pc", "-accel", "kvm", "-cpu", "qemu64", "-m", "64", "-vga", "none", "-nic", "none"],
}
CASES = [
    # name, machine, extra args, cmdline, expected line regexes, expected end, stdin bytes
    ("hello", "microvm", [], "probe=hello", [r"PROBE boot", r"PROBE hello vcpus=1 mem_mib=64"], "guest-shutdown", None),
    ("hello-pc-smp", "pc", ["-smp", "2"], "probe=hello", [r"PROBE hello vcpus=2 mem_mib=6[34]"], "guest-shutdown", None),
    ("poweroff", "microvm", [], "probe=poweroff", [r"PROBE poweroff s5=\d via=sleep-control"], "guest-shutdown", None),
    ("poweroff-pc", "pc", [], "probe=poweroff", [r"PROBE poweroff s5=\d via=pm1"], "guest-shutdown", None),
    ("loop", "microvm", [], "probe=loop iters=100000000", [r"PROBE loop iters=100000000 cycles=\d+"], "guest-shutdown", None),
    ("triple-fault", "microvm", [], "probe=triple-fault", [r"PROBE triple-fault"], "guest-reset", None),
    ("unknown", "microvm", [], "probe=nosuch", [r"PROBE error unknown-scenario name=nosuch"], "guest-shutdown", None),
    ("reboot-pc", "pc", [], "probe=reboot", [r"PROBE reboot"], "guest-reset", None),
    ("panic-pc", "pc", ["-device", "pvpanic"], "probe=panic", [r"PROBE panic pvpanic=present"], "guest-panic", None),
    ("smp-pc", "pc", ["-smp", "2"], "probe=smp", [r"PROBE cpu 0 up", r"PROBE cpu 1 up", r"PROBE smp vcpus=2 up=2"], "guest-shutdown", None),
    ("smp4-pc", "pc", ["-smp", "4"], "probe=smp", [r"PROBE smp vcpus=4 up=4"], "guest-shutdown", None),
    ("idle", "microvm", [], "probe=idle", [r"PROBE idle ready", r"PROBE idle power-button"], "power-button", None),
    ("idle-pc", "pc", [], "probe=idle", [r"PROBE idle ready", r"PROBE idle power-button"], "power-button", None),
    ("echo", "microvm", [], "probe=echo", [r"PROBE echo ready", r"hello-echo"], "kill", b"hello-echo\n"),
]


class Qmp:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        for _ in range(200):
            try:
                self.sock.connect(path)
                break
            except OSError:
                time.sleep(0.01)
        self.file = self.sock.makefile("rwb")
        self.events = []
        self.file.readline()  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name):
        self.file.write(json.dumps({"execute": name}).encode() + b"\n")
        self.file.flush()
        while True:
            msg = json.loads(self.file.readline())
            if "event" in msg:
                self.events.append(msg)
            elif "return" in msg or "error" in msg:
                return msg

    def wait_events(self, timeout):
        self.sock.settimeout(timeout)
        try:
            while True:
                line = self.file.readline()
                if not line:
                    return
                msg = json.loads(line)
                if "event" in msg:
                    self.events.append(msg)
        except (OSError, ValueError):
            return


def run_case(elf, case):
    name, machine, extra, cmdline, expect, end, stdin_bytes = case
    tmp = tempfile.mkdtemp(prefix="probe-qemu-")
    qmp_path = os.path.join(tmp, "qmp.sock")
    argv = [QEMU, *MACHINES[machine], *extra, "-display", "none", "-serial", "stdio", "-no-reboot",
            "-qmp", f"unix:{qmp_path},server=on,wait=off", "-action", "panic=shutdown",
            "-kernel", elf, "-append", cmdline]
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = bytearray()
    first_byte = [None]
    lock = threading.Lock()

    def reader():
        while True:
            b = proc.stdout.read1(4096)
            if not b:
                return
            with lock:
                if first_byte[0] is None:
                    first_byte[0] = time.monotonic() - t0
                out.extend(b)

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    qmp = Qmp(qmp_path)

    def wait_for(pattern, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with lock:
                if re.search(pattern.encode(), bytes(out)):
                    return True
            time.sleep(0.01)
        return False

    ok, why = True, ""
    if end == "power-button":
        if wait_for(r"PROBE idle ready", 10):
            time.sleep(0.3)
            qmp.cmd("system_powerdown")
        else:
            ok, why = False, "no ready line"
    if stdin_bytes is not None:
        wait_for(r"PROBE echo ready", 10)
        proc.stdin.write(stdin_bytes)
        proc.stdin.flush()
        wait_for(re.escape(stdin_bytes.decode().strip()), 5)
    if end == "kill":
        time.sleep(0.3)
        proc.kill()
    qmp.wait_events(15)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        ok, why = False, "timeout"
    th.join(2)
    text = bytes(out).decode(errors="replace")
    pos = 0
    if "PROBE error" in text and not any("error" in p for p in expect):
        ok, why = False, "error line"
    for pattern in expect:
        m = re.compile(pattern).search(text, pos)
        if not m:
            ok, why = False, f"missing {pattern!r}"
            break
        pos = m.end()
    reasons = [e.get("data", {}).get("reason") for e in qmp.events if e["event"] == "SHUTDOWN"]
    if end == "power-button":
        want = "guest-shutdown"
    elif end == "kill":
        want = None
    else:
        want = end
    if want and want not in reasons:
        ok, why = False, why or f"end {reasons} != {want}"
    fb = f"{first_byte[0]:.3f}s" if first_byte[0] is not None else "-"
    print(f"{'PASS' if ok else 'FAIL'} {name:14} first-byte={fb} total={time.monotonic() - t0:.3f}s "
          f"end={reasons or '-'} {why}")
    if not ok:
        print("   output: " + text.replace("\n", "\n           "))
    return ok


def main():
    args = sys.argv[1:]
    only = []
    if "-k" in args:
        i = args.index("-k")
        only = args[i + 1:]
        args = args[:i]
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    elf = args[0] if args else os.path.join(target, "debug", "domus-probe")
    results = [run_case(elf, c) for c in CASES if not only or c[0] in only]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
