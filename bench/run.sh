#!/bin/sh
# Start-up benchmark: time from exec to the fast test guest's first console
# line, khyve vs QEMU (-M microvm and -M pc) with -accel kvm, medians of
# several runs, plus khyve's own RSS beyond guest memory.
# Needs /dev/kvm: without it nothing here can be measured, and it says so.
set -e
cd "$(dirname "$0")/.."
if ! [ -r /dev/kvm ] || ! [ -w /dev/kvm ]; then
	echo "bench: /dev/kvm is not usable on this host; no figures can be measured" >&2
	exit 2
fi
exec /usr/bin/python3 bench/startup.py "$@"
