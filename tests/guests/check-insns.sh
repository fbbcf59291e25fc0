#!/bin/sh
# Fails if the guest contains an instruction kvm_pvm cannot emulate in
# kernel mode (INT3, FWAIT, FNCLEX, POPCNT, CLAC, XRSTOR, CMPXCHG16B) or
# any SSE/x87 register use. The whole image is checked, user code too:
# console and helper code runs in both modes. The 32-bit .boot section is
# disassembled as i386; the 16/32-bit AP trampoline lives in .rodata and
# is hand-written without any of these.
set -e
elf=$1
# Matched against the instruction text only (third tab-separated field).
bad='^(int3|fwait|wait|fnclex|fclex|popcnt|clac|xrstor|cmpxchg16b|f[a-z0-9]+)( |$)|%[xyz]mm|%st'
insns() {
	objdump -d "$@" "$elf" | awk -F'\t' '/^ +[0-9a-f]+:\t/ && NF >= 3 {
		print $1 "\t" $3 }'
}
out=$( insns -j .text; insns -m i386 -j .boot )
[ -n "$out" ] || { echo "check-insns: no code disassembled in $elf" >&2; exit 1; }
hits=$(printf '%s\n' "$out" | awk -F'\t' -v re="$bad" '$2 ~ re' || true)
if [ -n "$hits" ]; then
	echo "check-insns: $elf has instructions kvm_pvm cannot emulate:" >&2
	printf '%s\n' "$hits" >&2
	exit 1
fi
