#!/usr/bin/env bash
# Builds every cargo-fuzz target under DIR (a crate's fuzz/ folder) with the nightly toolchain and replays
# its committed corpus (fuzz/corpus/<target>/) once, without generating new inputs. Fails on any crash.
set -euo pipefail
dir=$1
cd "$dir"
targets=$(cargo +nightly fuzz list)
cargo +nightly fuzz build $targets
for t in $targets; do
    corpus=corpus/$t
    [ -d "$corpus" ] || { echo "no committed corpus for fuzz target $t in $dir" >&2; exit 1; }
    cargo +nightly fuzz run "$t" "$corpus" -- -runs=0
done
