"""Save and restore judged by Linux: the project's kernel (guest/linux) is
suspended mid-boot, while its test module's counter, memory checks and
block I/O run, then restored; it must finish booting to the same
milestones and its workloads must go on from where they stopped.

One boot per run (module-scoped fixtures); the restore replaces the
second half of a second boot. With root and /dev/net/tun the guest also
has a virtio-net on a TAP in a network namespace and sends its log to the
host with netconsole, before and after the restore.
"""
import os
import re
import subprocess
import time
import zlib

import pytest

from conftest import KHYVECTL, KVM_SOFTWARE, needs_kvm
from test_linux import (BOOT_TIMEOUT, netconsole_setup, project_boot_setup,
                        run_console)

pytestmark = needs_kvm

SUSPEND_EXIT = 5  # khyve(8): the guest was suspended to a snapshot
# The counter line at which the guest is suspended: the test module has
# started (late initcall) but its 12 s of work are far from over.
SUSPEND_AT = 2


def counters(text):
    return [int(x) for x in re.findall(r"khyve_test: counter (\d+) ", text)]


@pytest.fixture(scope="module")
def linux_snap(tmp_path_factory):
    # 1 vCPU here, 2 in test_linux.py: both boot once per run.
    # The module's run time counts from its start; on kvm_pvm its memory
    # fill alone takes ~15 s, so the guest gets longer to be mid-boot in.
    d, disk, args, cmd = project_boot_setup(tmp_path_factory, "linux-snap",
                                            40 if KVM_SOFTWARE else 12,
                                            cpus=1)
    snap = os.path.join(d, "linux.snap")
    res = {"disk": disk, "snap": snap}
    lab, nargs, nopts, wrap = netconsole_setup(d, "lsnap", res, dhcp=False)
    args += nargs
    cmd += nopts

    # With the network, once netconsole has sent two counter lines too.
    # And once the memcheck pattern is filled, so the restored guest
    # checks memory written before the suspend.
    def suspend_at(text):
        i = text.find("netconsole: network logging started") if lab else 0
        c = counters(text[i:]) if i >= 0 else []
        return (len(c) >= 2 and c[-1] >= SUSPEND_AT and
                "khyve_test: memcheck filled" in text)

    def do_suspend():
        r = subprocess.run([KHYVECTL, "--rundir", os.path.join(d, "run"),
                            "suspend", "lsnap", snap, "--json"],
                           capture_output=True, text=True, timeout=300)
        res["suspend"] = r

    try:
        out1, rc1 = run_console(
            args + ["-a", cmd, "lsnap"], r"reboot: Power down|Kernel panic",
            BOOT_TIMEOUT, d, wrap=wrap,
            hooks=[(suspend_at, do_suspend)])
        res["out1"], res["rc1"] = out1, rc1
        if lab:
            time.sleep(0.5)
            res["netlog1"] = open(res["netlog"], errors="replace").read()
        if rc1 == SUSPEND_EXIT:
            t0 = time.time()
            out2, rc2 = run_console(["-r", snap, "lsnap2"],
                                    r"reboot: Power down|Kernel panic",
                                    BOOT_TIMEOUT, d, wrap=wrap)
            res["restore_s"] = time.time() - t0
            res["out2"], res["rc2"] = out2, rc2
            if lab:
                time.sleep(1)  # the last netconsole datagrams
                res["netlog2"] = open(res["netlog"],
                                      errors="replace").read()
    finally:
        if lab:
            lab.close()
    return res


def _restored(s):
    assert "suspend" in s, "never reached counter %d:\n%s" % (
        SUSPEND_AT, s["out1"][-3000:])
    r = s["suspend"]
    assert r.returncode == 0, r.stdout + r.stderr
    assert s["rc1"] == SUSPEND_EXIT, (s["rc1"], s["out1"][-3000:])
    assert "out2" in s
    return s["out2"]


def test_linux_suspended_mid_boot(linux_snap):
    s = linux_snap
    _restored(s)
    out1 = s["out1"]
    c = counters(out1)
    assert c and c[-1] >= SUSPEND_AT, out1[-3000:]
    # Mid-boot: the test module had not finished when it was suspended.
    assert "khyve_test: all tests done" not in out1, out1[-3000:]
    assert "reboot: Power down" not in out1


def test_linux_one_vcpu(linux_snap):
    s = linux_snap
    out = s["out1"] + s.get("out2", "")
    assert "smpboot: Allowing 1 CPUs" in out, out[-3000:]
    assert re.search(r"Brought up 1 node, 1 CPU\b", out), out[-3000:]
    m = re.search(r"Memory: (\d+)K/(\d+)K available", out)
    assert m and 250 * 1024 <= int(m.group(2)) <= 256 * 1024, out[-3000:]


def test_linux_restored_finishes_booting(linux_snap):
    s = linux_snap
    out2 = _restored(s)
    full = s["out1"] + out2
    # The milestones of an uninterrupted boot (test_linux.py), each once.
    for m in (r"EXT4-fs \(vda\): mounted filesystem",
              r"Run /sbin/init as init process",
              r"khyve_test: all tests done, 0 failures",
              r"reboot: Power down"):
        assert len(re.findall(m, full)) == 1, (m, out2[-3000:])
    assert "Kernel panic" not in full and "BUG:" not in full, out2[-3000:]
    assert "Oops" not in full, out2[-3000:]
    assert s["rc2"] == 1, "khyve -r exit status %r (1 = powered off)" % \
        s["rc2"]


def test_linux_counter_continues_after_restore(linux_snap):
    s = linux_snap
    out2 = _restored(s)
    before, after = counters(s["out1"]), counters(out2)
    assert after, out2[-3000:]
    # Goes on from where it stopped, not from zero, and nothing repeats
    # beyond the line that was being printed when it was suspended.
    assert before[-1] <= after[0] <= before[-1] + 2, (before, after[:5])
    assert after == list(range(after[0], after[0] + len(after))), after
    assert len(after) >= 3, after


def test_linux_memcheck_after_restore(linux_snap):
    s = linux_snap
    out2 = _restored(s)
    rounds = [int(x) for x in re.findall(r"khyve_test: memcheck ok (\d+)",
                                         out2)]
    assert rounds, out2[-3000:]
    assert "memcheck BAD" not in s["out1"] + out2
    # The pattern was filled before the suspend and checked after it.
    assert re.search(r"khyve_test: memcheck filled", s["out1"]), \
        s["out1"][-3000:]
    assert not re.search(r"khyve_test: memcheck filled", out2), out2[-3000:]


def test_linux_disk_after_restore(linux_snap):
    s = linux_snap
    out2 = _restored(s)
    full = s["out1"] + out2
    assert not re.search(r"khyve_test: file \S+ BAD", full), full[-3000:]
    assert re.search(r"khyve_test: blk: \d+ files ok, 0 bad", full), \
        full[-3000:]
    r = subprocess.run(["e2fsck", "-fn", s["disk"]], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"khyve_test: wrote (\S+) size (\d+) crc32 ([0-9a-f]+)",
                  full)
    assert m, full[-3000:]
    dump = s["disk"] + ".guest.bin"
    r = subprocess.run(["debugfs", "-R", "dump %s %s" % (m.group(1), dump),
                        s["disk"]], capture_output=True, text=True,
                       timeout=120)
    assert os.path.isfile(dump), r.stderr
    data = open(dump, "rb").read()
    assert len(data) == int(m.group(2))
    assert zlib.crc32(data) & 0xffffffff == int(m.group(3), 16)


def test_linux_netconsole_flows_after_restore(linux_snap):
    s = linux_snap
    if not s["net"]:
        pytest.skip(s["net_why"])
    out2 = _restored(s)
    before = counters(s["netlog1"])
    assert before, s["netlog1"][-2000:]
    got = s["netlog2"][len(s["netlog1"]):]
    after = counters(got)
    # The restored guest's virtio-net, on the same TAP, keeps sending.
    assert after and after[0] >= before[-1], (before, after[:5])
    assert after[-1] == counters(out2)[-1], (after[-3:], counters(out2)[-3:])
    assert "khyve_test: all tests done, 0 failures" in got, got[-2000:]
