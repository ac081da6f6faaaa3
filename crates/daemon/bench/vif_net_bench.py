#!/usr/bin/env python3
"""UDP throughput through domusd's vifs: guest <-> guest through a bridge, and guest -> NAT -> remote.

Usage (as root): vif_net_bench.py BIN_DIR [-n ROUNDS] [--mb MB]
  BIN_DIR holds domusd, domus, domus-vmm and domus-probe (a release build).

Everything runs in network namespaces made here and deleted at the end; domusd runs inside the first
one (`ip netns exec`) on private DOMUS_* directories, as the networking tests do.

bridge  namespace `host` with `bridge0` (10.0.9.1/24, an uplink veth port as a real host's bridge has).
        domus: two domains with `vif = ['bridge=bridge0']`, probe=net-rx and probe=net-tx (MB of
        1472-byte UDP payloads); rate = bytes net-rx received / its TSC span.
        qemu:  the same probe ELF in two QEMU microvm guests (virtio-net-device, tap, vhost=off)
        whose TAPs are ports of the same bridge0.
        host:  the same stream between two namespaces whose veths are ports of bridge0 (a Python
        sender, 1472-byte sends and UDP_SEGMENT sends, to a Python receiver with UDP_GRO).
nat     namespace `host` with an uplink veth (10.0.7.1/24) to namespace `remote` (10.0.7.2/24).
        domus: a domain with `vif = ['script=vif-nat,ip=192.168.122.50']` (domusd's NAT network:
        domusnat0, dnsmasq, nftables masquerade) runs probe=net-tx to a receiver in `remote`;
        rate = bytes received there / the receive span.
        qemu:  a QEMU guest whose TAP is a port of domusnat0 (192.168.122.60; an idle domus domain
        with a NAT vif keeps the NAT network up), same stream, same receiver.
        host:  the Python sender in `host` itself to the same receiver (the uplink alone).
Rounds are interleaved (domus, qemu, host, ...); medians and each round's figure are printed.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

RECV = r'''
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.setsockopt(socket.IPPROTO_UDP, 104, 1)  # UDP_GRO
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
want = int(sys.argv[3]); got = 0; first = last = None
s.settimeout(30)
buf = bytearray(65536)
try:
    while got < want:
        n = s.recv_into(buf)
        last = time.monotonic()
        if first is None:
            first = last; s.settimeout(2)
        got += n
except socket.timeout:
    pass
print(got, (last - first) if first else 0, flush=True)
'''
SEND = r'''
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
dst = (sys.argv[1], int(sys.argv[2])); total = int(sys.argv[3])
p = bytes(1472); sent = 0
if sys.argv[4] == "gso":
    s.setsockopt(socket.IPPROTO_UDP, 103, 1472); p = bytes(44 * 1472)  # UDP_SEGMENT
t0 = time.monotonic()
while sent < total and time.monotonic() - t0 < 30:
    try:
        s.sendto(p, dst); sent += len(p)
    except OSError:
        pass
print(sent, flush=True)
'''


def sh(*a, check=True):
    return subprocess.run(a, check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class Ns:
    def __init__(self, tag):
        self.name = f"domus-vnb-{tag}-{os.getpid()}"
        sh("ip", "netns", "add", self.name)
        self.sh("ip link set lo up")

    def sh(self, script):
        sh("ip", "netns", "exec", self.name, "sh", "-c", script)

    def popen(self, argv, env=None, out=subprocess.PIPE):
        return subprocess.Popen(["ip", "netns", "exec", self.name, *argv], env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.DEVNULL,
                                text=True)

    def close(self):
        sh("ip", "netns", "del", self.name, check=False)


def finish(p, timeout=60):
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


class Domus:
    """domusd in namespace `ns` on private directories."""

    def __init__(self, bins, ns, tmp):
        self.bins, self.tmp = bins, tmp
        self.env = dict(os.environ)
        for k in ("run", "state", "log", "cfg"):
            os.makedirs(os.path.join(tmp, k), exist_ok=True)
        self.env.update(DOMUS_RUNTIME_DIR=f"{tmp}/run", DOMUS_STATE_DIR=f"{tmp}/state",
                        DOMUS_LOG_DIR=f"{tmp}/log", DOMUS_CONFIG_DIR=f"{tmp}/cfg")
        self.env.pop("DOMUS_VMM", None)
        self.log = open(f"{tmp}/domusd.log", "w")
        self.proc = ns.popen([f"{bins}/domusd", "--foreground"], env=self.env, out=self.log)
        for _ in range(250):
            if self.domus("list", check=False).returncode == 0:
                return
            time.sleep(0.02)
        raise SystemExit("domusd did not answer")

    def domus(self, *args, check=True):
        return subprocess.run([f"{self.bins}/domus", *args], env=self.env, check=check,
                              capture_output=True, text=True)

    def create(self, name, scenario, vif):
        path = f"{self.tmp}/cfg/{name}.cfg"
        with open(path, "w") as f:
            f.write(f'name = "{name}"\ntype = "pvh"\nkernel = "{self.bins}/domus-probe"\n'
                    f'extra = "probe={scenario}"\nmemory = 64\nvcpus = 1\nvif = [\'{vif}\']\n')
        self.domus("create", "-q", path)

    def console(self, name):
        try:
            with open(f"{self.tmp}/log/console/guest-{name}.log") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait(self, name, pattern, limit=120):
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            m = re.search(pattern, self.console(name))
            if m:
                return m
            time.sleep(0.05)
        raise SystemExit(f"no {pattern!r} on {name}'s console: {self.console(name)[-500:]!r}")

    def destroy(self, name):
        self.domus("destroy", name, check=False)

    def stop(self):
        self.proc.terminate()
        finish(self.proc)


def qemu(ns, elf, tap, mac, args):
    return ns.popen(["qemu-system-x86_64", "-M", "microvm", "-accel", "kvm", "-cpu", "qemu64", "-m", "64",
                     "-nographic", "-nodefaults", "-serial", "stdio", "-no-reboot", "-kernel", elf,
                     "-append", args, "-global", "virtio-mmio.force-legacy=false",
                     "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no,vhost=off",
                     "-device", f"virtio-net-device,netdev=n0,mac={mac}"])


def read_until(p, pattern, limit=120):
    t0 = time.monotonic()
    seen = []
    while time.monotonic() - t0 < limit:
        line = p.stdout.readline()
        if not line:
            break
        seen.append(line.strip())
        m = re.search(pattern, line)
        if m:
            return m
    p.kill()
    raise SystemExit(f"no {pattern!r}: {seen[-5:]}")


RX_DONE = r"PROBE net-rx bytes=(\d+) frames=\d+ cycles=(\d+) tsc_hz=(\d+)"


def rate_from(m, hz):
    cycles = int(m.group(2))
    return int(m.group(1)) / (cycles / hz) / 1e6 if cycles else 0.0


def receiver(ns, addr, want):
    r = ns.popen([sys.executable, "-c", RECV, addr, "5001", str(want)])
    r.stdout.readline()
    return r


def received_rate(r):
    got, span = r.stdout.readline().split()
    finish(r)
    return int(got) / float(span) / 1e6 if float(span) > 0 else 0.0


class Bench:
    def __init__(self, a):
        self.a = a
        self.want = a.mb * 10**6
        self.elf = f"{a.bins}/domus-probe"
        self.hz = None
        self.seq = 0

    def name(self, tag):
        self.seq += 1
        return f"{tag}{self.seq}"

    # --- guest <-> guest through bridge0 ---
    def bridge_domus(self, d):
        rx, tx = self.name("rx"), self.name("tx")
        d.create(rx, f"net-rx ip=10.0.9.10/24 port=5001 bytes={self.want}", "bridge=bridge0")
        d.wait(rx, r"PROBE net-rx ready")
        d.create(tx, f"net-tx ip=10.0.9.11/24 target=10.0.9.10:5001 bytes={self.want}", "bridge=bridge0")
        m = d.wait(rx, RX_DONE)
        self.hz = self.hz or int(m.group(3))
        d.destroy(tx)
        d.destroy(rx)
        return rate_from(m, self.hz)

    def bridge_qemu(self, host):
        for t in ("qa", "qb"):
            host.sh(f"ip tuntap add dev {t} mode tap && ip link set {t} master bridge0 && ip link set {t} up")
        try:
            rx = qemu(host, self.elf, "qa", "00:16:3e:0a:00:0a",
                      f"probe=net-rx ip=10.0.9.20/24 port=5001 bytes={self.want}")
            read_until(rx, r"PROBE net-rx ready")
            tx = qemu(host, self.elf, "qb", "00:16:3e:0a:00:0b",
                      f"probe=net-tx ip=10.0.9.21/24 target=10.0.9.20:5001 bytes={self.want}")
            m = read_until(rx, RX_DONE)
            finish(tx)
            finish(rx)
            return rate_from(m, self.hz)
        finally:
            host.sh("ip link del qa; ip link del qb")

    def bridge_host(self, host, mode):
        a, b = Ns("ba"), Ns("bb")
        try:
            for ns, port, addr in ((a, "pa", "10.0.9.30/24"), (b, "pb", "10.0.9.31/24")):
                host.sh(f"ip link add {port}0 type veth peer name {port}1 && ip link set {port}1 netns {ns.name} "
                        f"&& ip link set {port}0 master bridge0 && ip link set {port}0 up")
                ns.sh(f"ip addr add {addr} dev {port}1 && ip link set {port}1 up")
            r = receiver(b, "10.0.9.31", self.want)
            finish(a.popen([sys.executable, "-c", SEND, "10.0.9.31", "5001", str(self.want), mode]))
            return received_rate(r)
        finally:
            host.sh("ip link del pa0; ip link del pb0")
            a.close()
            b.close()

    # --- guest -> NAT -> remote ---
    def nat_domus(self, d, remote):
        tx = self.name("nt")
        r = receiver(remote, "10.0.7.2", self.want)
        d.create(tx, f"net-tx ip=192.168.122.50/24 gw=192.168.122.1 target=10.0.7.2:5001 bytes={self.want}",
                 "script=vif-nat,ip=192.168.122.50")
        rate = received_rate(r)
        d.wait(tx, r"PROBE net-tx bytes=")
        d.destroy(tx)
        return rate

    def nat_qemu(self, d, host, remote):
        anchor = self.name("anchor")
        d.create(anchor, "idle", "script=vif-nat,ip=192.168.122.51")
        host.sh("ip tuntap add dev qn mode tap && ip link set qn master domusnat0 && ip link set qn up")
        try:
            r = receiver(remote, "10.0.7.2", self.want)
            g = qemu(host, self.elf, "qn", "00:16:3e:0a:01:3c",
                     f"probe=net-tx ip=192.168.122.60/24 gw=192.168.122.1 target=10.0.7.2:5001 bytes={self.want}")
            rate = received_rate(r)
            finish(g)
            return rate
        finally:
            host.sh("ip link del qn")
            d.destroy(anchor)

    def nat_host(self, host, remote, mode):
        r = receiver(remote, "10.0.7.2", self.want)
        finish(host.popen([sys.executable, "-c", SEND, "10.0.7.2", "5001", str(self.want), mode]))
        return received_rate(r)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bins")
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--mb", type=int, default=200)
    a = ap.parse_args()
    a.bins = os.path.abspath(a.bins)
    tmp = tempfile.mkdtemp(prefix="domus-vnb-")
    host = Ns("host")
    remote = Ns("remote")
    d = None
    try:
        host.sh("ip link add bridge0 type bridge && ip link add up0 address 02:00:00:00:00:01 type veth "
                "peer name up1 && ip link set up0 master bridge0 && ip link set up0 up && ip link set up1 up "
                "&& ip addr add 10.0.9.1/24 dev bridge0 && ip link set bridge0 up")
        host.sh(f"ip link add wan0 type veth peer name wan1 && ip link set wan1 netns {remote.name} "
                "&& ip addr add 10.0.7.1/24 dev wan0 && ip link set wan0 up")
        remote.sh("ip addr add 10.0.7.2/24 dev wan1 && ip link set wan1 up")
        d = Domus(a.bins, host, tmp)
        b = Bench(a)
        res = {k: [] for k in ("bridge domus", "bridge qemu", "bridge host", "bridge host-gso",
                               "nat domus", "nat qemu", "nat host", "nat host-gso")}
        for _ in range(a.n):
            res["bridge domus"].append(b.bridge_domus(d))
            res["bridge qemu"].append(b.bridge_qemu(host))
            res["bridge host"].append(b.bridge_host(host, "plain"))
            res["bridge host-gso"].append(b.bridge_host(host, "gso"))
            res["nat domus"].append(b.nat_domus(d, remote))
            res["nat qemu"].append(b.nat_qemu(d, host, remote))
            res["nat host"].append(b.nat_host(host, remote, "plain"))
            res["nat host-gso"].append(b.nat_host(host, remote, "gso"))
        print(f"tsc_hz={b.hz}  rounds={a.n}  stream={a.mb} MB of 1472-byte UDP payloads")
        for k, v in res.items():
            print(f"{k:<16} median {med(v):8.1f} MB/s   rounds " + " ".join(f"{x:.0f}" for x in v))
        for topo in ("bridge", "nat"):
            dq = med(res[f"{topo} domus"]) / med(res[f"{topo} qemu"])
            print(f"{topo}: domus/qemu {dq:.2f}")
    finally:
        if d:
            for line in d.domus("list", check=False).stdout.splitlines()[1:]:
                name = line.split()[0] if line.split() else ""
                if name and name != "Domain-0":
                    d.destroy(name)
            d.stop()
        host.close()
        remote.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
