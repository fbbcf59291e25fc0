"""A hostile guest (issue 16, item 5): the fast test guest's hostile mode
(tests/guests/hostile.c) has its second vCPU write random values to every
device khyve emulates - COM1, i8042, RTC, the ACPI sleep and reset
registers, other ports, PCI configuration space of every function, the
virtio-pci BARs, the MSI-X tables and PBAs, the virtqueues (random
descriptors, rings and kicks) and the firmware area - while its first vCPU
counts and checks its memory (devices: virtio-blk, -rng, -console and,
in a network namespace of the test's own, -net on a TAP). khyve must stay up and answer, the counting
must go on, a checkpoint taken afterwards must restore into a guest that
counts on, and so must one taken in the middle of the attack (whose copy
then goes on attacking).

KHYVE_HOSTILE_SECONDS (default 6) sets how long the guest fuzzes;
KHYVE_HOSTILE_SEED replays a run (the seed is printed either way, and the
guest prints it too). make check runs the short default; the minute of
issue 16 is KHYVE_HOSTILE_SECONDS=60."""
import ctypes
import json
import os
import random
import re
import shutil
import subprocess
import time

import pytest

from conftest import GUEST, needs_kvm

pytestmark = needs_kvm

SECONDS = int(os.environ.get("KHYVE_HOSTILE_SECONDS", "6"))
TICK = re.compile(r"^KHYVE-COUNTER (\d+) tsc=\d+$", re.M)
FUZZ = re.compile(r"^KHYVE-HOSTILE (\d+) state=fuzzing ops=(\d+) ", re.M)
DONE = re.compile(r"^KHYVE-TEST hostile PASS seed=(0x[0-9a-f]+) ms=(\d+)/\d+ "
                  r"ops=(\d+) ops_per_s=(\d+) .*$", re.M)


CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def ip(*args):
    r = subprocess.run(["ip"] + list(args), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, ("ip %s" % " ".join(args), r.stderr)


class Netns:
    """A network namespace of the test's own with a TAP (up, 10.0.2.1/24)
    for the virtio-net: whatever the guest sends stays in there. Processes
    started inside `with ns:` (and their children) live in it."""

    def __init__(self):
        self.ns, self.tap = "khost%d" % os.getpid(), "khtap0"
        self.tap2 = "khtap1"
        ip("netns", "add", self.ns)
        try:
            ip("-n", self.ns, "link", "set", "lo", "up")
            ip("-n", self.ns, "tuntap", "add", self.tap, "mode", "tap")
            ip("-n", self.ns, "addr", "add", "10.0.2.1/24", "dev", self.tap)
            ip("-n", self.ns, "link", "set", self.tap, "up")
            # A second one for a second restored copy at the same time.
            ip("-n", self.ns, "tuntap", "add", self.tap2, "mode", "tap")
            ip("-n", self.ns, "link", "set", self.tap2, "up")
        except BaseException:
            self.close()
            raise

    def _setns(self, fd):
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")

    def __enter__(self):
        self.own = os.open("/proc/self/ns/net", os.O_RDONLY)
        fd = os.open("/run/netns/" + self.ns, os.O_RDONLY)
        try:
            self._setns(fd)
        finally:
            os.close(fd)

    def __exit__(self, *exc):
        try:
            self._setns(self.own)
        finally:
            os.close(self.own)

    def close(self):
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True,
                       timeout=60)


@pytest.fixture
def netns():
    """None where namespaces or TAPs are not available: the test then runs
    without a virtio-net (and says so), it is not skipped."""
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun") or \
            subprocess.run(["ip", "netns", "list"], capture_output=True,
                           timeout=60).returncode != 0:
        yield None
        return
    n = Netns()
    yield n
    n.close()


def complete(text):
    return text[:text.rfind("\n") + 1]


def ticks(text):
    return [int(m.group(1)) for m in TICK.finditer(complete(text))]


def wait_until(g, pred, timeout):
    end = time.time() + timeout
    while time.time() < end:
        out = g.read()
        if pred(out):
            return True
        if g.proc.poll() is not None:
            return pred(g.read())
        time.sleep(0.05)
    return False


def wait_tick(g, n, timeout=60):
    return wait_until(g, lambda o: ticks(o) and ticks(o)[-1] >= n, timeout)


def stderr_of(g):
    if g.proc.poll() is None:
        return "(still running)"
    return g.proc.stderr.read().decode(errors="replace")


def status_running(g):
    r = g.ctl("status", g.name, "--json")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert json.loads(r.stdout)["state"] == "running", r.stdout


def check_counting(out, first=1):
    """Ticks go 1, 2, 3, ... (from @first) and no memory check failed."""
    v = ticks(out)
    assert v and v == list(range(v[0], v[0] + len(v))), v
    assert v[0] <= first + 1, (first, v[:3])
    assert "KHYVE-MEMCHECK bad" not in out, out[-3000:]
    assert "KHYVE-GUEST exception" not in out and " FAIL" not in out, \
        out[-3000:]


def start(guest_factory, args, name, netns):
    if netns is None:
        return guest_factory(args, name=name)
    with netns:
        return guest_factory(args, name=name)


@needs_kvm
def test_hostile_guest(guest_factory, tmp_path, netns):
    seed = int(os.environ.get("KHYVE_HOSTILE_SEED", "0"), 0) or \
        random.getrandbits(63) | 1
    print("hostile guest: seed=0x%x seconds=%d" % (seed, SECONDS))
    img = str(tmp_path / "disk.img")
    with open(img, "wb") as f:
        f.truncate(4 << 20)
    snap, mid = str(tmp_path / "h.snap"), str(tmp_path / "mid.snap")
    cmdline = ("tests=smp counter interval_ms=100 check_every=10 "
               "hostile_ms=%d hostile_seed=0x%x" % (SECONDS * 1000, seed))
    devs = ["2,virtio-blk,%s" % img, "3,virtio-rng",
            "4,virtio-console,null"]
    if netns is not None:
        devs.append("5,virtio-net,%s" % netns.tap)
    else:
        print("hostile guest: no network namespace here, no virtio-net")
    args = ["-c", "2", "-m", "64M", "-k", GUEST, "-a", cmdline,
            "-l", "com1,stdio"]
    for d in devs:
        args += ["-s", d]
    g = start(guest_factory, args, "h", netns)
    setup = re.compile(r"^KHYVE-INFO hostile seed=0x%x .* fns=(\d+) "
                       r"virtio=(\d+)\n" % seed, re.M)
    assert wait_until(g, setup.search, 120), (g.read(), stderr_of(g))
    # The host bridge and every virtio function, all set up.
    assert setup.search(g.read()).groups() == (
        str(len(devs) + 1), str(len(devs))), g.read()
    # While it fuzzes: khyve answers, the other vCPU counts.
    # Halfway, a checkpoint of the guest in the middle of its attack.
    t_start = next_poll = time.time()
    polls, mid_ops = 0, None
    while not DONE.search(g.read()) and \
            time.time() - t_start < SECONDS * 4 + 60:
        assert g.proc.poll() is None, (g.read()[-3000:], stderr_of(g))
        if time.time() >= next_poll:
            status_running(g)
            polls += 1
            next_poll = time.time() + 2
        if mid_ops is None and time.time() - t_start >= SECONDS / 2:
            mid_ops = [int(o) for _, o in FUZZ.findall(complete(g.read()))]
            mid_ops = mid_ops[-1] if mid_ops else 0  # a lower bound
            r = g.ctl("checkpoint", "h", mid)
            assert r.returncode == 0, (r.stdout, r.stderr)
        time.sleep(0.05)
    out = g.read()
    m = DONE.search(out)
    assert m, ("the fuzzing never ended", out[-3000:])
    assert int(m.group(1), 16) == seed
    fuzzing = [(int(t), int(o)) for t, o in FUZZ.findall(complete(out))]
    print("hostile guest: ms=%s ops=%s ops/s=%s, %d ticks counted while "
          "fuzzing, %d status polls" % (m.group(2), m.group(3), m.group(4),
                                        len(fuzzing), polls))
    # The counter went on meanwhile: at least 2 ticks a second of fuzzing
    # (10 expected; a loaded 2-core host gives fewer), memory checks too.
    assert len(fuzzing) >= 2 * SECONDS, (len(fuzzing), out[-3000:])
    assert fuzzing[-1][1] > fuzzing[0][1], fuzzing  # the fuzzer moved
    check_counting(out)
    assert polls >= 1
    # Afterwards: still running, a checkpoint, and the guest counts on.
    t = ticks(out)[-1]
    assert wait_tick(g, t + 3, 60), (g.read()[-2000:], stderr_of(g))
    status_running(g)
    # The checkpoint is live: its moment lies between the last tick read
    # before the request and the one printed once the reply is in.
    lo = ticks(g.read())[-1]
    r = g.ctl("checkpoint", "h", snap)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert wait_tick(g, lo + 1, 60), g.read()[-2000:]
    before = ticks(g.read())[-1]
    assert wait_tick(g, before + 3, 60), g.read()[-2000:]
    check_counting(g.read())
    r = g.ctl("snapshot", "verify", snap)
    assert r.returncode == 0, r.stdout + r.stderr
    assert g.ctl("poweroff", "h", "--force").returncode == 0
    g.finish()
    assert mid_ops is not None
    # The restored wreck counts on from where the checkpoint was, and the
    # one checkpointed mid-attack (beside it, on a copy of the disk and
    # the second TAP) counts on while its fuzzing goes on to its end.
    c = start(guest_factory, ["-r", snap], "hr", netns)
    shutil.copy(img, img + ".2")
    over = ["-s", "2,virtio-blk,%s.2" % img]
    if netns is not None:
        over += ["-s", "5,virtio-net,%s" % netns.tap2]
    cm = start(guest_factory, ["-r", mid] + over, "hm", netns)
    assert wait_tick(c, before + 5, 120), (c.read()[-2000:], stderr_of(c))
    out = c.read()
    v = ticks(out)
    assert lo <= v[0] <= before + 2, (lo, before, v[:5])
    check_counting(out, v[0])
    assert wait_until(c, lambda o: re.search(
        r"^KHYVE-MEMCHECK ok (\d+)", complete(o), re.M), 60), out[-2000:]
    status_running(c)
    assert c.ctl("poweroff", "hr", "--force").returncode == 0
    c.finish()
    assert wait_until(cm, DONE.search, SECONDS * 4 + 60), \
        (cm.read()[-2000:], stderr_of(cm))
    out = cm.read()
    v = ticks(out)
    check_counting(out, v[0])
    ops = [int(o) for _, o in FUZZ.findall(complete(out))]
    # It had fuzzing time left, and went on from where it was.
    assert ops and ops[0] >= mid_ops and ops[-1] > ops[0], (mid_ops, ops)
    print("hostile guest: the copy checkpointed mid-attack (at %d accesses) "
          "fuzzed on for %d ticks, to %s" % (
              mid_ops, len(ops), DONE.search(out).group(3)))
    assert wait_tick(cm, v[-1] + 3, 60), cm.read()[-2000:]
    status_running(cm)
    assert cm.ctl("poweroff", "hm", "--force").returncode == 0
    cm.finish()
