#!/bin/sh
# Make a golden snapshot tests/golden/NAME.snap{,.ram} (+ NAME.json, and
# NAME.disk for a guest with a disk). Needs the khyve build (make).
# Without /dev/kvm here it runs itself through tests/nested/run.sh and
# carries the files back over stdout.
#
#   make-golden.sh counter-64m      1 vCPU, no PCI devices (the first one)
#   make-golden.sh smp-virtio-64m   2 vCPUs, virtio-rng, virtio-blk and
#                                   virtio-console, after the guest's smp,
#                                   vrng and vblk tests
#   make-golden.sh counter-64m-v1.1 the guest of counter-64m, in the
#                                   format of the day (1.1: save id, RAM
#                                   file trailer)
#   make-golden.sh chain-64m-v1.2   an incremental chain (format 1.2): a
#                                   full checkpoint NAME-base.snap at
#                                   memcheck 5, then NAME.snap, suspended
#                                   with --incremental at memcheck 10
#
# Never regenerate one to make a failing test pass, and never overwrite a
# committed one: see README.md. A new golden gets a new NAME, and its files
# are pinned in PINNED by hand (tests/unit/test_golden.c).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
out=$top/tests/golden
name=${1:?usage: make-golden.sh NAME}

cpus=1
devs=""
chain=""
case $name in
counter-64m|counter-64m-v1.1)
	cmdline="counter interval_ms=50 check_every=5 mem_kb=1024" ;;
chain-64m-v1.2)
	# pages rewritten every tick, every third generation zero: the
	# increment holds changed pages and pages that became zero
	cmdline="counter interval_ms=50 check_every=5 mem_kb=1024 dirty_pages=16 zero_every=3"
	chain=1 ;;
smp-virtio-64m)
	cpus=2
	cmdline="tests=smp,vrng,vblk counter interval_ms=50 check_every=5 mem_kb=256 smp_slice_kb=64"
	devs="virtio-rng virtio-blk virtio-console" ;;
*)
	echo "make-golden.sh: unknown golden '$name'" >&2; exit 2 ;;
esac

if [ "${2:-}" = "--inner" ]; then
	d=$(mktemp -d)
	files="$name.snap $name.snap.ram $name.json"
	set --
	for dev in $devs; do
		case $dev in
		virtio-rng) set -- "$@" -s 2,virtio-rng ;;
		virtio-blk)
			# A 1 MiB disk; the vblk test writes sectors 64-127.
			truncate -s 1M "$d/$name.disk"
			files="$files $name.disk"
			set -- "$@" -s "3,virtio-blk,$d/$name.disk" ;;
		virtio-console) set -- "$@" -s 4,virtio-console,null ;;
		esac
	done
	"$top/build/khyve" --rundir "$d/run" -c $cpus -m 64M \
		-k "$top/build/guests/testguest.elf" -a "$cmdline" \
		-l com1,stdio "$@" golden < /dev/null > "$d/console" &
	pid=$!
	i=0
	incr=""
	if [ -n "$chain" ]; then
		until grep -q '^KHYVE-MEMCHECK ok 5 ' "$d/console" 2>/dev/null; do
			i=$((i + 1)); [ $i -lt 600 ] || { echo "no tick" >&2; exit 1; }
			sleep 0.1
		done
		"$top/build/khyvectl" --rundir "$d/run" checkpoint golden "$d/$name-base.snap" >&2
		files="$files $name-base.snap $name-base.snap.ram"
		incr=--incremental
	fi
	until grep -q '^KHYVE-MEMCHECK ok 10\( \|$\)' "$d/console" 2>/dev/null; do
		i=$((i + 1)); [ $i -lt 600 ] || { echo "no tick" >&2; exit 1; }
		sleep 0.1
	done
	"$top/build/khyvectl" --rundir "$d/run" suspend golden "$d/$name.snap" $incr >&2
	wait $pid || [ $? -eq 5 ]
	if grep -q ' FAIL\|KHYVE-GUEST exception' "$d/console"; then
		cat "$d/console" >&2; exit 1
	fi
	last=$(sed -n 's/^KHYVE-COUNTER \([0-9]*\) tsc=[0-9]*$/\1/p' "$d/console" | tail -n 1)
	kvm=$("$top/build/khyve" --probe-kvm 2>&1 | sed 's/^kvm: usable, //')
	format=$("$top/build/khyvectl" snapshot info "$d/$name.snap" | sed -n 's/^format: *//p')
	links=""
	[ -z "$chain" ] || links=", \"links\": [\"$name-base.snap\"]"
	printf '{"last_tick": %s, "cmdline": "%s", "memory": "64M", "cpus": %s, "devices": "%s", "vendor": "%s", "kvm": "%s", "format": "%s", "khyve": "%s", "made": "%s"%s}\n' \
		"$last" "$cmdline" $cpus "$devs" \
		"$(sed -n 's/^vendor_id[^:]*: //p' /proc/cpuinfo | head -n 1)" \
		"$kvm" "$format" "$("$top/build/khyve" --version | cut -d' ' -f2)" \
		"$(date -u +%Y-%m-%d)" "$links" > "$d/$name.json"
	echo GOLDEN-BEGIN
	(cd "$d" && tar -cSzf - $files) | base64
	echo GOLDEN-END
	rm -rf "$d"
	exit 0
fi

if [ -e "$out/$name.snap" ]; then
	echo "make-golden.sh: $out/$name.snap exists; golden files are never regenerated" >&2
	exit 1
fi
if [ -c /dev/kvm ]; then
	"$0" "$name" --inner > "$out/.golden.txt"
else
	"$top/tests/nested/run.sh" sh "$0" "$name" --inner > "$out/.golden.txt"
fi
sed -n '/^GOLDEN-BEGIN$/,/^GOLDEN-END$/p' "$out/.golden.txt" | sed '1d;$d' |
	base64 -d | tar -xzSf - -C "$out"
rm -f "$out/.golden.txt"
"$top/build/khyvectl" snapshot verify "$out/$name.snap"
cat "$out/$name.json"
echo "now pin the new files in $out/PINNED (sha256sum, format from" \
     "'khyvectl snapshot info')"
