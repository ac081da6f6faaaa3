#!/usr/bin/env bash
# Checks the Debian packages (scripts/build-deb.sh --debug, reusing the debug build): unpacked into a
# temporary root, their file list, the systemd units' syntax (no systemd here: scripts/check-units.awk),
# every man page rendered with man -l and mentioning every command, option and config key the code
# defines, the bash completion loaded and completing, and lintian with no errors.
# Needs: dpkg-dev, binutils, man-db, groff-base, lintian, bash-completion is not needed.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "test-package: FAIL: $*" >&2
    exit 1
}

mapfile -t debs < <(scripts/build-deb.sh --debug 2>/dev/null | grep '\.deb$')
[ "${#debs[@]}" -eq 2 ] || fail "build-deb.sh did not report two packages"
root=$(mktemp -d)
domusd_pid=
cleanup() {
    if [ -n "$domusd_pid" ]; then
        domus destroy pkgtest >/dev/null 2>&1 || true
        kill "$domusd_pid" 2>/dev/null || true
        wait "$domusd_pid" 2>/dev/null || true
    fi
    rm -rf "$root"
}
trap cleanup EXIT
for d in "${debs[@]}"; do
    dpkg-deb -x "$d" "$root"
done
bin=target/debug

echo "-- file list"
for f in usr/bin/domus usr/bin/domus-vmm usr/bin/domus-bootloader usr/sbin/domusd usr/sbin/domus-xenstored; do
    [ -f "$root/$f" ] && [ -x "$root/$f" ] || fail "missing executable /$f"
done
for f in lib/systemd/system/domusd.service lib/systemd/system/domus-autostart.service \
    etc/domus/example.cfg etc/domus/xl.conf usr/lib/tmpfiles.d/domus.conf \
    usr/share/doc/domus/copyright usr/share/doc/domus/changelog.gz usr/share/doc/domus-xl/copyright \
    usr/share/man/man1/domus.1.gz usr/share/man/man5/domus.cfg.5.gz usr/share/man/man8/domusd.8.gz \
    usr/share/man/man8/domus-vmm.8.gz usr/share/bash-completion/completions/domus \
    usr/share/zsh/vendor-completions/_domus usr/share/fish/vendor_completions.d/domus.fish; do
    [ -f "$root/$f" ] || fail "missing /$f"
done
for d in var/lib/domus var/log/domus/console etc/domus/auto; do
    [ -d "$root/$d" ] || fail "missing directory /$d"
done
for n in xl xm xentop; do
    [ "$(readlink -f "$root/usr/sbin/$n")" = "$(readlink -f "$root/usr/bin/domus")" ] ||
        fail "/usr/sbin/$n is not a link to /usr/bin/domus"
done
# Nothing outside the Debian locations (in particular nothing in /run, /usr/local or /bin).
unexpected=$(cd "$root" && find . -mindepth 1 -maxdepth 1 ! -name etc ! -name lib ! -name usr ! -name var)
[ -z "$unexpected" ] || fail "unexpected top-level entries: $unexpected"
dpkg-deb -f "${debs[1]}" Conflicts | grep -qx 'xen-utils-common' || fail "domus-xl does not conflict with xen-utils-common"
conffiles=$(dpkg-deb --ctrl-tarfile "${debs[0]}" | tar -xO ./conffiles)
for f in /etc/domus/example.cfg /etc/domus/xl.conf; do
    grep -qx "$f" <<<"$conffiles" || fail "$f is not a conffile"
done
# The installed layout: domusd in /usr/sbin finds domus-vmm in /usr/bin (DOMUS_VMM unset).
echo "-- installed layout: the unpacked domusd (/usr/sbin) boots a domain with the unpacked domus-vmm (/usr/bin)"
st=$root/test-host
mkdir -p "$st/run" "$st/state" "$st/log" "$st/cfg"
(
    export DOMUS_RUNTIME_DIR=$st/run DOMUS_STATE_DIR=$st/state DOMUS_LOG_DIR=$st/log DOMUS_CONFIG_DIR=$st/cfg
    unset DOMUS_VMM DOMUS_BOOTLOADER
    exec "$root/usr/sbin/domusd" --foreground >"$st/domusd.log" 2>&1
) &
domusd_pid=$!
domus() {
    DOMUS_RUNTIME_DIR=$st/run DOMUS_STATE_DIR=$st/state DOMUS_LOG_DIR=$st/log DOMUS_CONFIG_DIR=$st/cfg \
        "$root/usr/bin/domus" "$@"
}
for _ in $(seq 100); do domus list >/dev/null 2>&1 && break; sleep 0.1; done
domus list >/dev/null || fail "the unpacked domusd does not answer: $(cat "$st/domusd.log")"
printf 'name = "pkgtest"\ntype = "pvh"\nkernel = "%s"\nextra = "probe=hello"\nmemory = 32\nvcpus = 1\n' \
    "$PWD/$bin/domus-probe" >"$st/cfg/pkgtest.cfg"
domus create -q pkgtest.cfg || fail "create with the unpacked binaries: $(cat "$st/domusd.log")"
for _ in $(seq 300); do grep -qs 'PROBE hello' "$st/log/console/guest-pkgtest.log" && break; sleep 0.1; done
grep -qs 'PROBE hello' "$st/log/console/guest-pkgtest.log" || fail "the probe did not boot: $(cat "$st/domusd.log")"
# The probe powers off by itself (on_poweroff = destroy): wait until domusd has removed the domain, so
# no VMM outlives the test (VMMs survive domusd by design).
for _ in $(seq 100); do domus list 2>/dev/null | grep -q '^pkgtest ' || break; sleep 0.1; done
if domus list 2>/dev/null | grep -q '^pkgtest '; then
    domus destroy pkgtest || true
    fail "the probe domain did not power off"
fi
kill "$domusd_pid" && wait "$domusd_pid" 2>/dev/null || true
domusd_pid=

echo "-- systemd units"
for u in "$root"/lib/systemd/system/*.service; do
    awk -v root="$root" -f scripts/check-units.awk "$u" || fail "unit $(basename "$u")"
done

echo "-- man pages"
render() { # renders a man page; groff's warnings are failures
    local err
    err=$(MANWIDTH=100 man --warnings -l "$1" 2>&1 >/dev/null) || fail "man -l $1 failed"
    [ -z "$err" ] || fail "man -l $1: $err"
    MANWIDTH=100 man -l "$1" 2>/dev/null | col -bx
}
mention() { # $1 = rendered text, $2 = word, $3 = what
    grep -qF -- "$2" <<<"$1" || fail "$3 does not mention $2"
}
long_options() { # the --long options a --help text lists
    grep -oE -- '--[a-z][a-z0-9-]+' | sort -u
}
man1=$root/usr/share/man/man1
main=$(render "$man1/domus.1.gz")
mapfile -t commands < <("$bin/domus" --help | sed -n '/^Commands:/,/^$/p' | awk 'NR > 1 && NF { print $1 }' |
    grep -vx help)
[ "${#commands[@]}" -ge 20 ] || fail "could not read the command list from domus --help"
for c in "${commands[@]}"; do
    mention "$main" "domus-$c" "domus(1)"
    page=$(render "$man1/domus-$c.1.gz")
    while read -r opt; do
        mention "$page" "$opt" "domus-$c(1)"
    done < <("$bin/domus" "$c" --help | long_options)
done
cfg=$(render "$root/usr/share/man/man5/domus.cfg.5.gz")
# Every key of the config crate's key table (the quoted names in its IMPLEMENTED and NOT_IMPLEMENTED lists).
mapfile -t keys < <(awk '/^pub const (NOT_)?IMPLEMENTED/ { on = 1; next } on && /^\];/ { on = 0 }
    on { gsub(/[",[:space:]]/, ""); if ($0 != "") print }' crates/config/src/keys.rs)
[ "${#keys[@]}" -ge 100 ] || fail "could not read the key table"
for k in "${keys[@]}"; do
    grep -qE -- "(^|[[:space:]])$k([[:space:]]|$)" <<<"$cfg" || fail "domus.cfg(5) does not mention $k"
done
daemon=$(render "$root/usr/share/man/man8/domusd.8.gz")
while read -r opt; do mention "$daemon" "$opt" "domusd(8)"; done < <("$bin/domusd" --help | long_options)
vmm=$(render "$root/usr/share/man/man8/domus-vmm.8.gz")
vmm_opts=$("$bin/domus-vmm" --help | long_options)
[ -n "$vmm_opts" ] || fail "domus-vmm --help lists no options"
while read -r opt; do mention "$vmm" "$opt" "domus-vmm(8)"; done <<<"$vmm_opts"

echo "-- bash completion"
out=$(bash --norc --noprofile -c '
    set -e
    source "$1"
    complete -p domus >/dev/null && complete -p xl >/dev/null
    COMP_WORDS=(domus shut); COMP_CWORD=1; COMP_LINE="domus shut"; COMP_POINT=${#COMP_LINE}
    _domus domus shut domus
    printf "%s\n" "${COMPREPLY[@]}"' _ "$root/usr/share/bash-completion/completions/domus") ||
    fail "bash completion does not load"
grep -qx shutdown <<<"$out" || fail "bash completion of 'domus shut' gave: $out"
zsh_file=$root/usr/share/zsh/vendor-completions/_domus
head -n1 "$zsh_file" | grep -q '^#compdef domus' || fail "zsh completion lacks #compdef"
grep -q 'complete -c domus' "$root/usr/share/fish/vendor_completions.d/domus.fish" || fail "fish completion"

echo "-- lintian"
lintian --fail-on error --tag-display-limit 0 "${debs[@]}" 2>&1 | grep -v 'running with root privileges' || true
lintian --fail-on error "${debs[@]}" >/dev/null 2>&1 || fail "lintian reports errors"
echo "test-package: OK (${#commands[@]} commands, ${#keys[@]} config keys)"
