#!/bin/sh
# Runs every mode of the test guest under QEMU TCG and checks its console
# protocol lines. Usage: check.sh [testguest.elf]
# Exit 0: all cases passed; 1: a case failed; 77: qemu-system-x86_64 is
# not installed (nothing was run).
# QEMU ends the guest through isa-debug-exit (port 0xf4): exit status
# 1 = guest powered off with fail=0, 3 = with failures, 15 = reboot had no
# effect; with -no-reboot a reset (reboot, triple fault) exits with 0.

here=$(cd "$(dirname "$0")" && pwd)
elf=${1:-$here/../../build/guests/testguest.elf}
qemu=${QEMU:-qemu-system-x86_64}
tmo=${CHECK_TIMEOUT:-60}

if ! command -v "$qemu" >/dev/null 2>&1; then
	echo "check.sh: SKIP: $qemu not installed"
	exit 77
fi
[ -f "$elf" ] || { echo "check.sh: $elf not found (run make)"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
out=$work/out

# run NAME MACHINE "QEMU ARGS" "CMDLINE" [STDIN-TEXT]
run() {
	name=$1
	printf '%s' "${5:-}" >"$work/in"
	# shellcheck disable=SC2086
	timeout "$tmo" "$qemu" -accel tcg -M "$2" $3 -kernel "$elf" \
		-append "$4" -display none -serial stdio -no-reboot \
		-device isa-debug-exit,iobase=0xf4 \
		-d cpu_reset,guest_errors -D "$work/qemu.log" \
		<"$work/in" >"$out" 2>"$work/err"
	rc=$?
}

fail() {
	echo "FAIL $name: $*"
	sed 's/^/    | /' "$out"
	failed=1
}

want() { # the output has a line matching the extended regex
	grep -Eq "$1" "$out" || fail "no line matching /$1/"
}

want_rc() {
	[ "$rc" -eq "$1" ] || fail "qemu exit status $rc, expected $1"
}

ok() {
	[ "$failed_before" = "$failed" ] && echo "ok   $name"
}

case_start() { failed_before=$failed; }

# 1. The default self-test set on both machine types, 2 CPUs.
for m in microvm pc; do
	case_start
	run "tests-$m" $m "-m 128M -smp 2" "tests=serial,mem,timer,smp"
	want_rc 1
	want '^KHYVE-GUEST testguest start$'
	want '^KHYVE-SERIAL ascii  !"#\$%&.*xyz\{\|\}~$'
	want '^KHYVE-TEST serial PASS '
	want '^KHYVE-TEST mem-size PASS ram=1[0-9]{8} '
	want '^KHYVE-TEST mem-pattern PASS bytes=[1-9][0-9]{7,} .*bad=0 '
	want '^KHYVE-TEST timer PASS lapic=[1-9][0-9]* pit=[1-9]'
	want '^KHYVE-TEST smp PASS cpus=2 expected=2 '
	want '^KHYVE-TEST smp-mem PASS aps=1 done=1 '
	want '^KHYVE-GUEST done pass=6 fail=0$'
	grep -q FAIL "$out" && fail "a FAIL line"
	ok
done

# 2. Empty command line = tests=serial,mem,timer,smp (4 CPUs).
case_start
run default microvm "-m 64M -smp 4" ""
want_rc 1
want '^KHYVE-TEST smp PASS cpus=4 expected=4 apic_ids=0,[1-3],[1-3],[1-3]$'
want '^KHYVE-TEST smp-mem PASS aps=3 done=3 '
want '^KHYVE-GUEST done pass=6 fail=0$'
ok

# 3. RAM above 4 GiB, with 2 MiB (qemu64) and 1 GiB (max) pages.
for cpu in qemu64 max; do
	case_start
	run "highmem-$cpu" pc,max-ram-below-4g=128M "-m 192M -cpu $cpu" \
		"tests=mem"
	want_rc 1
	want '^KHYVE-INFO mem range 0x100000000-0x104000000$'
	want '^KHYVE-TEST mem-pattern PASS .*bad=0 '
	ok
done

# 4. Echo: lines come back, "quit" ends the test.
case_start
run echo microvm "-m 64M" "tests=echo" "$(printf 'hello world\r\nline two\nquit\n')
"
want_rc 1
want '^KHYVE-ECHO ready$'
want '^KHYVE-ECHO got hello world$'
want '^KHYVE-ECHO got line two$'
want '^KHYVE-TEST echo PASS lines=2 bytes=19$'
ok

# 5. Counter: 12 consecutive ticks, memchecks at 4, 8, 12.
case_start
run counter microvm "-m 64M" "counter interval_ms=50 count=12 check_every=4"
want_rc 1
seq=$(sed -n 's/^KHYVE-COUNTER \([0-9]*\) tsc=[0-9]*$/\1/p' "$out" |
	tr '\n' ' ')
[ "$seq" = "1 2 3 4 5 6 7 8 9 10 11 12 " ] || fail "ticks: $seq"
checks=$(sed -n 's/^KHYVE-MEMCHECK ok \([0-9]*\)$/\1/p' "$out" | tr '\n' ' ')
[ "$checks" = "4 8 12 " ] || fail "memchecks: $checks"
want '^KHYVE-TEST counter PASS ticks=12 memchecks=3 bad=0$'
ok

# 6. Exit modes.
case_start
run poweroff microvm "-m 64M" "exit=poweroff"
want_rc 1
want '^KHYVE-GUEST done pass=0 fail=0$'
ok

case_start
run reboot pc "-m 64M" "exit=reboot"
want_rc 0
want '^KHYVE-INFO exit reboot$'
ok

case_start
run triplefault microvm "-m 64M" "exit=triplefault"
want_rc 0
want '^KHYVE-INFO exit triplefault$'
grep -q 'Triple fault' "$work/qemu.log" || fail "qemu saw no triple fault"
ok

# 7. The guest reports failures: a bad option is a FAIL and status 3.
case_start
run badopt microvm "-m 64M" "tests=serial nosuchoption=1"
want_rc 3
want '^KHYVE-TEST cmdline FAIL bad=nosuchoption=1 '
want '^KHYVE-GUEST done pass=1 fail=1$'
ok

# 8. virtio drivers: virtio-blk (modern-only and transitional, read-only)
# and virtio-rng on -M pc; the host checks what the guest wrote.
python3 -c "open('$work/disk.img','wb').write(bytes(range(256))*256)" &&
	truncate -s 4M "$work/disk.img"
for legacy in on off; do
	case_start
	run "vblk-legacy-$legacy" pc "-m 128M -drive file=$work/disk.img,if=none,id=d0,format=raw
		-device virtio-blk-pci,drive=d0,disable-legacy=$legacy
		-device virtio-rng-pci" "tests=vblk,vrng vblk_sectors=64"
	want_rc 1
	want '^KHYVE-TEST vblk PASS op=read sectors=64 sum=0x281807f7e7d7c000 status=0$'
	want '^KHYVE-TEST vblk PASS op=write sectors=64 status=0$'
	want '^KHYVE-TEST vblk PASS op=verify sectors=64 bad=0 status=0$'
	want '^KHYVE-TEST vrng PASS '
	grep -q FAIL "$out" && fail "a FAIL line"
	ok
done
case_start
run vblk-ro pc "-m 128M -drive file=$work/disk.img,if=none,id=d0,format=raw,readonly=on
	-device virtio-blk-pci,drive=d0" "tests=vblk"
want_rc 1
want '^KHYVE-TEST vblk PASS op=ro-write sectors=64 status=1$'
ok

[ $failed -eq 0 ] && echo "check.sh: all passed"
exit $failed
