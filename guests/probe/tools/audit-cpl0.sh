#!/usr/bin/env bash
# Disassembles every ring-0 code range of the probe ELF and fails if it contains an instruction
# that kills a PVM guest at CPL0 (KVM's emulator: ENVIRONMENT.md) or any SSE/AVX register use.
# usage: guests/probe/tools/audit-cpl0.sh [PROBE_ELF]     (needs binutils: nm, objdump)
set -euo pipefail
elf=${1:-${CARGO_TARGET_DIR:-target}/debug/domus-probe}
addr() { nm "$elf" | awk -v s="$1" '$3 == s { print "0x" $1 }'; }
# start symbol, end symbol, objdump machine (i8086 / i386 / x86-64)
ranges=(
    "pvh_start32 long_mode_bsp i386"
    "long_mode_bsp cpl3_bsp_entry x86-64"
    "trap_ud fatal_trap_cpl3 x86-64"
    "irq_sci irq_spurious x86-64"
    "ap_trampoline tr_pm32 i8086"
    "tr_pm32 tr_lm64 i386"
    "tr_lm64 tr_gdt_ptr x86-64"
    "ap_entry64 ap_cpl3_entry x86-64"
)
forbidden='(\bint3\b|\bint\s+\$|cmpxchg16b|popcnt|xmm|ymm|zmm|xsave|xrstor|xgetbv|invpcid|rdtscp|\bstac\b|\bclac\b|\(bad\))'
status=0
total=0
for r in "${ranges[@]}"; do
    read -r from to mach <<<"$r"
    start=$(addr "$from"); stop=$(addr "$to")
    if [[ -z $start || -z $stop ]]; then
        echo "audit-cpl0: symbol $from or $to missing in $elf" >&2
        exit 2
    fi
    [[ $to == irq_spurious ]] && stop=$(printf '0x%x' $((stop + 1)))
    dis=$(objdump -D -j .text -j .rodata -m i386 -M "$mach" \
        --start-address="$start" --stop-address="$stop" "$elf" 2>/dev/null | grep -E '^\s+[0-9a-f]+:' || true)
    n=$(grep -c . <<<"$dis" || true)
    total=$((total + n))
    if bad=$(grep -E "$forbidden" <<<"$dis"); then
        echo "audit-cpl0: forbidden ring-0 instruction in $from..$to:" >&2
        echo "$bad" >&2
        status=1
    fi
done
echo "audit-cpl0: $total ring-0 instructions checked, $([[ $status == 0 ]] && echo none forbidden || echo FAILED)"
exit $status
