#!/bin/sh
# Runs every unit-test binary given and prints one closing line:
# "N passed, N failed" summed over all of them.
passed=0
failed=0
for t in "$@"; do
	out=$("$t" 2>&1)
	rc=$?
	line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n 1)
	if [ -z "$line" ] || [ $rc -ne 0 ]; then
		printf '%s\n' "$out"
		echo "FAIL: $t (exit $rc)"
	fi
	if [ -n "$line" ]; then
		p=${line%% passed*}
		f=${line#*passed, }
		f=${f%% failed*}
		passed=$((passed + p))
		failed=$((failed + f))
	fi
	[ $rc -ne 0 ] && [ -z "$line" ] && failed=$((failed + 1))
done
echo "unit: $passed passed, $failed failed"
[ $failed -eq 0 ]
