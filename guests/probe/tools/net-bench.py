#!/usr/bin/env python3
"""virtio-net throughput and latency: domus-vmm vs QEMU microvm (virtio-net-device, tap, vhost=off) with the
same probe ELF and the same namespace/TAP set-up, and the host's own ceiling (the same UDP stream over a veth
pair between two namespaces).

usage: guests/probe/tools/net-bench.py [-n ROUNDS] [--mb MB] [--cases LIST] [--coalesce-off] [--pin VMM_CPU,HOST_CPU] [--cap PERCENT]
                                      [--vmm PATH] [--elf PATH]   (as root)

Cases (UDP, 1472-byte payloads, MTU 1500; both VMMs negotiate checksum offload with the probe):
  g->h   probe=net-tx to a host socket in the namespace; rate = bytes the host received / its receive span
  h->g   a host sender to probe=net-rx; rate = bytes the guest received / its TSC span
  h->g-mmsg  the same MTU-sized stream from a C sender with sendmmsg (64 datagrams a call)
  h->g-pkt   the same frames (Ethernet/IPv4/UDP, 1472-byte payloads) from a C AF_PACKET sender with
             PACKET_QDISC_BYPASS straight into the TAP: the cheapest host sender, so the VMM's path shows
  h->g-gso  the same with UDP_SEGMENT sends (44 datagrams a send, cut by the kernel, or whole by a
         device that negotiated UDP segmentation offload with the guest)
  g<->g  probe=net-tx in one guest to probe=net-rx in another, TAPs on one bridge (same VMM kind both)
  rtt    probe=net-ping to the host, 1000 echoes: average, minimum and median round trip
The host receiver sets UDP_GRO, so a segmentation offload frame from a guest arrives in one recv.
Every namespace is created here and deleted at the end. TSC spans are converted with the TSC rate the
domus-vmm run calibrated against the ACPI PM timer (QEMU microvm has none; its guest rate is only a guess).
Prints medians over ROUNDS (runs interleaved domus, qemu, ...) and ratios. With --coalesce-off each round
also runs domus-vmm with DOMUS_NET_RX_COALESCE=0 (between the two), printed as "CASE off" rows.
With --pin VMM_CPU,HOST_CPU every VMM process (all its threads: vCPU, device threads and the kernel work they
do) runs on VMM_CPU only and every host-side sender/receiver on HOST_CPU only: each VMM gets the same one-CPU
budget and the host's sender a CPU of its own, so the rate shows what a VMM does with a CPU rather than what
the sender can make when the two share the machine's CPUs.
With --cap PERCENT every VMM process runs in a cgroup (v1 `cpu` controller, created here and removed at the
end) whose CFS quota is PERCENT % of one CPU per period of 1 ms (or the shortest longer one whose quota is the kernel's 1 ms minimum; short, so that the TAP's 1000-frame queue outlasts a throttled stretch and the rate shows CPU per byte, not queue depth), the budget xl's `cap=` sets: with both VMMs held
to the same CPU budget and the sender unconstrained, the rate shows the CPU each VMM spends per byte.
"""
import argparse, os, re, statistics, subprocess, sys, tempfile, time

RECV = r'''
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
# UDP_GRO: a segmentation offload frame arrives whole (one recv) instead of cut into datagrams.
s.setsockopt(socket.IPPROTO_UDP, 104, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
want = int(sys.argv[3]); got = 0; first = last = None
s.settimeout(20)
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
dst = (sys.argv[1], int(sys.argv[2])); total = int(sys.argv[3]); secs = float(sys.argv[4])
p = bytes(1472); sent = 0; t0 = time.monotonic()
if len(sys.argv) > 5 and sys.argv[5] == "gso":
    # UDP_SEGMENT: one send of 44 datagrams, cut by the kernel (or by the device it reaches).
    s.setsockopt(socket.IPPROTO_UDP, 103, 1472); p = bytes(44 * 1472)
while sent < total and time.monotonic() - t0 < secs:
    try:
        s.sendto(p, dst); sent += len(p)
    except OSError:
        pass
print(sent, flush=True)
'''

# The same MTU-sized stream from C with sendmmsg (64 datagrams a call): a Python sender needs a CPU for
# ~200 MB/s, which on two CPUs leaves the receiving VMM too little to show its own limit.
SEND_MMSG_C = r'''
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
int main(int argc, char **argv) {
    int s = socket(AF_INET, SOCK_DGRAM, 0), buf = 8 << 20;
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
    inet_pton(AF_INET, argv[1], &dst.sin_addr);
    long long total = atoll(argv[3]), sent = 0; double secs = atof(argv[4]);
    static char p[1472]; struct iovec iov = { p, sizeof p }; struct mmsghdr m[64];
    for (int i = 0; i < 64; i++)
        m[i].msg_hdr = (struct msghdr){ .msg_name = &dst, .msg_namelen = sizeof dst, .msg_iov = &iov, .msg_iovlen = 1 };
    struct timespec t0, t; clock_gettime(CLOCK_MONOTONIC, &t0);
    while (sent < total) {
        int n = sendmmsg(s, m, 64, 0);
        if (n > 0) sent += (long long)n * sizeof p;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec + (t.tv_nsec - t0.tv_nsec) / 1e9 > secs) break;
    }
    printf("%lld\n", sent);
    return 0;
}
'''

# The same MTU-sized stream as whole Ethernet frames through an AF_PACKET socket with
# PACKET_QDISC_BYPASS (64 frames a sendmmsg): no UDP/IP/routing work per datagram, so the sender
# costs far less CPU than either UDP sender and the receiving side (TAP -> VMM -> guest) shows its
# own limit. argv: ifname dst-mac src-ip dst-ip port total-bytes seconds.
SEND_PACKET_C = r'''
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
static unsigned short csum(const void *b, int n) {
    const unsigned short *w = b; unsigned long s = 0;
    for (; n > 1; n -= 2) s += *w++;
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return ~s;
}
int main(int argc, char **argv) {
    int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP)), one = 1, buf = 8 << 20;
    if (s < 0) { perror("socket"); return 1; }
    setsockopt(s, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP),
                              .sll_ifindex = if_nametoindex(argv[1]), .sll_halen = 6 };
    static unsigned char f[14 + 20 + 8 + 1472];
    sscanf(argv[2], "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &f[0], &f[1], &f[2], &f[3], &f[4], &f[5]);
    memcpy(to.sll_addr, f, 6);
    f[6] = 0x02; f[12] = 0x08; f[13] = 0x00;
    struct iphdr *ip = (struct iphdr *)(f + 14);
    ip->version = 4; ip->ihl = 5; ip->ttl = 64; ip->protocol = IPPROTO_UDP;
    ip->tot_len = htons(20 + 8 + 1472);
    inet_pton(AF_INET, argv[3], &ip->saddr); inet_pton(AF_INET, argv[4], &ip->daddr);
    ip->check = csum(ip, 20);
    struct udphdr *u = (struct udphdr *)(f + 34);
    u->source = htons(40000); u->dest = htons(atoi(argv[5])); u->len = htons(8 + 1472); u->check = 0;
    long long total = atoll(argv[6]), sent = 0; double secs = atof(argv[7]);
    struct iovec iov = { f, sizeof f }; struct mmsghdr m[64];
    for (int i = 0; i < 64; i++)
        m[i].msg_hdr = (struct msghdr){ .msg_name = &to, .msg_namelen = sizeof to, .msg_iov = &iov, .msg_iovlen = 1 };
    struct timespec t0, t; clock_gettime(CLOCK_MONOTONIC, &t0);
    while (sent < total) {
        int n = sendmmsg(s, m, 64, 0);
        if (n > 0) sent += (long long)n * 1472;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec + (t.tv_nsec - t0.tv_nsec) / 1e9 > secs) break;
    }
    printf("%lld\n", sent);
    return 0;
}
'''

def c_tool(tmp, name, source):
    """Compiles `source` once into tmp/name; returns the executable's path."""
    exe = os.path.join(tmp, name)
    if not os.path.exists(exe):
        src = exe + ".c"
        with open(src, "w") as f:
            f.write(source)
        sh("cc", "-O2", "-o", exe, src)
    return exe

def packet_sender(tmp):
    return c_tool(tmp, "send-packet", SEND_PACKET_C)

def mmsg_sender(tmp):
    return c_tool(tmp, "send-mmsg", SEND_MMSG_C)

def sh(*a, check=True):
    return subprocess.run(a, check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

# taskset prefixes set by --pin; OUTER["vmm"] is the --cap wrapper, which runs before `ip netns exec`
# (that remounts /sys, so the cgroup file system is not there inside it).
PIN = {"vmm": [], "host": []}
OUTER = {"vmm": [], "host": []}
CAP_ROOT = "/sys/fs/cgroup/cpu"

def cap_group(percent):
    """Creates the --cap cgroup; returns its path and the argv prefix that starts a command inside it."""
    path = os.path.join(CAP_ROOT, f"domus-netbench-{os.getpid()}")
    # The shortest period whose quota is still the kernel's minimum of 1 ms.
    period = max(1000, round(100000 / percent))
    os.mkdir(path)
    try:
        with open(os.path.join(path, "cpu.cfs_period_us"), "w") as f:
            f.write(str(period))
        with open(os.path.join(path, "cpu.cfs_quota_us"), "w") as f:
            f.write(str(round(period * percent / 100)))
    except OSError:
        os.rmdir(path)
        raise
    return path, ["sh", "-c", f'echo $$ > {path}/cgroup.procs && exec "$@"', "cap"]

def remove_group(path):
    for _ in range(50):  # the last VMM may still be exiting
        try:
            os.rmdir(path); return
        except OSError:
            time.sleep(0.1)
    print(f"warning: could not remove {path}", file=sys.stderr)

class Ns:
    n = 0
    def __init__(self, tag):
        Ns.n += 1
        self.name = f"domus-nb-{tag}-{os.getpid()}-{Ns.n}"
        sh("ip", "netns", "add", self.name)
        self.ip("link", "set", "lo", "up")
    def ip(self, *a):
        sh("ip", "-n", self.name, *a)
    def tap(self, name, addr=None, master=None):
        self.ip("tuntap", "add", "dev", name, "mode", "tap")
        if addr: self.ip("addr", "add", addr, "dev", name)
        if master: self.ip("link", "set", name, "master", master)
        self.ip("link", "set", name, "up")
    def popen(self, argv, side="host", **kw):
        return subprocess.Popen([*OUTER[side], "ip", "netns", "exec", self.name, *PIN[side], *argv], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, **kw)
    def close(self):
        sh("ip", "netns", "del", self.name, check=False)

def guest(ns, kind, a, tap, mac, args, tmp):
    if kind in ("domus", "domus-off"):
        cfg = os.path.join(tmp, f"{tap}.cfg")
        with open(cfg, "w") as f:
            f.write(f'name = "nb-{tap}"\nkernel = "{a.elf}"\nmemory = 64\nvcpus = 1\nrng = 0\n'
                    f"vif = ['mac={mac},vifname={tap}']\nextra = \"{args}\"\n")
        # domus-off: the same VMM with receive-side UDP coalescing switched off.
        env = dict(os.environ, DOMUS_NET_RX_COALESCE="0") if kind == "domus-off" else None
        p = ns.popen([a.vmm, "--config", cfg], side="vmm", env=env); p.kind = kind
        return p
    p = ns.popen(["qemu-system-x86_64", "-M", "microvm", "-accel", "kvm", "-cpu", "qemu64", "-m", "64",
                     "-nographic", "-nodefaults", "-serial", "stdio", "-no-reboot", "-kernel", a.elf,
                     "-append", args, "-global", "virtio-mmio.force-legacy=false",
                     "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no,vhost=off",
                     "-device", f"virtio-net-device,netdev=n0,mac={mac}"], side="vmm")
    p.kind = kind
    return p

FEATURES = {}

def read_until(p, pat, limit=120):
    t0 = time.monotonic(); seen = []
    while time.monotonic() - t0 < limit:
        line = p.stdout.readline()
        if not line:
            break
        seen.append(line.strip())
        f = re.search(r"PROBE net link .*features=(0x[0-9a-f]+)", line)
        if f:
            FEATURES[getattr(p, "kind", "?")] = f.group(1)
        m = re.search(pat, line)
        if m:
            return m
    p.kill()
    raise SystemExit(f"no {pat!r}: {seen}")

def finish(p):
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill(); p.wait()

def g2h(kind, a, tmp, hz):
    ns = Ns("g2h")
    try:
        ns.tap("tap0", "10.9.0.1/24")
        r = ns.popen([sys.executable, "-c", RECV, "10.9.0.1", "5001", str(a.mb * 10**6)])
        r.stdout.readline()
        g = guest(ns, kind, a, "tap0", "00:16:3e:09:00:02",
                  f"probe=net-tx ip=10.9.0.2/24 target=10.9.0.1:5001 bytes={a.mb * 10**6}", tmp)
        read_until(g, r"PROBE net-tx ")
        got, span = r.stdout.readline().split()
        finish(g); finish(r)
        return int(got) / float(span) / 1e6 if float(span) > 0 else 0.0
    finally:
        ns.close()

def h2g_gso(kind, a, tmp, hz):
    return h2g(kind, a, tmp, hz, "gso")

def h2g_mmsg(kind, a, tmp, hz):
    return h2g(kind, a, tmp, hz, "mmsg")

def h2g_packet(kind, a, tmp, hz):
    return h2g(kind, a, tmp, hz, "packet")

def h2g(kind, a, tmp, hz, mode="plain"):
    ns = Ns("h2g")
    try:
        ns.tap("tap0", "10.9.1.1/24")
        g = guest(ns, kind, a, "tap0", "00:16:3e:09:01:02",
                  f"probe=net-rx ip=10.9.1.2/24 port=5001 bytes={a.mb * 10**6}", tmp)
        read_until(g, r"PROBE net-rx ready")
        if mode == "mmsg":
            s = ns.popen([mmsg_sender(tmp), "10.9.1.2", "5001", str(a.mb * 2 * 10**6), "30"])
        elif mode == "packet":
            s = ns.popen([packet_sender(tmp), "tap0", "00:16:3e:09:01:02", "10.9.1.1", "10.9.1.2", "5001",
                          str(a.mb * 2 * 10**6), "30"])
        else:
            s = ns.popen([sys.executable, "-c", SEND, "10.9.1.2", "5001", str(a.mb * 2 * 10**6), "30", mode])
        m = read_until(g, r"PROBE net-rx bytes=(\d+) frames=\d+ cycles=(\d+)")
        s.kill(); finish(s); finish(g)
        return int(m.group(1)) / (int(m.group(2)) / hz) / 1e6 if int(m.group(2)) else 0.0
    finally:
        ns.close()

def g2g(kind, a, tmp, hz):
    ns = Ns("g2g")
    try:
        ns.ip("link", "add", "br0", "type", "bridge"); ns.ip("link", "set", "br0", "up")
        ns.tap("tapa", master="br0"); ns.tap("tapb", master="br0")
        rx = guest(ns, kind, a, "tapa", "00:16:3e:09:02:0a", f"probe=net-rx ip=10.9.2.10/24 port=5001 bytes={a.mb * 10**6}", tmp)
        read_until(rx, r"PROBE net-rx ready")
        tx = guest(ns, kind, a, "tapb", "00:16:3e:09:02:0b",
                   f"probe=net-tx ip=10.9.2.11/24 target=10.9.2.10:5001 bytes={a.mb * 10**6}", tmp)
        m = read_until(rx, r"PROBE net-rx bytes=(\d+) frames=\d+ cycles=(\d+)")
        finish(tx); finish(rx)
        return int(m.group(1)) / (int(m.group(2)) / hz) / 1e6 if int(m.group(2)) else 0.0
    finally:
        ns.close()

def rtt(kind, a, tmp, hz):
    ns = Ns("rtt")
    try:
        ns.tap("tap0", "10.9.3.1/24")
        g = guest(ns, kind, a, "tap0", "00:16:3e:09:03:02", "probe=net-ping ip=10.9.3.2/24 target=10.9.3.1 count=1000", tmp)
        link = read_until(g, r"PROBE net link .*tsc_hz=(\d+)")
        ghz = int(link.group(1))
        m = read_until(g, r"received=(\d+) rtt_us_min=(\d+) rtt_us_avg=(\d+) rtt_us_max=\d+ rtt_us_median=(\d+)")
        finish(g)
        scale = ghz / hz  # the guest's microseconds were counted at its own TSC guess
        return int(m.group(3)) * scale, int(m.group(2)) * scale, int(m.group(4)) * scale
    finally:
        ns.close()

def veth_gso(a):
    return veth(a, "gso")

def veth(a, mode="plain"):
    x, y = Ns("vx"), Ns("vy")
    try:
        sh("ip", "link", "add", "vx0", "netns", x.name, "type", "veth", "peer", "name", "vy0", "netns", y.name)
        x.ip("addr", "add", "10.9.4.1/24", "dev", "vx0"); x.ip("link", "set", "vx0", "up")
        y.ip("addr", "add", "10.9.4.2/24", "dev", "vy0"); y.ip("link", "set", "vy0", "up")
        r = y.popen([sys.executable, "-c", RECV, "10.9.4.2", "5001", str(a.mb * 10**6)])
        r.stdout.readline()
        s = x.popen([sys.executable, "-c", SEND, "10.9.4.2", "5001", str(a.mb * 10**6), "30", mode])
        finish(s)
        got, span = r.stdout.readline().split()
        finish(r)
        return int(got) / float(span) / 1e6 if float(span) > 0 else 0.0
    finally:
        x.close(); y.close()

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--cases", default="g->h,h->g,h->g-mmsg,h->g-pkt,h->g-gso,g<->g,veth,veth-gso,rtt",
                    help="comma-separated subset of g->h,h->g,h->g-mmsg,h->g-pkt,h->g-gso,g<->g,veth,veth-gso,rtt")
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    ap.add_argument("--vmm", default=os.path.join(target, "release", "domus-vmm"))
    ap.add_argument("--elf", default=os.path.join(target, "release", "domus-probe"))
    ap.add_argument("--coalesce-off", action="store_true",
                    help="also run domus-vmm with DOMUS_NET_RX_COALESCE=0 in each round (rows 'CASE off')")
    ap.add_argument("--pin", metavar="VMM_CPU,HOST_CPU",
                    help="run every VMM on VMM_CPU and every host sender/receiver on HOST_CPU (taskset)")
    ap.add_argument("--cap", type=float, metavar="PERCENT",
                    help="hold every VMM process to PERCENT %% of one CPU (cgroup v1 CFS quota, as xl's cap=)")
    a = ap.parse_args()
    if a.cap is not None and not 1 <= a.cap <= 100:
        raise SystemExit(f"--cap {a.cap}: expected a percentage of one CPU between 1 and 100")
    if a.pin:
        try:
            vmm_cpu, host_cpu = (int(x) for x in a.pin.split(","))
        except ValueError:
            raise SystemExit(f"--pin {a.pin!r}: expected two CPU numbers, e.g. --pin 1,0")
        PIN["vmm"], PIN["host"] = ["taskset", "-c", str(vmm_cpu)], ["taskset", "-c", str(host_cpu)]
    a.vmm, a.elf = os.path.abspath(a.vmm), os.path.abspath(a.elf)
    group = None
    if a.cap is not None:
        group, wrapper = cap_group(a.cap)
        OUTER["vmm"] = wrapper
    try:
        run(a)
    finally:
        if group:
            remove_group(group)

def run(a):
    tmp = tempfile.mkdtemp(prefix="net-bench-")
    # The TSC rate as domus-vmm's guest calibrates it (ACPI PM timer).
    ns = Ns("hz")
    try:
        ns.tap("tap0", "10.9.5.1/24")
        g = guest(ns, "domus", a, "tap0", "00:16:3e:09:05:02", "probe=net-ping ip=10.9.5.2/24 target=10.9.5.1 count=1", tmp)
        hz = int(read_until(g, r"tsc_hz=(\d+)").group(1)); finish(g)
    finally:
        ns.close()
    cases = a.cases.split(",")
    res = {}
    for case, fn in [("g->h", g2h), ("h->g", h2g), ("h->g-mmsg", h2g_mmsg), ("h->g-pkt", h2g_packet), ("h->g-gso", h2g_gso), ("g<->g", g2g)]:
        if case not in cases:
            continue
        d, o, q = [], [], []
        for _ in range(a.n):
            d.append(fn("domus", a, tmp, hz))
            if a.coalesce_off:
                o.append(fn("domus-off", a, tmp, hz))
            q.append(fn("qemu", a, tmp, hz))
        res[case] = (statistics.median(d), statistics.median(q), d, q)
        if o:
            res[case + " off"] = (statistics.median(o), statistics.median(q), o, q)
    ceiling = statistics.median([veth(a) for _ in range(a.n)]) if "veth" in cases else None
    ceiling_gso = statistics.median([veth(a, "gso") for _ in range(a.n)]) if "veth-gso" in cases else None
    dr, qr = [], []
    for _ in range(a.n if "rtt" in cases else 0):
        dr.append(rtt("domus", a, tmp, hz)); qr.append(rtt("qemu", a, tmp, hz))
    print(f"tsc_hz={hz}  rounds={a.n}  stream={a.mb} MB of 1472-byte UDP payloads"
          + (f"  pinned: VMMs on CPU {PIN['vmm'][2]}, host side on CPU {PIN['host'][2]}" if a.pin else "")
          + (f"  VMMs capped at {a.cap:g} % of a CPU" if a.cap is not None else ""))
    for kind, feats in FEATURES.items():
        print(f"{kind} negotiated features={feats}")
    print(f"{'case':<8} {'domus MB/s':>10} {'qemu MB/s':>10} {'domus/qemu':>10}   rounds (domus | qemu)")
    for case, (d, q, ds, qs) in res.items():
        rounds = " ".join(f"{x:.0f}" for x in ds) + " | " + " ".join(f"{x:.0f}" for x in qs)
        print(f"{case:<8} {d:>10.1f} {q:>10.1f} {d / q if q else float('nan'):>10.2f}   {rounds}")
    if ceiling is not None:
        print(f"{'veth':<8} {ceiling:>10.1f}   (host ceiling: the same sender/receiver over a veth pair)")
    if ceiling_gso is not None:
        print(f"{'veth-gso':<8} {ceiling_gso:>10.1f}   (host ceiling: the UDP_SEGMENT sender over a veth pair)")
    if dr:
        davg = statistics.median(x[0] for x in dr); qavg = statistics.median(x[0] for x in qr)
        dmin = statistics.median(x[1] for x in dr); qmin = statistics.median(x[1] for x in qr)
        print(f"rtt avg  domus {davg:.0f} us  qemu {qavg:.0f} us  ratio {davg / qavg:.2f}")
        print(f"rtt min  domus {dmin:.0f} us  qemu {qmin:.0f} us  ratio {dmin / qmin:.2f}")
        dmed = statistics.median(x[2] for x in dr); qmed = statistics.median(x[2] for x in qr)
        print(f"rtt median domus {dmed:.0f} us  qemu {qmed:.0f} us  ratio {dmed / qmed:.2f}")

if __name__ == "__main__":
    main()
