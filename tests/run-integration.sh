#!/bin/sh
# The integration stage of `make check`: the tests that boot guests.
#
# One probe decides where they run (`khyve --probe-kvm`: opens /dev/kvm,
# checks the API version and capabilities):
# - a usable KVM here (hardware, or the software kvm_pvm): the whole
#   integration suite, Linux tests included, on it, with the sanitized
#   build (KHYVE_BUILD, default build-san);
# - none: the same suite on a nested KVM under QEMU's emulator
#   (tests/nested/run.sh), tried twice, since that machine can die.
# A run that produces no result is a failure, never a pass: pytest's exit
# 5 (no tests ran), a nested run without a result twice (run.sh's 125: the
# nested kernel died; 124: its time budget ran out; 123: QEMU failed), a
# missing QEMU (77). run.sh prints why each nested run gave no result: the
# nested kernel's panic/oops/lockup lines and the test that was running.
set -u
cd "$(dirname "$0")/.."
build=${KHYVE_BUILD:-build-san}
# --durations: where the suite's time goes, in every CI log (make check must
# stay under 20 minutes on 2 cores).
pytest="/usr/bin/python3 -m pytest -q -p no:cacheprovider -rs --durations=12"
# Sanitizer reports get exit codes of their own: ASan's and UBSan's default
# (1) is also khyve's "powered off", so a report would read as success.
export ASAN_OPTIONS=${ASAN_OPTIONS:-exitcode=86:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-exitcode=87:halt_on_error=1:print_stacktrace=1}

if [ ! -x build/khyve ] || [ ! -x "$build/khyve" ]; then
	echo "integration: build/khyve or $build/khyve is not built" >&2
	exit 2
fi
# The Linux-guest tests and the rest, as two pytest runs side by side:
# the Linux ones (~13 min on kvm_pvm) mostly keep one vCPU thread busy,
# so on 2 cores the other ~5 min of tests fit beside them instead of
# after them (make check must stay under 20 minutes). Each run has its
# own --basetemp, as two pytest sessions would otherwise prune each
# other's numbered temporary directories. The Linux run's output is
# shown when both ended. KHYVE_IT_SERIAL=1 runs one pytest instead.
LINUX_TESTS="tests/integration/test_linux.py tests/integration/test_linux_snapshot.py tests/integration/test_linux_clone.py"
run_split() {
	tmp=$(mktemp -d /tmp/khyve-it.XXXXXX) || return 2
	KHYVE_BUILD=$build $pytest --basetemp="$tmp/linux" $LINUX_TESTS \
		>"$tmp/linux.log" 2>&1 &
	lpid=$!
	ignore=""
	for f in $LINUX_TESTS; do ignore="$ignore --ignore=$f"; done
	echo "-- the tests but the Linux-guest ones (those run beside them) --"
	KHYVE_BUILD=$build $pytest --basetemp="$tmp/rest" $ignore tests/integration
	rc_rest=$?
	wait $lpid
	rc_linux=$?
	echo "-- the Linux-guest tests ($LINUX_TESTS) --"
	cat "$tmp/linux.log"
	# Kept when something failed: the tests' files are evidence.
	if [ $rc_rest -eq 0 ] && [ $rc_linux -eq 0 ]; then
		rm -rf "$tmp"
	else
		echo "integration: the tests' files are kept in $tmp"
	fi
	for r in $rc_rest $rc_linux; do
		[ $r -eq 5 ] && echo "integration: FAIL: a pytest run ran no test"
	done
	echo "integration: the rest exited $rc_rest, the Linux-guest tests $rc_linux"
	[ $rc_rest -ne 0 ] && return $rc_rest
	return $rc_linux
}

if probe=$(build/khyve --probe-kvm 2>&1); then
	echo "== integration tests on this host's KVM ($probe), $build =="
	if [ "${KHYVE_IT_SERIAL:-0}" = 1 ]; then
		KHYVE_BUILD=$build $pytest tests/integration
		rc=$?
		[ $rc -eq 5 ] && echo "integration: FAIL: pytest ran no test"
		exit $rc
	fi
	run_split
	exit $?
fi
echo "== no usable KVM here ($probe):" \
     "the integration tests on nested KVM (tests/nested/run.sh) =="
rc=125
for try in 1 2; do
	KHYVE_NESTED_TIMEOUT=${KHYVE_NESTED_TIMEOUT:-600} tests/nested/run.sh \
		$pytest tests/integration
	rc=$?
	case $rc in
	123) why="QEMU failed" ;;
	124) why="the nested run's time budget ran out" ;;
	125) why="the nested KVM machine died" ;;
	*) break ;;
	esac
	echo "integration: no result (status $rc: $why; run.sh's lines above say more)"
	[ $try -eq 1 ] && echo "integration: trying once more"
done
case $rc in
0) ;;
123|124|125) echo "integration: FAIL: the nested KVM machine returned no" \
	  "result twice (last: $why); nothing was proven" ;;
77) echo "integration: FAIL: QEMU is not installed, nothing could run" ;;
5) echo "integration: FAIL: pytest ran no test" ;;
esac
exit $rc
