#!/bin/sh
# The README's first command: install dependencies, build, prepare a fast
# test guest and boot it under khyve with a visible workload.
set -e
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh
make -j"$(nproc)"
echo "== booting the fast test guest (serial, memory, timer, smp tests) =="
exec build/khyve -c 2 -m 256M -k build/guests/testguest.elf \
	-a "tests=serial,mem,timer,smp" -l com1,stdio quickstart
