#!/usr/bin/env bash
# Builds every cargo-fuzz target under DIR (a crate's fuzz/ folder) with the nightly toolchain and replays
# its committed corpus (fuzz/corpus/<target>/) once, without generating new inputs. Fails on any crash.
# All fuzz crates share one target dir so libFuzzer itself is compiled once.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=$1
tdir=${DOMUS_FUZZ_TARGET_DIR:-$repo/target/fuzz}
cd "$dir"
targets=$(cargo +nightly fuzz list)
for t in $targets; do
    cargo +nightly fuzz build --target-dir "$tdir" "$t"
done
for t in $targets; do
    corpus=corpus/$t
    [ -d "$corpus" ] || { echo "no committed corpus for fuzz target $t in $dir" >&2; exit 1; }
    echo "replaying $(find "$corpus" -type f | wc -l) inputs of $dir/$t"
    cargo +nightly fuzz run --target-dir "$tdir" "$t" "$corpus" -- -runs=0
done
