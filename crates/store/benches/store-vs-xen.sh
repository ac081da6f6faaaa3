#!/usr/bin/env bash
# Benchmarks domus-xenstored against Xen's own C xenstored and oxenstored (Debian 12, xen-utils-4.17, run
# standalone by shared/tools/xenstore-peer/run-peer.sh) with the same load generator (domus-store-bench, xenstore
# protocol), and redis-server/redis-benchmark GET/SET over a unix socket as the small-server reference.
# Every daemon and every client is pinned to one CPU (taskset -c $CPU): cross-CPU wake-ups are noisy here.
# Besides client-side ops/s and latency, it reports each server's own CPU time per operation (summed
# over its threads from /proc/PID/task/*/schedstat), which client and kernel ping-pong costs do not blur.
#
# Usage: crates/store/benches/store-vs-xen.sh [SECONDS_PER_WINDOW] [WINDOWS]
# Needs: redis-server and redis-tools (apt), gcc + apt access for run-peer.sh's first setup.
# Never run by cargo test; its figures go to BENCHMARKS.md ("Store").
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
secs=${1:-3}
windows=${2:-3}
cpu=${CPU:-0}
peer=${XSPEER:-$root/../shared/tools/xenstore-peer/run-peer.sh}
target=${CARGO_TARGET_DIR:-$root/target}
work=/tmp/xspeer/domus-bench
mkdir -p "$work"

cargo build --release -q -p domus-store --manifest-path "$root/Cargo.toml"
daemon=$target/release/domus-xenstored
bench=$target/release/domus-store-bench

cpu_ns() { # total on-CPU nanoseconds of all threads of $1
    local t s=0
    for t in /proc/"$1"/task/*/schedstat; do s=$((s + $(cut -d' ' -f1 "$t"))); done
    echo "$s"
}

one() { # NAME PID SOCKET OP CONNS -> one window's line plus the server's on-CPU ns for it
    local before after line
    before=$(cpu_ns "$2")
    line=$(taskset -c "$cpu" "$bench" --socket "$3" --op "$4" --conns "$5" --seconds "$secs")
    after=$(cpu_ns "$2")
    echo "server=$1 $line cpu_ns=$((after - before))"
}

report() { # lines of one server for one op/conns: median window by ops/s, CPU per op over all windows
    awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[NR, kv[1]] = kv[2] }
           line[NR] = $0; ops[NR] = v[NR, "ops_per_s"]; cpu += v[NR, "cpu_ns"]; tot += v[NR, "total_ops"] }
         END { n = NR; for (i = 1; i <= n; i++) idx[i] = i
               for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (ops[idx[j]] < ops[idx[i]]) { t = idx[i]; idx[i] = idx[j]; idx[j] = t }
               m = idx[int((n + 1) / 2)]
               printf "server=%s op=%s conns=%s ops_per_s=%s p50_us=%s p99_us=%s retries=%s errors=%s server_cpu_us_per_op=%.2f\n",
                   v[m, "server"], v[m, "op"], v[m, "conns"], v[m, "ops_per_s"], v[m, "p50_us"], v[m, "p99_us"],
                   v[m, "retries"], v[m, "errors"], cpu / tot / 1000 }'
}

# Both servers run side by side; their windows alternate so that load from elsewhere hits both alike.
rm -rf "$work/domus-state" "$work/domus.sock" "$work/xen.sock" "$work/ox.sock"
taskset -c "$cpu" "$daemon" --socket "$work/domus.sock" --state-dir "$work/domus-state" 2>"$work/domus.log" &
dpid=$!
trap 'kill $dpid 2>/dev/null || true; "$peer" stop "$work/xen" >/dev/null 2>&1 || true; "$peer" stop "$work/ox" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 100); do [ -S "$work/domus.sock" ] && break; sleep 0.05; done
xpid=$(taskset -c "$cpu" "$peer" start "$work/xen" "$work/xen.sock" c)
opid=$(taskset -c "$cpu" "$peer" start "$work/ox" "$work/ox.sock" ocaml)
for op in read write directory txrmw; do
    for n in 1 16; do
        : > "$work/d.txt"; : > "$work/x.txt"; : > "$work/o.txt"
        for _ in $(seq "$windows"); do
            one domus "$dpid" "$work/domus.sock" "$op" "$n" >> "$work/d.txt"
            one xen-c "$xpid" "$work/xen.sock" "$op" "$n" >> "$work/x.txt"
            one xen-ocaml "$opid" "$work/ox.sock" "$op" "$n" >> "$work/o.txt"
        done
        report < "$work/d.txt"
        report < "$work/x.txt"
        report < "$work/o.txt"
    done
done
kill -TERM "$dpid"; wait "$dpid" || true
"$peer" stop "$work/xen" >/dev/null
"$peer" stop "$work/ox" >/dev/null

# redis (AOF on, fsync every second: the same durability promise as the store's journal)
rm -rf "$work/redis"; mkdir -p "$work/redis"
taskset -c "$cpu" redis-server --port 0 --unixsocket "$work/redis/redis.sock" --dir "$work/redis" \
    --save '' --appendonly yes --appendfsync everysec --daemonize no >"$work/redis/log" 2>&1 &
rpid=$!
for _ in $(seq 100); do [ -S "$work/redis/redis.sock" ] && break; sleep 0.05; done
for n in 1 16; do
    before=$(cpu_ns "$rpid")
    out=$(taskset -c "$cpu" redis-benchmark -s "$work/redis/redis.sock" -c "$n" -n 200000 -t get,set -d 32 --csv)
    after=$(cpu_ns "$rpid")
    echo "$out" | awk -F'"' -v n="$n" -v cpuns="$((after - before))" \
        '/^"(SET|GET)"/ {printf "server=redis op=%s conns=%s ops_per_s=%.0f p50_us=%.1f p99_us=%.1f server_cpu_us_per_op(both ops)=%.2f\n", $2, n, $4, $10*1000, $14*1000, cpuns/400000/1000}'
done
kill "$rpid"; wait "$rpid" 2>/dev/null || true
