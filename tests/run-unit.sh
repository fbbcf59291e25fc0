#!/bin/sh
# Runs every unit-test binary given and prints one closing line:
# "unit: N passed, N failed, N skipped" summed over all of them.
#
# A binary passes only if it exits 0 AND printed its summary
# "N passed, N failed, N skipped" with 0 failed. Anything else is a
# failure: a crash or a sanitizer report after the summary (LeakSanitizer
# runs at exit, after main returned), a missing summary (an early exit(0)).
# Its SKIP lines (unit.h) are printed and counted whatever the outcome.
passed=0
failed=0
skipped=0
bad=""
for t in "$@"; do
	out=$("$t" 2>&1)
	rc=$?
	sum='^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$'
	line=$(printf '%s\n' "$out" | grep -E "$sum" | tail -n 1)
	printf '%s\n' "$out" | grep '^SKIP: ' | sed "s|^|$(basename "$t"): |"
	p=0 f=0 s=0
	if [ -n "$line" ]; then
		read -r p _ f _ s _ <<-EOF
		$line
		EOF
	fi
	passed=$((passed + p))
	skipped=$((skipped + s))
	why=""
	if [ $rc -ne 0 ]; then
		why="exit status $rc"
	elif [ -z "$line" ]; then
		why="no summary line"
	fi
	if [ -n "$why" ] || [ "$f" -ne 0 ]; then
		printf '%s\n' "$out"
		echo "FAIL: $t (${why:-$f failed checks})"
		bad="$bad $(basename "$t")"
		# Its failed checks, or 1 if it failed in another way.
		[ "$f" -gt 0 ] && failed=$((failed + f)) || failed=$((failed + 1))
	fi
done
echo "unit: $passed passed, $failed failed, $skipped skipped"
[ -n "$bad" ] && echo "unit: FAILED:$bad"
[ $failed -eq 0 ] && [ -z "$bad" ]
