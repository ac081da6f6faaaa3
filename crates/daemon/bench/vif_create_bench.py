#!/usr/bin/env python3
"""Domain create time with one bridged vif vs without, same session, alternating.

Usage (as root): vif_create_bench.py BIN_DIR [ROUNDS]

Makes a network namespace with a bridge `bridge0` (and an uplink veth port), runs domusd inside it
(`ip netns exec`) on private DOMUS_* directories, then alternately creates a 64 MiB probe domain
(`probe=idle`) without a vif and with `vif = ['bridge=bridge0']`, timing `domus create` until it
returns (the VMM answers on its control socket), and destroys it. Everything is removed at the end.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def main():
    bins = os.path.abspath(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    ns = f"domus-vifbench-{os.getpid()}"
    tmp = tempfile.mkdtemp(prefix="domus-vifbench-")
    env = dict(os.environ)
    for k in ("run", "state", "log", "cfg"):
        os.makedirs(os.path.join(tmp, k))
    env.update(
        DOMUS_RUNTIME_DIR=f"{tmp}/run",
        DOMUS_STATE_DIR=f"{tmp}/state",
        DOMUS_LOG_DIR=f"{tmp}/log",
        DOMUS_CONFIG_DIR=f"{tmp}/cfg",
    )
    subprocess.run(["ip", "netns", "add", ns], check=True)
    domusd = None
    try:
        subprocess.run(
            ["ip", "netns", "exec", ns, "sh", "-c",
             "ip link set lo up && ip link add bridge0 type bridge "
             "&& ip link add up0 type veth peer name up1 && ip link set up0 master bridge0 "
             "&& ip link set up0 up && ip link set bridge0 up"],
            check=True,
        )
        log = open(f"{tmp}/domusd.log", "w")
        domusd = subprocess.Popen(
            ["ip", "netns", "exec", ns, f"{bins}/domusd", "--foreground"],
            env=env, stdout=log, stderr=log,
        )
        domus = f"{bins}/domus"
        for _ in range(200):
            if subprocess.run([domus, "list"], env=env, capture_output=True).returncode == 0:
                break
            time.sleep(0.02)
        body = (f'type = "pvh"\nkernel = "{bins}/domus-probe"\nextra = "probe=idle"\n'
                'memory = 64\nvcpus = 1\n')
        cfgs = {
            "none": body,
            "bridged vif": body + "vif = ['bridge=bridge0']\n",
        }
        times = {k: [] for k in cfgs}
        for i in range(rounds):
            for kind, text in cfgs.items():
                path = f"{tmp}/cfg/b.cfg"
                with open(path, "w") as f:
                    f.write(f'name = "b{i}"\n' + text)
                t0 = time.perf_counter()
                subprocess.run([domus, "create", "-q", path], env=env, check=True,
                               capture_output=True)
                times[kind].append((time.perf_counter() - t0) * 1000)
                subprocess.run([domus, "destroy", f"b{i}"], env=env, check=True)
        for kind, t in times.items():
            print(f"{kind:12s} create returns: median {statistics.median(t):.1f} ms, "
                  f"mean {statistics.mean(t):.1f} ms, min {min(t):.1f} ms ({len(t)} runs)")
        d = statistics.median(times["bridged vif"]) - statistics.median(times["none"])
        print(f"difference of medians: {d:+.1f} ms")
    finally:
        if domusd:
            domusd.terminate()
            domusd.wait()
        subprocess.run(["ip", "netns", "del", ns])
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
