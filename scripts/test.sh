#!/usr/bin/env bash
# Runs every check and test Domus has: formatting, clippy, the workspace's unit and integration tests
# (which boot real guests on /dev/kvm and talk to Debian's real Xen clients), and the fuzz-corpus replays.
# Needs: Rust stable + nightly (for the fuzz targets), /dev/kvm, the packages .ci/run installs.
set -euo pipefail
cd "$(dirname "$0")/.."

export DOMUS_TESTDEPS=${DOMUS_TESTDEPS:-$PWD/.cache/testdeps}
./scripts/fetch-test-deps.sh >/dev/null

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo doc (warnings are errors)"
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --quiet
echo "== cargo build (all binaries, the probe guest included)"
cargo build --workspace
echo "== Debian packages (built from the debug build, unpacked and checked; lintian)"
./scripts/test-package.sh
# Fuzz targets: built with nightly + cargo-fuzz, their committed corpora replayed (no new fuzzing in CI).
for dir in crates/*/fuzz guests/*/fuzz; do
    [ -d "$dir" ] || continue
    echo "== fuzz corpus replay: $dir"
    ./scripts/fuzz-replay.sh "$dir"
done
echo "== cargo test"
# Guest-booting tests share 2 CPUs and /dev/kvm: keep test threads low so timing-insensitive
# tests are not starved.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set -o pipefail
cargo test --workspace -- --test-threads=2 2>&1 | tee "$log"
# One closing line over every test binary (cargo prints one "test result" line per binary).
awk '/^test result:/ {p += $4; f += $6} END {printf "Total: %d passed, %d failed\n", p, f}' "$log"
