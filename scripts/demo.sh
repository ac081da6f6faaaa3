#!/usr/bin/env bash
# Fresh machine, first command: build Domus, start domusd (unless one already answers), boot the `hello` probe
# domain with `domus create -c examples/hello.cfg` and show its console. The probe guest prints its greeting
# (`PROBE hello vcpus=2 mem_mib=64`) and powers off through ACPI, which ends the console session.
#
# Paths: Domus's defaults (/run/domus, /var/lib/domus, /var/log/domus, /etc/domus) when run as root, as on a real
# dom0; otherwise (or when DOMUS_DEMO_PRIVATE=1) a private tree under .cache/demo/. DOMUS_* variables win.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

command -v cargo >/dev/null || { echo "demo: cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }
[ -r /dev/kvm ] && [ -w /dev/kvm ] || { echo "demo: /dev/kvm is missing or not accessible: Domus needs KVM" >&2; exit 1; }

echo "== building Domus (cargo build --workspace)"
cargo build --workspace --quiet
bin=$repo/target/debug
ln -sf domus "$bin/xl"
ln -sf domus "$bin/xm"

if [ "$(id -u)" != 0 ] || [ "${DOMUS_DEMO_PRIVATE:-0}" = 1 ]; then
    demo=$repo/.cache/demo
    export DOMUS_RUNTIME_DIR=${DOMUS_RUNTIME_DIR:-$demo/run} DOMUS_STATE_DIR=${DOMUS_STATE_DIR:-$demo/state}
    export DOMUS_LOG_DIR=${DOMUS_LOG_DIR:-$demo/log} DOMUS_CONFIG_DIR=${DOMUS_CONFIG_DIR:-$demo/etc}
fi
logdir=${DOMUS_LOG_DIR:-/var/log/domus}
mkdir -p "$logdir"

if "$bin/domus" list >/dev/null 2>&1; then
    echo "== domusd already running"
else
    echo "== starting domusd (log: $logdir/domusd.log)"
    setsid "$bin/domusd" --foreground >>"$logdir/domusd.log" 2>&1 </dev/null &
    for _ in $(seq 100); do "$bin/domus" list >/dev/null 2>&1 && break; sleep 0.1; done
    "$bin/domus" list >/dev/null || { echo "demo: domusd did not start; see $logdir/domusd.log" >&2; exit 1; }
fi

echo "== domus create -c examples/hello.cfg"
"$bin/domus" create -c examples/hello.cfg
# on_poweroff=destroy: wait (briefly) until domusd has reaped the powered-off domain.
for _ in $(seq 50); do "$bin/domus" domid hello >/dev/null 2>&1 || break; sleep 0.1; done
echo "== domus list"
"$bin/domus" list
cat <<TXT
== done. domusd keeps running; try (PATH=$bin:\$PATH):
   domus create examples/hello.cfg 'name="idle"' 'extra="probe=idle"'   # a domain that waits for the power button
   domus list; domus console idle (Ctrl-] detaches); domus shutdown -w idle
   xenstore-ls with XENSTORED_PATH=${DOMUS_RUNTIME_DIR:-/run/domus}/xenstored/socket
TXT
