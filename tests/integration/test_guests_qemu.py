"""The fast test guests pass their own self-checks under QEMU (TCG).

This checks the guests themselves (the yardstick khyve is measured with),
independently of khyve and of /dev/kvm."""
import os
import shutil
import subprocess

import pytest

from conftest import GUEST, KVM_OK, KVM_WHY, ROOT, verdict


@pytest.mark.skipif(os.environ.get("KHYVE_NESTED") == "1",
                    reason="host-only check (QEMU inside the nested machine is too slow)")
def test_guest_modes_under_qemu_tcg():
    # Each QEMU run inside is bounded by 60 s (CHECK_TIMEOUT); all of
    # them take ~10 s on a 2-CPU kvm_pvm host: 400 s, within the stage.
    r = subprocess.run(["sh", os.path.join(ROOT, "tests/guests/check.sh")],
                       capture_output=True, text=True, timeout=400, cwd=ROOT)
    if r.returncode == 77:
        pytest.skip("qemu-system-x86_64 not installed")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


@pytest.mark.skipif(os.environ.get("KHYVE_NESTED") == "1",
                    reason="host-only check (QEMU inside the nested machine is too slow)")
@pytest.mark.parametrize("cpus", [1, 2])
def test_guest_self_checks_under_qemu_kvm(cpus):
    """The same guest under QEMU on this host's KVM (hardware or kvm_pvm):
    the yardstick is correct on any x86 KVM, not only under khyve."""
    if not KVM_OK:
        pytest.skip(KVM_WHY or "no KVM")
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 not installed")
    r = subprocess.run(["qemu-system-x86_64", "-accel", "kvm", "-M", "microvm",
                        "-smp", str(cpus), "-m", "256M", "-kernel", GUEST,
                        "-append", "tests=serial,mem,timer,smp",
                        "-display", "none", "-serial", "stdio",
                        "-no-reboot", "-device",
                        "isa-debug-exit,iobase=0xf4"],
                       stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=120)
    verdict(r.stdout, ["serial", "mem-size", "mem-pattern", "timer", "smp"] +
            (["smp-mem"] if cpus > 1 else []))
    assert "KHYVE-TEST smp PASS cpus=%d" % cpus in r.stdout, r.stdout
