#!/bin/bash
# Runs tap-read-bench.c once in a network namespace of its own (BENCHMARKS.md, NICs, Run J):
#   guests/probe/tools/tap-read-bench.sh MODE [BATCH [HOLD_US]]    (as root; env passed through)
# The reader on CPU 1, the AF_PACKET sender on CPU 0, 4 s; prints the reader's line and the TAP's
# counters. The namespace (and the TAP in it) is deleted afterwards.
set -e
here=$(cd "$(dirname "$0")" && pwd)
exe=${TMPDIR:-/tmp}/tap-read-bench
[ "$exe" -nt "$here/tap-read-bench.c" ] || cc -O2 -o "$exe" "$here/tap-read-bench.c" -luring
ns=taprb$$
ip netns add $ns
trap 'ip netns del $ns' EXIT
ip netns exec $ns ip tuntap add dev t0 mode tap vnet_hdr
ip netns exec $ns ip link set t0 up
ip netns exec $ns taskset -c 1 "$exe" recv "$1" 4 "${2:-32}" "${3:-200}" &
reader=$!
sleep 0.3
ip netns exec $ns taskset -c 0 "$exe" send 4.2 >/dev/null
wait $reader
ip netns exec $ns ip -s link show t0 | awk '/TX:/ { getline; print "  TAP tx packets", $2, "dropped", $4 }'
