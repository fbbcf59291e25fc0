#!/bin/sh
# Regenerate the golden snapshot tests/golden/counter-64m.snap{,.ram}.
# Needs the khyve build (make). Without /dev/kvm here it runs itself
# through tests/nested/run.sh and carries the files back over stdout.
# Never regenerate it to make a failing test pass: see README.md.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
out=$top/tests/golden
cmdline="counter interval_ms=50 check_every=5 mem_kb=1024"

if [ "${1:-}" = "--inner" ]; then
	d=$(mktemp -d)
	"$top/build/khyve" --rundir "$d/run" -c 1 -m 64M \
		-k "$top/build/guests/testguest.elf" -a "$cmdline" \
		-l com1,stdio golden < /dev/null > "$d/console" &
	pid=$!
	i=0
	until grep -q '^KHYVE-MEMCHECK ok 10$' "$d/console" 2>/dev/null; do
		i=$((i + 1)); [ $i -lt 600 ] || { echo "no tick" >&2; exit 1; }
		sleep 0.1
	done
	"$top/build/khyvectl" --rundir "$d/run" suspend golden "$d/counter-64m.snap" >&2
	wait $pid || [ $? -eq 5 ]
	last=$(sed -n 's/^KHYVE-COUNTER \([0-9]*\) tsc=[0-9]*$/\1/p' "$d/console" | tail -n 1)
	printf '{"last_tick": %s, "cmdline": "%s", "memory": "64M", "cpus": 1, "vendor": "%s", "khyve": "%s", "made": "%s"}\n' \
		"$last" "$cmdline" "$(sed -n 's/^vendor_id[^:]*: //p' /proc/cpuinfo | head -n 1)" \
		"$("$top/build/khyve" --version | cut -d' ' -f2)" \
		"$(date -u +%Y-%m-%d)" > "$d/counter-64m.json"
	echo GOLDEN-BEGIN
	(cd "$d" && tar -cSzf - counter-64m.snap counter-64m.snap.ram counter-64m.json) | base64
	echo GOLDEN-END
	exit 0
fi

if [ -c /dev/kvm ]; then
	"$0" --inner > "$out/.golden.txt"
else
	"$top/tests/nested/run.sh" sh "$0" --inner > "$out/.golden.txt"
fi
sed -n '/^GOLDEN-BEGIN$/,/^GOLDEN-END$/p' "$out/.golden.txt" | sed '1d;$d' |
	base64 -d | tar -xzSf - -C "$out"
rm -f "$out/.golden.txt"
"$top/build/khyvectl" snapshot verify "$out/counter-64m.snap"
cat "$out/counter-64m.json"
