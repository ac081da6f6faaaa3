#!/usr/bin/env bash
# Fetches the real, third-party components the tests use (never committed) into a cache directory:
#   $DOMUS_TESTDEPS/xen/    Debian's Xen 4.17 xenstore clients, libraries and example configs (dpkg-deb -x), and
#                           xen-utils-4.17 for Xen's own store test suite, usr/lib/xen-4.17/bin/test-xenstore
#                           (it needs only libxenstore + libxentoolcore at run time, fetched here too)
#   $DOMUS_TESTDEPS/linux/  Debian's cloud kernel image (for boot-protocol checks)
# Idempotent: a package already extracted is skipped. Prints the directory on stdout when done.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
deps=${DOMUS_TESTDEPS:-$repo/.cache/testdeps}
mkdir -p "$deps/debs" "$deps/xen" "$deps/linux"

fetch() { # fetch PKG DEST: apt-get download PKG (if not yet) and extract it into DEST
    local pkg=$1 dest=$2 deb
    if [ -e "$dest/.done-$pkg" ]; then return 0; fi
    (cd "$deps/debs" && apt-get download "$pkg" >&2)
    deb=$(ls -t "$deps/debs/${pkg}"_*.deb | head -n 1)
    dpkg-deb -x "$deb" "$dest"
    touch "$dest/.done-$pkg"
}

if ! apt-cache show xenstore-utils >/dev/null 2>&1; then apt-get update >&2; fi

for pkg in xenstore-utils libxenstore4 libxentoolcore1 xen-utils-common xen-utils-4.17; do
    fetch "$pkg" "$deps/xen"
done

# linux-image-cloud-amd64 is a metapackage: fetch the versioned image it depends on.
kpkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
fetch "$kpkg" "$deps/linux"
# Relative, so the link stays valid when the cache is shared between checkouts.
ln -sfn "boot/$(cd "$deps/linux/boot" && ls vmlinuz-* | head -n 1)" "$deps/linux/vmlinuz"

echo "$deps"
