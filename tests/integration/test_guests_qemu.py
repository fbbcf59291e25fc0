"""The fast test guests pass their own self-checks under QEMU (TCG).

This checks the guests themselves (the yardstick khyve is measured with),
independently of khyve and of /dev/kvm."""
import os
import subprocess

import pytest

from conftest import ROOT


@pytest.mark.skipif(os.environ.get("KHYVE_NESTED") == "1",
                    reason="host-only check (QEMU inside the nested machine is too slow)")
def test_guest_modes_under_qemu_tcg():
    r = subprocess.run(["sh", os.path.join(ROOT, "tests/guests/check.sh")],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    if r.returncode == 77:
        pytest.skip("qemu-system-x86_64 not installed")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
