"""Soak with the Linux guest (issue 16; docs/reliability.md "Soak"):
KHYVE_SOAK_LINUX_CYCLES suspend/restore cycles of the project kernel
while its workloads run and judge themselves. Off unless that variable
is set (each cycle costs tens of seconds on kvm_pvm, the boot minutes):

    KHYVE_SOAK_LINUX_CYCLES=10 python3 -m pytest -q -s -p no:cacheprovider \
        tests/integration/test_linux_soak.py

The guest (as test_linux_snapshot.py boots it, one vCPU): the test
module's counter and 4 MiB memory check in the kernel, and in user space
pvmload - a memory pattern checked every tick, a file on the virtio-blk
root appended to, fdatasync'd and read back whole every tick, and a TCP
connection to a server on the host side of the TAP, one numbered line a
tick - while pvmcheck's rounds keep forking, exec'ing and blocking
processes. A cycle: `khyvectl suspend`, a new khyve restores the file,
and pvmload must print two more ticks, each with mem, file and tcp ok and
the numbers going on from before the suspend. khyve's descriptors (fds)
must be the same in every cycle after the first two; RSS, save and
restore times are printed. Needs root and /dev/net/tun (pvmload runs
only with its server).
"""
import json
import os
import re
import subprocess
import time

import pytest

from conftest import KHYVE, KHYVECTL, needs_kvm
from test_linux import BOOT_TIMEOUT, KMSG, netconsole_setup, \
    project_boot_setup
from test_linux_snapshot import TICK

CYCLES = int(os.environ.get("KHYVE_SOAK_LINUX_CYCLES", "0"))
WARMUP = 2

pytestmark = [needs_kvm, pytest.mark.skipif(
    CYCLES <= 0, reason="KHYVE_SOAK_LINUX_CYCLES not set (minutes per "
    "cycle batch on kvm_pvm)")]


class Vm:
    """A khyve with the Linux console on a pipe, in the lab's namespace."""

    def __init__(self, wrap, rundir, args, name):
        self.name, self.rundir = name, rundir
        # The whole console, for a failure's full story.
        self.log = os.path.join(os.path.dirname(rundir), name + ".console")
        self.proc = subprocess.Popen(
            list(wrap) + [KHYVE, "--rundir", rundir] + args + [name],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.out = b""

    def text(self):
        try:
            d = self.proc.stdout.read()
        except (BlockingIOError, ValueError):
            d = None
        if d:
            self.out += d
            with open(self.log, "ab") as f:
                f.write(d)
        return self.out.decode(errors="replace").replace("\r", "")

    def ticks(self):
        return TICK.findall(self.text())

    def wait_ticks(self, after, count, timeout):
        """@count pvmload ticks numbered above @after, all ok; returns
        the seconds from now to the first of them."""
        t0 = time.time()
        first = None
        while time.time() < t0 + timeout:
            text = self.text()
            bad = re.findall(KMSG + r"(?:memcheck BAD|Kernel panic|"
                             r"KHYVE-LOAD .*BAD).*$", text, re.M)
            assert not bad, (bad, text[-3000:])
            new = [t for t in TICK.findall(text) if int(t[0]) > after]
            if new and first is None:
                first = time.time() - t0
            if len(new) >= count:
                for t in new:
                    assert (t[1], t[3], t[5]) == ("ok", "ok", "ok"), t
                return first
            assert self.proc.poll() is None, text[-3000:]
            time.sleep(0.1)
        raise AssertionError("no %d pvmload ticks after %d in %d s (whole "
                             "console: %s):\n%s"
                             % (count, after, timeout, self.log,
                                self.text()[-3000:]))

    def sample(self):
        pid = self.proc.pid  # ip netns exec execs khyve in its place
        fds = len(os.listdir("/proc/%d/fd" % pid))
        with open("/proc/%d/status" % pid) as f:
            rss = int(re.search(r"^VmRSS:\s+(\d+)", f.read(), re.M).group(1))
        return fds, rss

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(15)


def test_linux_soak(tmp_path_factory):
    d, disk, args, cmd = project_boot_setup(tmp_path_factory, "linux-soak",
                                            100000, cpus=1)
    # pvmcheck's rounds keep user space busy; its last would stop pvmload.
    cmd += " pvmcheck.rounds=100000 pvmload.mem_mb=4"
    res = {}
    lab, nargs, nopts, wrap = netconsole_setup(d, "lsoak", res, dhcp=False,
                                               load=True)
    if not lab:
        pytest.skip(res["net_why"])
    args += nargs
    cmd += nopts
    rundir = os.path.join(d, "run")
    snap = os.path.join(d, "soak.snap")
    vm = None
    rows = []
    try:
        vm = Vm(wrap, rundir, args + ["-a", cmd], "ls0")
        vm.wait_ticks(-1, 2, max(BOOT_TIMEOUT, 1800))
        for i in range(1, CYCLES + 1):
            r = subprocess.run([KHYVECTL, "--rundir", rundir, "suspend",
                                vm.name, snap, "--json"],
                               capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, r.stderr
            save_ms = json.loads(r.stdout)["total_ms"]
            assert vm.proc.wait(60) == 5, vm.text()[-3000:]
            saved = int(vm.ticks()[-1][0])
            vm = Vm(wrap, rundir, ["-r", snap], "ls%d" % i)
            first_s = vm.wait_ticks(saved, 2, 600)
            ticks = [int(t[0]) for t in vm.ticks()]
            assert ticks[0] <= saved + 1, (saved, ticks)
            fds, rss = vm.sample()
            rows.append(dict(cycle=i, fds=fds, rss=rss, save_ms=save_ms,
                             first_tick_s=first_s, at_tick=ticks[-1]))
    finally:
        if vm:
            subprocess.run([KHYVECTL, "--rundir", rundir, "poweroff",
                            vm.name, "--force"], capture_output=True,
                           timeout=60)
            vm.kill()
        lab.close()
    print("\nLinux soak (load %.1f)" % os.getloadavg()[0])
    print("| cycle | fds | RSS KiB | save ms | restore to next tick s | "
          "pvmload tick |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| %d | %d | %d | %.0f | %.1f | %d |" % (
            r["cycle"], r["fds"], r["rss"], r["save_ms"], r["first_tick_s"],
            r["at_tick"]))
    steady = rows[WARMUP:]
    if steady:
        moved = [(r["cycle"], r["fds"]) for r in steady
                 if r["fds"] != steady[0]["fds"]]
        assert not moved, moved
