#!/usr/bin/env bash
# Xen's own store benchmark, `test-xenstore -t TEST -i ITERS` (each test's average time), against
# domus-xenstored, Xen's C xenstored (Debian 12, run standalone by shared/tools/xenstore-peer/run-peer.sh)
# and the floor (domus-store-floor replaying recorded replies: client + kernel only), in the same run.
# Every daemon and every client is pinned to one CPU (taskset -c $CPU). domus-xenstored keeps its usual
# durability promise: every change write(2)n to its journal (on disk, under /tmp) before the reply, the
# journal fdatasync'ed every second. Rounds alternate the three servers test by test so that load from
# elsewhere hits them alike. Load from other work only ever adds time, so the table leads with each
# test's best round (and gives the ratio of the medians beside it).
#
# Usage: scripts/bench-store-xentest.sh [ITERS (1000)] [ROUNDS (5)]
# Needs: gcc + apt access for run-peer.sh's first setup. Never run by cargo test; figures go to
# BENCHMARKS.md ("Store: Xen's test-xenstore").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
iters=${1:-1000}
rounds=${2:-5}
cpu=${CPU:-0}
peer=${XSPEER:-$root/../shared/tools/xenstore-peer/run-peer.sh}
[ -x "$peer" ] || peer=/work/shared/tools/xenstore-peer/run-peer.sh
target=${CARGO_TARGET_DIR:-$root/target}
work=/tmp/xspeer/domus-xentest
mkdir -p "$work"

cargo build --release -q -p domus-store --manifest-path "$root/Cargo.toml"
daemon=$target/release/domus-xenstored
floor=$target/release/domus-store-floor

"$peer" setup "$work/xen" >/dev/null 2>&1 || "$peer" setup "$work/xen"
# One client binary and library for all three servers: Debian's, from the peer's extracted packages.
txbin=$work/xen/root/usr/lib/xen-4.17/bin/test-xenstore
libs=$work/xen/root/usr/lib/x86_64-linux-gnu
client() { # SOCKET ARGS...: test-xenstore against SOCKET, pinned
    local sock=$1; shift
    XENSTORED_PATH=$sock LD_LIBRARY_PATH=$libs taskset -c "$cpu" "$txbin" "$@"
}
mapfile -t tests < <(LD_LIBRARY_PATH=$libs "$txbin" -l | sed 's/ *:.*//')

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    "$peer" stop "$work/xen" >/dev/null 2>&1 || true
}
trap cleanup EXIT
wait_sock() { for _ in $(seq 200); do [ -S "$1" ] && return 0; sleep 0.05; done; echo "no socket $1" >&2; exit 1; }

rm -rf "$work/domus-state" "$work/domus.sock" "$work/floor.sock" "$work/floor.rec" "$work/xen.sock"
taskset -c "$cpu" "$daemon" --socket "$work/domus.sock" --state-dir "$work/domus-state" 2>"$work/domus.log" &
pids+=($!)
taskset -c "$cpu" "$peer" start "$work/xen" "$work/xen.sock" c >/dev/null

# Floor: record one run of every test with the real engine, then replay it round after round (the
# replaying server hands the k-th connection the (k mod 12)-th recording, so the order must match).
taskset -c "$cpu" "$floor" record --socket "$work/floor.sock" --out "$work/floor.rec" &
rpid=$!
wait_sock "$work/floor.sock"
for t in "${tests[@]}"; do client "$work/floor.sock" -t "$t" -i "$iters" >/dev/null; done
sleep 0.2; kill "$rpid"; wait "$rpid" 2>/dev/null || true
rm -f "$work/floor.sock"
taskset -c "$cpu" "$floor" replay --socket "$work/floor.sock" --from "$work/floor.rec" 2>"$work/floor.log" &
pids+=($!)
wait_sock "$work/domus.sock"; wait_sock "$work/floor.sock"

avg() { # SOCKET TEST -> average ns of that test (fails loudly if the test failed)
    local line
    line=$(client "$1" -t "$2" -i "$iters")
    case "$line" in *"avg: "*) ;; *) echo "test-xenstore -t '$2' on $1: $line" >&2; exit 1;; esac
    echo "$line" | sed 's/.*avg: \([0-9]*\) ns.*/\1/'
}

: > "$work/results"
for r in $(seq "$rounds"); do
    for t in "${tests[@]}"; do
        echo "$r|$t|domus|$(avg "$work/domus.sock" "$t")" >> "$work/results"
        echo "$r|$t|xen|$(avg "$work/xen.sock" "$t")" >> "$work/results"
        echo "$r|$t|floor|$(avg "$work/floor.sock" "$t")" >> "$work/results"
    done
done
if [ -s "$work/floor.log" ]; then echo "floor server warnings:" >&2; cat "$work/floor.log" >&2; fi

echo "test-xenstore -i $iters, $rounds rounds; per test the best and the median of the per-round averages (ns); CPU $cpu; $(date -u +%FT%TZ); load: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -F'|' -v order="$(printf '%s|' "${tests[@]}")" '
    { v[$2, $3, ++n[$2, $3]] = $4 }
    function sorted(t, s, a,   m, i, j, x) {
        m = n[t, s]; for (i = 1; i <= m; i++) a[i] = v[t, s, i]
        for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { x = a[i]; a[i] = a[j]; a[j] = x }
        return m
    }
    function best(t, s,   a) { sorted(t, s, a); return a[1] }
    function med(t, s,   a, m) { m = sorted(t, s, a); return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
    function share(x, d, f) { return (d > f) ? sprintf("%.1fx", (x - f) / (d - f)) : "-" }
    END {
        k = split(order, names, "|")
        printf "| test | domus best | Xen C best | floor best | Xen C / domus (best) | Xen C / domus (median) | above the floor: Xen C / domus (best) |\n|---|---|---|---|---|---|---|\n"
        for (i = 1; i < k; i++) {
            t = names[i]; d = best(t, "domus"); x = best(t, "xen"); f = best(t, "floor")
            dm = med(t, "domus"); xm = med(t, "xen")
            sd += d; sx += x; sf += f; sdm += dm; sxm += xm
            printf "| %s | %d | %d | %d | %.2fx | %.2fx | %s |\n", t, d, x, f, x / d, xm / dm, share(x, d, f)
        }
        printf "| sum | %d | %d | %d | %.2fx | %.2fx | %s |\n", sd, sx, sf, sx / sd, sxm / sdm, share(sx, sd, sf)
    }' "$work/results"
