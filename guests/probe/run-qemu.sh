#!/usr/bin/env bash
# Boots the built probe guest under QEMU microvm (KVM): the side-by-side peer for benchmarks.
#
# usage: guests/probe/run-qemu.sh [QEMU ARGS ...] -- <probe command line ...>
#   e.g. guests/probe/run-qemu.sh -- probe=hello
#        guests/probe/run-qemu.sh -smp 2 -m 128 -- probe=loop iters=1000000000
# The ELF is $PROBE_ELF, else $CARGO_TARGET_DIR/debug/domus-probe, else <repo>/target/debug/domus-probe
# (build it with `cargo build -p domus-probe`). QEMU ARGS come after the defaults
# (-M microvm -accel kvm -cpu qemu64 -m 64 -nographic -no-reboot), so later options such as -m win.
# QEMU is exec'd: the process started is QEMU itself (for start -> first-console-byte timings).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
elf=${PROBE_ELF:-${CARGO_TARGET_DIR:-$repo/target}/debug/domus-probe}
qemu_args=()
while [[ $# -gt 0 && $1 != -- ]]; do
    qemu_args+=("$1")
    shift
done
if [[ $# -eq 0 ]]; then
    echo "usage: $0 [QEMU ARGS ...] -- <probe command line ...>" >&2
    exit 2
fi
shift
if [[ ! -f $elf ]]; then
    echo "$0: probe ELF $elf not found: run 'cargo build -p domus-probe' or set PROBE_ELF" >&2
    exit 1
fi
exec qemu-system-x86_64 -M microvm -accel kvm -cpu qemu64 -m 64 -nographic -no-reboot \
    "${qemu_args[@]}" -kernel "$elf" -append "$*"
