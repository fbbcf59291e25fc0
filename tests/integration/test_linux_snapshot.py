"""Save and restore judged by Linux: the project's kernel (guest/linux) is
suspended mid-boot, while its test module's counter, memory checks and
block I/O run, then restored; it must finish booting to the same
milestones and its workloads must go on from where they stopped.

The restored guest then runs user space, and is suspended and restored
twice more in the middle of the rootfs's pvmcheck (guest/linux/pvmcheck.c),
each time while 16 of its processes sit inside system calls: every area
must still pass in the rounds after. Beside it runs pvmload
(guest/linux/pvmload.c), a workload that judges itself: a memory pattern,
a file it keeps appending to on the virtio-blk root and a TCP connection
to a server on the host side of the TAP, each checked and numbered every
tick; after each restore the same memory, file and connection must carry
on with the next number.

One boot per run (module-scoped fixture); each restore replaces the rest
of the run before it. With root and /dev/net/tun the guest has a
virtio-net on a TAP in a network namespace that lives across all of them
(netconsole to the host, the TCP servers); without, the network parts
skip.
"""
import os
import re
import subprocess
import time
import zlib

import pytest

import netlab
from conftest import KHYVECTL, KVM_SOFTWARE, needs_kvm
from test_linux import (AREAS, BOOT_TIMEOUT, KMSG, netconsole_setup,
                        project_boot_setup, pvmcheck_areas, run_console)

pytestmark = needs_kvm

SUSPEND_EXIT = 5  # khyve(8): the guest was suspended to a snapshot
# The counter line at which the guest is suspended: the test module has
# started (late initcall) but its 12 s of work are far from over.
SUSPEND_AT = 2
# pvmcheck's rounds. The restored guest is suspended again at the first
# "round K blocked" line it prints and once more at the next, each time
# while its 16 children are parked in system calls (held there HOLD_MS of
# guest time: the suspend must land inside). The blocked area comes first
# in a round, so the rest of round K runs after the restore. Three rounds
# leave one to spare: on a loaded kvm_pvm host the mid-boot suspend (after
# the kernel's memcheck fill) can come after user space began.
ROUNDS, HOLD_MS = 3, 8000
BLOCKED = re.compile(r"KHYVE-PVMCHECK round (\d+) blocked")


def last_blocked(text):
    """The round of the last "round K blocked" line in @text, or None."""
    m = BLOCKED.findall(text)
    return int(m[-1]) if m else None
PVMLOAD_MB = 4


def counters(text):
    return [int(x) for x in re.findall(r"khyve_test: counter (\d+) ", text)]


@pytest.fixture(scope="module")
def linux_snap(tmp_path_factory):
    # 1 vCPU here, 2 in test_linux.py: both boot once per run.
    # The module's run time counts from its start; on kvm_pvm its memory
    # fill alone takes ~15 s (minutes on a loaded host, with user space
    # sharing the one vCPU), so the counter runs long enough there to be
    # seen on both sides of the mid-boot suspend. It costs no time: user
    # space (pvmcheck's rounds) decides when the guest powers off.
    d, disk, args, cmd = project_boot_setup(tmp_path_factory, "linux-snap",
                                            300 if KVM_SOFTWARE else 12,
                                            cpus=1)
    cmd += " pvmcheck.rounds=%d pvmcheck.hold_ms=%d pvmload.mem_mb=%d" % (
        ROUNDS, HOLD_MS, PVMLOAD_MB)
    res = {"disk": disk, "segs": []}
    lab, nargs, nopts, wrap = netconsole_setup(d, "lsnap", res, dhcp=False,
                                               load=True)
    args += nargs
    cmd += nopts

    # With the network, once netconsole has sent two counter lines too.
    # And once the memcheck pattern is filled, so the restored guest
    # checks memory written before the suspend.
    def mid_boot(text):
        i = text.find("netconsole: network logging started") if lab else 0
        c = counters(text[i:]) if i >= 0 else []
        return (len(c) >= 2 and c[-1] >= SUSPEND_AT and
                "khyve_test: memcheck filled" in text)

    # Run 0 boots; runs 1 and 2 are restores suspended again once a
    # round's children are parked (in the run's own output) and, with the
    # network, pvmload has ticked (its first connect of the boot costs
    # ~20 s of emulated RNG on kvm_pvm), so its connection lives across
    # both; run 3 is restored and powers off.
    def parked(text):
        # run_console gives hooks the raw text: CR LF line ends.
        text = text.replace("\r", "")
        seen = "".join(g["out"] for g in res["segs"]) + text
        k = last_blocked(text)
        return (k is not None and
                "KHYVE-PVMCHECK round %d released" % k not in text and
                (not lab or TICK.search(seen) is not None))

    suspend_when = [mid_boot, parked, parked, None]
    try:
        for i, when in enumerate(suspend_when):
            seg = {"name": "lsnap" if i == 0 else "lsnap%d" % (i + 1),
                   "snap": os.path.join(d, "linux%d.snap" % i)}

            def do_suspend(seg=seg):
                seg["suspend"] = subprocess.run(
                    [KHYVECTL, "--rundir", os.path.join(d, "run"),
                     "suspend", seg["name"], seg["snap"], "--json"],
                    capture_output=True, text=True, timeout=300)

            start = (args + ["-a", cmd] if i == 0 else
                     ["-r", res["segs"][-1]["snap"]])
            t0 = time.time()
            seg["out"], seg["rc"] = run_console(
                start + [seg["name"]], r"reboot: Power down|Kernel panic",
                BOOT_TIMEOUT, d, wrap=wrap,
                hooks=[(when, do_suspend)] if when else [])
            seg["wall_s"] = time.time() - t0
            seg["round"] = last_blocked(seg["out"]) if i in (1, 2) else None
            res["segs"].append(seg)
            if i == 0 and lab:
                time.sleep(0.5)
                res["netlog1"] = open(res["netlog"], errors="replace").read()
            if seg["rc"] != SUSPEND_EXIT:
                break
        if lab:
            time.sleep(1)  # the last netconsole datagrams
            res["netlog2"] = open(res["netlog"], errors="replace").read()
    finally:
        if lab:
            lab.close()
    segs = res["segs"]
    # The first run and the suspend in it; everything after, joined.
    res["out1"], res["rc1"] = segs[0]["out"], segs[0]["rc"]
    if "suspend" in segs[0]:
        res["suspend"] = segs[0]["suspend"]
    if len(segs) > 1:
        res["out2"] = "".join(s["out"] for s in segs[1:])
        res["rc2"] = segs[-1]["rc"]
    return res


def _restored(s):
    assert "suspend" in s, "never reached counter %d:\n%s" % (
        SUSPEND_AT, s["out1"][-3000:])
    r = s["suspend"]
    assert r.returncode == 0, r.stdout + r.stderr
    assert s["rc1"] == SUSPEND_EXIT, (s["rc1"], s["out1"][-3000:])
    assert "out2" in s
    return s["out2"]


def _user_space_runs(s):
    """The four runs: booted, restored twice in user space and suspended
    in it, restored to power off. Fails saying where it stopped."""
    _restored(s)
    segs = s["segs"]
    for i in (1, 2):
        assert len(segs) > i + 1, ("run %d was not suspended" % i,
                                   segs[-1]["out"][-3000:])
        r = segs[i]["suspend"]
        assert r.returncode == 0, r.stdout + r.stderr
        assert segs[i]["rc"] == SUSPEND_EXIT, (segs[i]["rc"],
                                               segs[i]["out"][-3000:])
    assert len(segs) == 4, [g["rc"] for g in segs]
    return segs


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
    before, after = counters(s["out1"]), counters(s["segs"][1]["out"])
    assert after, out2[-3000:]
    # Goes on from where it stopped, not from zero, and nothing repeats
    # beyond the line that was being printed when it was suspended.
    assert before[-1] <= after[0] <= before[-1] + 2, (before, after[:5])
    assert after == list(range(after[0], after[0] + len(after))), after
    assert len(after) >= 3, after
    # The same at the later suspends, where the counter still ran then.
    segs = s["segs"]
    for i in range(2, len(segs)):
        prev, nxt = counters(segs[i - 1]["out"]), counters(segs[i]["out"])
        if prev and nxt:
            assert prev[-1] <= nxt[0] <= prev[-1] + 2, (i, prev[-3:],
                                                        nxt[:3])
            assert nxt == list(range(nxt[0], nxt[0] + len(nxt))), (i, nxt)


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


def test_linux_user_space_suspended_twice_mid_check(linux_snap):
    """pvmcheck, suspended in one round and again in the next, each time
    while its 16 children were inside read, nanosleep and write: the
    restored guest releases them and they all finish with the right data,
    and every area passes in every round, all but "blocked" of those two
    rounds run after their restore."""
    s = linux_snap
    segs = _user_space_runs(s)
    k1, k2 = segs[1]["round"], segs[2]["round"]
    assert k1 and k2 == k1 + 1 <= ROUNDS, (k1, k2)
    for k, before, after in ((k1, segs[1], segs[2]), (k2, segs[2], segs[3])):
        # Suspended after pvmcheck saw all 16 inside their calls and
        # before it let them go.
        assert "KHYVE-PVMCHECK round %d blocked 16/16 children in system " \
            "calls" % k in before["out"], before["out"][-3000:]
        released = "KHYVE-PVMCHECK round %d released" % k
        assert released not in before["out"], before["out"][-3000:]
        assert released in after["out"], after["out"][-3000:]
        areas = pvmcheck_areas(after["out"])
        assert areas.get((k, "blocked"), ("missing",)) == \
            ("PASS", "parked=16 finished=16/16"), after["out"][-3000:]
        # The rest of the round ran after the restore, and passed.
        for area in AREAS:
            want = "PASS" if area != "sockets" or s["net"] else "SKIP"
            assert areas.get((k, area), ("missing",))[0] == want, \
                (k, area, areas.get((k, area)), after["out"][-3000:])
    full = "".join(g["out"] for g in segs)
    got = pvmcheck_areas(full)
    for r in range(1, ROUNDS + 1):
        for area in AREAS:
            want = "PASS" if area != "sockets" or s["net"] else "SKIP"
            assert got.get((r, area), ("missing",))[0] == want, \
                (r, area, got.get((r, area)), full[-3000:])
    assert "KHYVE-PVMCHECK done rounds=%d fail=0" % ROUNDS in \
        segs[3]["out"], segs[3]["out"][-3000:]
    fails = re.findall(r"KHYVE-PVMCHECK .*\bFAIL\b.*", full)
    assert not fails, fails
    if s["net"]:
        # One connection per round, each with all its lines echoed.
        log = open(s["srvlog"]).read()
        assert re.findall(r"^close \d+ (\d+)$", log, re.M) == \
            ["16"] * ROUNDS, log


def splitmix64(x):
    m = (1 << 64) - 1
    x = (x + 0x9e3779b97f4a7c15) & m
    x = ((x ^ (x >> 30)) * 0xbf58476d1ce4e5b9) & m
    x = ((x ^ (x >> 27)) * 0x94d049bb133111eb) & m
    return x ^ (x >> 31)


def pvmload_record(seq):
    """Record @seq of /khyve/pvmload.log, as pvmload.c writes it."""
    r = b"seq %010d sum %08x " % (seq, splitmix64(0x6b687976 ^ seq) &
                                   0xffffffff)
    return r + b"." * (63 - len(r)) + b"\n"


TICK = re.compile(KMSG + r"KHYVE-LOAD tick=(\d+) mem=(\S+) sum=([0-9a-f]+) "
                  r"file=(\S+) fseq=(\d+) tcp=(\S+) tseq=(\d+)$", re.M)


def test_linux_workload_judges_itself_across_restores(linux_snap):
    """pvmload, running through both suspends in user space: after each
    restore its memory still holds the pattern (same checksum, as the
    host computes it), its file goes on with the next record and reads
    back whole, and its one TCP connection is still alive with the next
    line number, on the server that stayed up on the host side of the
    TAP. After power-off the file on the image holds every record."""
    s = linux_snap
    if not s["net"]:
        pytest.skip(s["net_why"])
    segs = _user_space_runs(s)
    # Joined, so a line the suspend cut in two is whole again.
    full = "".join(g["out"] for g in segs)
    m = re.findall(KMSG + r"KHYVE-LOAD start mem_mb=%d sum=([0-9a-f]+) "
                   r"file=open server=\S+ connected=1$" % PVMLOAD_MB, full,
                   re.M)
    assert len(m) == 1, full[-3000:]
    words = (PVMLOAD_MB << 20) // 8
    h = 0xcbf29ce484222325
    for i in range(words):
        h = ((h ^ splitmix64(i)) * 0x100000001b3) & ((1 << 64) - 1)
    assert int(m[0], 16) == h, (m[0], "%016x" % h)
    ticks = TICK.findall(full)
    assert ticks, full[-3000:]
    for t in ticks:
        assert (t[1], t[3], t[5]) == ("ok", "ok", "ok"), t
        assert int(t[2], 16) == h, t
    n = [int(t[0]) for t in ticks]
    # No tick lost or repeated across the suspends; the file's sequence
    # and the connection's line count go on with it.
    assert n == list(range(len(n))), n
    assert [int(t[4]) for t in ticks] == n
    assert [int(t[6]) for t in ticks] == [x + 1 for x in n]
    # It ran before and after each suspend in user space.
    assert TICK.search(segs[0]["out"] + segs[1]["out"]), \
        segs[1]["out"][-3000:]
    for i in (2, 3):
        assert len(TICK.findall(segs[i]["out"])) >= 2, \
            (i, segs[i]["out"][-3000:])
    done = re.findall(KMSG + r"KHYVE-LOAD done ticks=(\d+) bad=(\d+)$",
                      segs[3]["out"], re.M)
    assert done == [(str(len(n)), "0")], (done, segs[3]["out"][-3000:])
    # The server saw one connection, all its lines in order, closed at
    # the end by pvmload itself.
    log = open(s["loadlog"]).read()
    assert re.findall(r"^open (\d+) (\S+):\d+$", log, re.M) == \
        [("1", netlab.GUEST_IP)], log
    assert [int(x) for x in re.findall(r"^line 1 (\d+)$", log, re.M)] == \
        list(range(1, len(n) + 1)), log
    assert re.findall(r"^close 1 (\d+)$", log, re.M) == [str(len(n))], log
    # The file as the guest left it on the image (clean: e2fsck in
    # test_linux_disk_after_restore).
    dump = s["disk"] + ".pvmload.log"
    r = subprocess.run(["debugfs", "-R", "dump /khyve/pvmload.log %s" % dump,
                        s["disk"]], capture_output=True, text=True,
                       timeout=120)
    assert os.path.isfile(dump), r.stderr
    data = open(dump, "rb").read()
    assert data == b"".join(pvmload_record(i) for i in range(len(n))), \
        (len(data), data[-130:])
