#!/bin/sh
# The README's first command: install dependencies, build, prepare a fast
# test guest and boot it under khyve with a visible workload.
set -e
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh
make -j"$(nproc)"
echo "== booting the fast test guest (serial, memory, timer, smp tests) =="
set -- build/khyve -c 2 -m 256M -k build/guests/testguest.elf \
	-a "tests=serial,mem,timer,smp" -l com1,stdio quickstart
# The project's one KVM probe (opens /dev/kvm, checks API and capabilities).
if build/khyve --probe-kvm; then
	exec "$@"
fi
# No KVM on this host (e.g. a VM without nested virtualisation): run the
# same boot on the nested KVM the test suite uses, so the guest still boots.
echo "== no usable /dev/kvm here: booting on a nested KVM (QEMU's emulator" \
     "with kvm_amd inside; slow, about a minute) =="
exec tests/nested/run.sh "$@"
