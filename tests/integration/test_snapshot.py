"""Save/restore of whole guests (issue 6), judged by what the guest reports.

The fast test guest's counter mode prints `KHYVE-COUNTER n tsc=..` every
interval and verifies its memory region every few ticks (`KHYVE-MEMCHECK
ok|bad`); all its state lives in guest RAM, so a restored guest must go on
from the saved n with its memory intact. Needs /dev/kvm (on hosts without
it, `make check` runs these inside tests/nested/run.sh)."""
import functools
import json
import os
import re
import select
import shutil
import socket
import subprocess
import time

import pytest

from conftest import GUEST, KHYVE, KHYVECTL, ROOT, needs_kvm


# Small and quick: 64 MiB, a tick every 50 ms, a memcheck every 5 ticks.
COUNTER = "counter interval_ms=50 check_every=5"
MEM = "64M"


def boot(guest_factory, cmdline=COUNTER, name="t", cpus=1, mem=MEM,
         extra=()):
    return guest_factory(["-c", str(cpus), "-m", mem, "-k", GUEST,
                          "-a", cmdline, "-l", "com1,stdio"] + list(extra),
                         name=name)


# Complete lines only: a save can stop the guest in the middle of printing
# a line ("KHYVE-COUNTER 1" of 13), and its restored copy then starts with
# the rest ("3 tsc=..."). With "gaps" each tick also carries the longest
# time the guest's counter loop went without running since the previous
# tick (tests/guests/user.c): the guest's own view of being stopped.
TICK = re.compile(r"^KHYVE-COUNTER (\d+) tsc=(\d+)(?: gap_us=(\d+))?$", re.M)


def complete(text):
    return text[:text.rfind("\n") + 1]


def ticks(text):
    return [int(m.group(1)) for m in TICK.finditer(complete(text))]


def tscs(text):
    return [int(m.group(2)) for m in TICK.finditer(complete(text))]


def gaps_ms(text, first, last):
    """The gaps (ms) the guest reported on ticks first..last."""
    return [int(m.group(3)) / 1000 for m in TICK.finditer(complete(text))
            if m.group(3) is not None and first <= int(m.group(1)) <= last]


def memchecks(text):
    return re.findall(r"^KHYVE-MEMCHECK (ok|bad) (\d+)\b", complete(text),
                      re.M)


def last_tick(g):
    v = ticks(g.read())
    return v[-1] if v else 0


def wait_tick(g, n, timeout=60):
    """Wait until the guest printed tick n (or later)."""
    end = time.time() + timeout
    while time.time() < end:
        if last_tick(g) >= n:
            return True
        if g.proc.poll() is not None:
            return last_tick(g) >= n
        time.sleep(0.02)
    return False


def wait_memcheck_ok_after(g, n, timeout=60):
    """A memcheck of a tick > n passed and none failed."""
    end = time.time() + timeout
    while time.time() < end:
        mc = memchecks(g.read())
        assert not [m for m in mc if m[0] == "bad"], g.read()
        if any(int(k) > n for s, k in mc if s == "ok"):
            return True
        if g.proc.poll() is not None:
            break
        time.sleep(0.05)
    return False


def ctl_json(g, *args):
    r = g.ctl(*args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def restored(guest_factory, snap, name, extra=()):
    return guest_factory(["-r", snap] + list(extra), name=name)


def suspend(g, snap):
    r = g.ctl("suspend", g.name, snap)
    assert r.returncode == 0, r.stderr
    assert g.finish() == 5, g.proc.stderr.read().decode()
    return last_tick(g)


def line_complete(g, timeout=30):
    """Read the console until it ends a line: a line the pause cut in two
    is then complete. Every byte the guest printed before a pause is in
    the pipe by the reply (the UART writes on the vCPU's own thread); only
    the cut line's rest waits for the vCPU to run again, which can take a
    while on a busy 2-CPU host: waited for, with a bound only a guest that
    stopped running reaches. What is read then is an upper bound of the
    snapshot point (the original may have gone on meanwhile), and what was
    read before the request a lower one."""
    end = time.time() + timeout
    while not g.read().endswith("\n") and time.time() < end:
        if g.proc.poll() is not None:
            break
        time.sleep(0.002)
    return g.read()


def tick_after_checkpoint(g, timeout=30):
    """The last complete tick once a line the pause cut is complete (its
    restored copy prints the rest and then the next tick, which would be 2
    ahead of the last complete line read at the reply)."""
    line_complete(g, timeout)
    return last_tick(g)


def check_continues(g, saved_tick, more=3, timeout=60, upto=None):
    """The restored guest goes on from saved_tick (from a tick between
    saved_tick and @upto, the bounds read before and after a checkpoint
    of a guest that went on), not from zero."""
    upto = saved_tick if upto is None else upto
    assert wait_tick(g, upto + more, timeout), \
        (g.read(), g.proc.stderr.read().decode() if g.proc.poll() is not None
         else "")
    vals = ticks(g.read())
    assert saved_tick <= vals[0] <= upto + 2, (saved_tick, upto, vals[:5])
    assert vals == list(range(vals[0], vals[0] + len(vals))), vals
    assert "KHYVE-MEMCHECK bad" not in g.read(), g.read()


def verify(g, snap):
    r = g.ctl("snapshot", "verify", snap)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


# ---- 1. checkpoint: the guest keeps running; a clone runs beside it ----

def check_times(g, res, wall_ms, before, after):
    """A save's reported times against measurements that are not khyve's:
    the host wall clock around the request, read by this test, and the
    guest's own view of how long it was stopped (its gap_us, on the ticks
    that can follow the pause: the first one printed after the resume is
    at most after + 1). Only bounds that hold on a loaded host: the guest
    may also be stopped for other reasons, so its gap bounds the pause
    from above, never from below. The vCPUs are held from the start of
    the pause to the start of its last phase, "resume" (they run again
    somewhere inside it: measured 5.8 ms of a 15.4 ms pause on a busy
    host, the guest saw 10.3). (The phases' sum and paused <= total are
    not checked: both hold by construction, from one clock.)"""
    assert 0 < res["total_ms"] <= wall_ms + 1, (res, wall_ms)
    assert res["paused_ms"] > 0, res
    held = res["paused_ms"] - res["phases_ms"]["resume"]
    assert wait_tick(g, after + 2), g.read()
    seen = gaps_ms(g.read(), before + 1, after + 2)
    assert seen, (before, after, g.read()[-2000:])
    # 5% and 0.5 ms for the guest's TSC calibration and the units.
    assert max(seen) >= held * 0.95 - 0.5, (res, held, seen)


@needs_kvm
def test_checkpoint_then_clone_beside_running_original(guest_factory,
                                                       tmp_path):
    snap = str(tmp_path / "c.snap")
    g = boot(guest_factory, COUNTER + " gaps")
    assert wait_tick(g, 5), g.read()
    before = last_tick(g)
    t0 = time.monotonic()
    res = ctl_json(g, "checkpoint", "t", snap)
    wall_ms = (time.monotonic() - t0) * 1000
    after = tick_after_checkpoint(g)
    for key in ("bytes", "total_ms", "paused_ms"):
        assert key in res, res
    # Bytes on disk: the sparse RAM file holds the guest's touched pages
    # (image, page tables, the 4 MiB counter region), nowhere near 64 MiB.
    assert 4 * 2**20 <= res["bytes"] < 32 * 2**20, res
    assert res["file"] == snap
    # A running guest is checkpointed live: RAM copied before the pause,
    # only what it dirtied meanwhile copied again while paused.
    assert res["live"] is True, res
    assert res["final_copy_bytes"] < 32 * 2**20, res
    assert res["final_hash_bytes"] <= 64 * 2**20, res
    # The pause accounted for phase by phase.
    assert set(res["phases_ms"]) == {"drain", "dirty_scan", "ram_copy",
                                     "ram_commit", "state", "resume"}, res
    check_times(g, res, wall_ms, before, after)
    # The original keeps running.
    assert wait_tick(g, after + 3), g.read()
    verify(g, snap)
    c = restored(guest_factory, snap, "clone")
    assert wait_tick(c, before + 3), c.read()
    vals = ticks(c.read())
    assert before <= vals[0] <= after + 1, (before, after, vals[:5])
    # Both go on, each with its memory intact.
    now = last_tick(g)
    assert wait_tick(g, now + 3), g.read()
    assert wait_memcheck_ok_after(c, vals[0]), c.read()
    assert wait_memcheck_ok_after(g, now), g.read()
    st = ctl_json(c, "status", "clone")
    assert st["state"] == "running", st
    for x in (g, c):
        assert x.ctl("poweroff", x.name, "--force").returncode == 0
        assert x.finish() == 1


# ---- 2. restore -> run -> checkpoint -> restore the second snapshot ----

@needs_kvm
def test_resave_of_mapped_restore_holds_every_page(guest_factory, tmp_path):
    """The second snapshot must contain the pages the restored guest never
    touched (they live only in the first RAM file's mapping), even when it
    is written over the very file the guest was restored from."""
    snap = str(tmp_path / "a.snap")
    # 16 MiB counter region, 4 pages rewritten per tick: most pages keep
    # the generation written at boot, i.e. only the first RAM file has them.
    cmd = COUNTER + " mem_kb=16384 dirty_pages=4"
    g = boot(guest_factory, cmd)
    assert wait_memcheck_ok_after(g, 0), g.read()
    t1 = suspend(g, snap)
    r1 = restored(guest_factory, snap, "r1")
    check_continues(r1, t1)
    # Same path: the RAM file r1 is mapped from is replaced by the save.
    tb = last_tick(r1)
    res = ctl_json(r1, "checkpoint", "r1", snap)
    t2 = tick_after_checkpoint(r1)
    assert res["bytes"] > 16 * 2**20, res
    verify(r1, snap)
    assert r1.ctl("poweroff", "r1", "--force").returncode == 0
    assert r1.finish() == 1
    r2 = restored(guest_factory, snap, "r2")
    assert wait_tick(r2, t2 + 2), r2.read()
    # The second generation goes on from the second snapshot.
    vals = ticks(r2.read())
    assert tb <= vals[0] <= t2 + 1, (tb, t2, vals[:5])
    assert vals == list(range(vals[0], vals[0] + len(vals))), vals
    assert ticks(r2.read())[0] > t1
    # The full-region memcheck is the proof: every page has its pattern.
    assert wait_memcheck_ok_after(r2, t2), r2.read()
    # r1 wrote on; r2 starts where the checkpoint was, not where r1 ended.
    assert ticks(r2.read())[0] <= t2 + 1


@needs_kvm
def test_eager_restore(guest_factory, tmp_path):
    snap = str(tmp_path / "e.snap")
    g = boot(guest_factory, COUNTER + " mem_kb=8192")
    assert wait_tick(g, 6), g.read()
    t = suspend(g, snap)
    r = restored(guest_factory, snap, "e", extra=["--eager"])
    check_continues(r, t)
    assert wait_memcheck_ok_after(r, t), r.read()
    # A second generation from an eager restore.
    t2 = suspend(r, snap)
    r2 = restored(guest_factory, snap, "e2", extra=["--eager"])
    check_continues(r2, t2)


# ---- 3. many clones; many cycles ----

@needs_kvm
def test_five_clones_at_once(guest_factory, tmp_path):
    snap = str(tmp_path / "five.snap")
    g = boot(guest_factory)
    assert wait_tick(g, 4), g.read()
    t = suspend(g, snap)
    clones = [restored(guest_factory, snap, "clone%d" % i) for i in range(5)]
    for c in clones:
        check_continues(c, t, more=3, timeout=120)
    for c in clones:
        assert c.proc.poll() is None, c.name
        assert wait_memcheck_ok_after(c, t, 120), c.read()


CYCLES = 20  # issue 6 asks for 20 consecutive cycles of one guest


@needs_kvm
def test_consecutive_save_restore_cycles(guest_factory, tmp_path):
    snap = str(tmp_path / "cyc.snap")
    # A memcheck every 2 ticks, so each short-lived generation runs some.
    g = boot(guest_factory, "counter interval_ms=50 check_every=2", name="c0")
    assert wait_tick(g, 2), g.read()
    t = suspend(g, snap)
    ts = tscs(g.read())[-1]
    checks_seen = 0
    for i in range(1, CYCLES + 1):
        g = restored(guest_factory, snap, "c%d" % i)
        check_continues(g, t, more=2)
        # The TSC never goes backwards across a restore.
        assert tscs(g.read())[0] > ts, (ts, g.read())
        checks_seen += len(memchecks(g.read()))
        t = suspend(g, snap)
        ts = tscs(g.read())[-1]
    assert t >= 2 + CYCLES * 2
    assert checks_seen >= 3  # memchecks ran (and passed) along the way


# ---- 4. bad input ----

@pytest.fixture(scope="module")
def good_snap(tmp_path_factory):
    """A suspended 1-vCPU 64 MiB counter guest with a virtio-rng in slot 3."""
    from conftest import Guest
    d = tmp_path_factory.mktemp("good")
    snap = str(d / "g.snap")
    g = Guest(["-c", "1", "-m", MEM, "-k", GUEST, "-a", COUNTER,
               "-l", "com1,stdio", "-s", "3,virtio-rng"], str(d / "run"),
              "good")
    try:
        assert wait_tick(g, 3), g.read()
        r = g.ctl("suspend", "good", snap)
        assert r.returncode == 0, r.stderr
        assert g.finish() == 5
    finally:
        g.stop()
    return snap


def copy_snap(src, dst_dir):
    # Same base name: the state file records its RAM file's name.
    dst = os.path.join(str(dst_dir), os.path.basename(src))
    shutil.copy(src, dst)
    shutil.copy(src + ".ram", dst + ".ram")
    return dst


def restore_fails(rundir, snap, *extra):
    """khyve -r must refuse: status 4, one error line, no guest output."""
    p = subprocess.run([KHYVE, "--rundir", rundir, "-r", snap] + list(extra)
                       + ["bad"], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 4, (p.returncode, p.stdout, p.stderr)
    assert "KHYVE-" not in p.stdout, p.stdout  # no guest ran
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert not os.path.exists(os.path.join(rundir, "bad.sock"))
    return lines[0]


@needs_kvm
def test_bad_truncated_state_file(good_snap, tmp_path, rundir):
    snap = copy_snap(good_snap, tmp_path)
    size = os.path.getsize(snap)
    for cut in (size - 1, size // 2, 20):
        with open(snap, "r+b") as f:
            f.truncate(cut)
        msg = restore_fails(rundir, snap)
        assert snap in msg, msg
        shutil.copy(good_snap, snap)


@needs_kvm
def test_bad_flipped_byte(good_snap, tmp_path, rundir):
    snap = copy_snap(good_snap, tmp_path)
    data = open(good_snap, "rb").read()
    # Header, inside the vCPU section (named), and the end marker.
    vcpu = data.index(b"vcpu")
    for off in (30, vcpu + 200, len(data) - 3):
        b = bytearray(data)
        b[off] ^= 0x40
        open(snap, "wb").write(bytes(b))
        msg = restore_fails(rundir, snap)
        assert snap in msg, msg
        if off == vcpu + 200:
            assert "section 'x86-vcpu' #0" in msg, msg


@needs_kvm
def test_bad_ram_file(good_snap, tmp_path, rundir):
    snap = copy_snap(good_snap, tmp_path)
    ram = snap + ".ram"
    os.unlink(ram)
    msg = restore_fails(rundir, snap)
    assert ram in msg, msg
    for size in (32 * 2**20, 64 * 2**20 + 4096):
        shutil.copy(good_snap + ".ram", ram)
        with open(ram, "r+b") as f:
            f.truncate(size)
        msg = restore_fails(rundir, snap)
        assert ram in msg and "size" in msg, msg


@needs_kvm
def test_bad_eager_ram_content(good_snap, tmp_path, rundir):
    """--eager copies RAM, so it checks the chunk hashes too."""
    snap = copy_snap(good_snap, tmp_path)
    ram = snap + ".ram"
    with open(ram, "r+b") as f:
        f.seek(0x200000 + 123)  # chunk 1: the guest image
        c = f.read(1)
        f.seek(0x200000 + 123)
        f.write(bytes([c[0] ^ 1]))
    msg = restore_fails(rundir, snap, "--eager")
    assert ram in msg and "chunk 1" in msg, msg


@needs_kvm
def test_bad_guest_visible_options(good_snap, tmp_path, rundir):
    snap = copy_snap(good_snap, tmp_path)
    msg = restore_fails(rundir, snap, "-m", "128M")
    assert "-m" in msg and "64 MiB" in msg, msg
    msg = restore_fails(rundir, snap, "-c", "2")
    assert "-c 2" in msg and "1 vCPU" in msg, msg
    msg = restore_fails(rundir, snap, "-s", "3,virtio-blk,/dev/null")
    assert "virtio-rng" in msg and "virtio-blk" in msg, msg
    msg = restore_fails(rundir, snap, "-s", "4,virtio-rng")
    assert "-s 4:0" in msg, msg
    # Matching values are accepted (and the guest runs).
    p = subprocess.Popen([KHYVE, "--rundir", rundir, "-r", snap, "-m", MEM,
                          "-c", "1", "-s", "3,virtio-rng", "ok"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out = b""
        end = time.time() + 60
        while b"KHYVE-COUNTER" not in out and time.time() < end:
            # Never a blocking read: a guest that prints nothing must
            # fail here at the deadline, not hang the suite.
            if select.select([p.stdout], [], [], 0.2)[0]:
                data = os.read(p.stdout.fileno(), 65536)
                if not data:
                    break
                out += data
            elif p.poll() is not None:
                break
        assert b"KHYVE-COUNTER" in out, out
    finally:
        p.kill()
        p.wait(15)


@needs_kvm
def test_bad_snapshot_of_other_memory_size(guest_factory, good_snap,
                                           tmp_path, rundir):
    """A RAM file from a 128 MiB guest next to a 64 MiB state file."""
    other = str(tmp_path / "o.snap")
    g = boot(guest_factory, mem="128M", name="o")
    assert wait_tick(g, 2), g.read()
    suspend(g, other)
    snap = copy_snap(good_snap, tmp_path)
    shutil.copy(other + ".ram", snap + ".ram")
    msg = restore_fails(rundir, snap)
    assert snap + ".ram" in msg, msg


def _mount_small_tmpfs(d, size):
    os.makedirs(d, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size,
                        "khyve-test", d], capture_output=True, text=True,
                       timeout=60)
    if p.returncode:
        pytest.skip("cannot mount a tmpfs here: " + p.stderr.strip())


@needs_kvm
def test_failed_checkpoint_keeps_guest_and_old_snapshot(guest_factory,
                                                        tmp_path):
    g = boot(guest_factory)
    assert wait_tick(g, 3), g.read()
    # No such directory: error reply, the guest runs on.
    r = g.ctl("checkpoint", "t", str(tmp_path / "nodir" / "x.snap"))
    assert r.returncode != 0 and "nodir" in r.stderr, r.stderr
    t = last_tick(g)
    assert wait_tick(g, t + 3), g.read()
    # A failed suspend does not exit.
    r = g.ctl("suspend", "t", str(tmp_path / "nodir" / "x.snap"))
    assert r.returncode != 0, r.stderr
    t = last_tick(g)
    assert wait_tick(g, t + 3), g.read()
    assert g.proc.poll() is None
    # A read-only and then a full file system over a good snapshot.
    d = str(tmp_path / "small")
    _mount_small_tmpfs(d, "12M")
    try:
        snap = os.path.join(d, "s.snap")
        good_from = last_tick(g)
        res = ctl_json(g, "checkpoint", "t", snap)
        good_upto = tick_after_checkpoint(g)
        good_state = open(snap, "rb").read()
        subprocess.run(["mount", "-o", "remount,ro", d], check=True,
                       timeout=60)
        r = g.ctl("checkpoint", "t", snap)
        assert r.returncode != 0 and "Read-only" in r.stderr, r.stderr
        subprocess.run(["mount", "-o", "remount,rw", d], check=True,
                       timeout=60)
        # Room for one snapshot (~res["bytes"]) but not for a second copy.
        filler = os.path.join(d, "filler")
        with open(filler, "wb") as f:
            free = shutil.disk_usage(d).free
            f.write(b"\1" * max(0, free - res["bytes"] // 2))
        r = g.ctl("suspend", "t", snap)
        assert r.returncode != 0 and "No space" in r.stderr, r.stderr
        assert g.proc.poll() is None  # the failed suspend did not exit
        t = last_tick(g)
        assert wait_tick(g, t + 2), g.read()
        assert open(snap, "rb").read() == good_state
        assert sorted(os.listdir(d)) == ["filler", "s.snap", "s.snap.ram"]
        # (Before verify: its mmap of the RAM file's holes needs tmpfs
        # pages, and a full tmpfs answers that with SIGBUS.)
        os.unlink(filler)
        verify(g, snap)
        g.ctl("poweroff", "t", "--force")
        g.finish()
        r = restored(guest_factory, snap, "back")
        check_continues(r, good_from, upto=good_upto)
        r.stop()
    finally:
        subprocess.run(["umount", "-l", d], timeout=60)


# ---- 5. clock ----

@needs_kvm
def test_tsc_and_clock_continue(guest_factory, tmp_path):
    snap = str(tmp_path / "clk.snap")
    g = boot(guest_factory)
    assert wait_tick(g, 3), g.read()
    t = suspend(g, snap)
    ts = tscs(g.read())[-1]
    time.sleep(2)
    for extra in ([], ["--keep-clock"]):
        r = restored(guest_factory, snap, "k%d" % len(extra), extra)
        check_continues(r, t, more=2)
        assert tscs(r.read())[0] > ts
        r.stop()


# ---- 6. golden snapshot: written by an older khyve, must keep loading ----

GOLDEN_DIR = os.path.join(ROOT, "tests", "golden")
# Each golden NAME is NAME.snap{,.ram} + NAME.json (+ NAME.disk), see
# tests/golden/README.md; all of them are pinned (tests/golden/PINNED).
GOLDENS = sorted(f[:-len(".json")] for f in os.listdir(GOLDEN_DIR)
                 if f.endswith(".json"))


def golden_meta(name):
    with open(os.path.join(GOLDEN_DIR, name + ".json")) as f:
        return json.load(f)


def host_vendor():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    return ""


def host_type(vendor, kvm):
    """What the compatibility promise calls the host type
    (docs/snapshot-format.md): the CPU vendor and the kind of KVM - a
    software backend (kvm_pvm) offers the guest other CPU state (XSAVE
    features) than hardware KVM does."""
    return vendor, ("software" if "software" in kvm else "hardware")


def this_host_type():
    r = subprocess.run([KHYVE, "--probe-kvm"], capture_output=True,
                       text=True, timeout=60)
    return host_type(host_vendor(), r.stdout + r.stderr)


def pinned_format(name):
    """The snapshot format tests/golden/PINNED records for NAME.snap."""
    with open(os.path.join(GOLDEN_DIR, "PINNED")) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == name + ".snap":
                return parts[1]
    raise AssertionError("%s.snap is not pinned in tests/golden/PINNED" % name)


def golden_format(name):
    """The golden's format version as its header gives it (khyvectl
    snapshot info), which must be the pinned one and the one its JSON
    records, if it does (since counter-64m-v1.1)."""
    r = subprocess.run([KHYVECTL, "snapshot", "info",
                        os.path.join(GOLDEN_DIR, name + ".snap")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"^format:\s+(\S+)$", r.stdout, re.M)
    assert m, r.stdout
    assert m.group(1) == pinned_format(name), (m.group(1), name)
    assert golden_meta(name).get("format", m.group(1)) == m.group(1), name
    return m.group(1)


# What a RAM file of each format holds after the guest's RAM
# (docs/snapshot-format.md): nothing in 1.0, a 64-byte trailer with the
# save id in 1.1 (and 1.2, which adds increments). A new format must say
# here how long its RAM file is.
RAM_TRAILER = {"1.0": 0, "1.1": 64, "1.2": 64}


@pytest.mark.parametrize("name", GOLDENS)
def test_golden_snapshot_is_small(name):
    """The golden RAM file is the guest's 64 MiB (and its format's
    trailer), sparse, and what git stores stays small."""
    import zlib
    golden = os.path.join(GOLDEN_DIR, name + ".snap")
    fmt = golden_format(name)
    assert fmt in RAM_TRAILER, "format %s: RAM file length unknown" % fmt
    st = os.stat(golden + ".ram")
    assert st.st_size == 64 * 2**20 + RAM_TRAILER[fmt], (fmt, st.st_size)
    with open(golden + ".ram", "rb") as f:
        packed = len(zlib.compress(f.read(), 1))
    assert packed < 3 * 2**20, packed
    assert os.path.getsize(golden) < 64 * 1024
    # The links below an incremental golden: state files of its format.
    for link in golden_meta(name).get("links", []):
        p = os.path.join(GOLDEN_DIR, link)
        assert pinned_format(link[:-len(".snap")]) == fmt, link
        assert os.path.getsize(p + ".ram") == os.path.getsize(golden + ".ram")
        assert os.path.getsize(p) < 64 * 1024


# The documented reasons a golden of this CPU vendor made on another kind
# of KVM (hardware vs. kvm_pvm) cannot be restored here
# (tests/golden/README.md): the KVM refuses CPU state the other one gave.
# khyve leaves out unused XSAVE components and Hyper-V's MSRs
# (src/arch/x86/vcpu_state.c); what is left is refused with these: kvm_pvm
# lacks MSR 0x10a, which counter-64m (from kvm_amd) holds non-zero; nested
# kvm_amd lacks the LBR MSR 0x1db the kvm_pvm goldens hold.
GOLDEN_REFUSALS = [
    re.compile(r": KVM_SET_XSAVE: Invalid argument(:|$)", re.M),
    re.compile(r": KVM_SET_MSRS: set \d+ of \d+ MSRs; MSR 0x[0-9a-f]+ was "
               r"refused \(this host's KVM lacks it\)"),
]


def golden_refused(g, name, made_on, here, timeout=60):
    """Wait until the restored golden prints a tick or khyve ends. None if
    it runs; the reason to skip if khyve refused it for a documented
    incompatibility of a golden made on another host type. Any other end
    fails."""
    end = time.time() + timeout
    while (g.proc.poll() is None and not ticks(g.read())
           and time.time() < end):
        time.sleep(0.05)
    if g.proc.poll() is None:
        return None
    err = g.proc.stderr.read().decode()
    documented = (made_on != here and g.proc.returncode == 4
                  and len(err.strip().splitlines()) == 1
                  and any(r.search(err) for r in GOLDEN_REFUSALS))
    assert documented, ("golden %s (made on a %s %s KVM host, this is a "
                        "%s %s one) ended on restore with status %d: %s"
                        % ((name,) + made_on + here
                           + (g.proc.returncode, err)))
    return ("golden %s was made on a %s %s KVM host; this %s %s host's "
            "KVM cannot take its CPU state: %s"
            % ((name,) + made_on + here + (err.strip(),)))


@needs_kvm
@pytest.mark.parametrize("name", GOLDENS)
def test_golden_snapshot_restores(guest_factory, tmp_path, name):
    meta = golden_meta(name)
    golden = os.path.join(GOLDEN_DIR, name + ".snap")
    golden_format(name)
    if meta["vendor"] != host_vendor():
        # Restore refuses to move a guest between CPU vendors, so on this
        # host the golden is checked as far as that allows - never
        # skipped: khyve -r refuses it for that reason and no other, and
        # tests/unit/test_golden.c (unit tier, every host) verifies it and
        # loads every section through this khyve's loaders.
        r = subprocess.run([KHYVE, "--rundir", str(tmp_path / "run"),
                            "-r", golden, "golden"], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 4, (r.returncode, r.stderr)
        assert ("field 'cpu_vendor'" in r.stderr and meta["vendor"] in
                r.stderr), r.stderr
        return
    # The old golden's JSON has no "kvm": it was made on kvm_amd (README).
    made_on = host_type(meta["vendor"], meta.get("kvm", ""))
    here = this_host_type()
    # Every file is verified, whether or not it restores here.
    r = subprocess.run([KHYVECTL, "snapshot", "verify", golden],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr

    def disk(tag):
        """A copy of its disk, where make-golden.sh put it (slot 3)."""
        src = os.path.join(GOLDEN_DIR, name + ".disk")
        if not os.path.exists(src):
            return []
        dst = str(tmp_path / (tag + ".disk"))
        shutil.copy(src, dst)
        return ["-s", "3,virtio-blk," + dst]

    # An incremental golden (chain-64m-v1.2): every link checked, each
    # against its parent, down to the base its JSON names.
    links = meta.get("links", [])
    for k, link in enumerate(links + [name + ".snap"] if links else []):
        assert "link %d %s: ok" % (k, os.path.join(GOLDEN_DIR, link)) \
            in r.stdout, r.stdout
    # Mapped restore from a copy (the checkout may be read-only) ...
    snap = copy_snap(golden, tmp_path)
    for link in links:
        copy_snap(os.path.join(GOLDEN_DIR, link), tmp_path)
    g = restored(guest_factory, snap, "golden", disk("a"))
    # Outside the promise (another host type) the restore is still tried:
    # only the documented incompatibility skips, with khyve's own words.
    why = golden_refused(g, name, made_on, here)
    if why:
        pytest.skip(why)
    check_continues(g, meta["last_tick"])
    assert wait_memcheck_ok_after(g, meta["last_tick"]), g.read()
    g.stop()
    # ... and eagerly from the committed files in place (hashes checked).
    g2 = restored(guest_factory, golden, "golden2", ["--eager"] + disk("b"))
    check_continues(g2, meta["last_tick"])
    assert wait_memcheck_ok_after(g2, meta["last_tick"]), g2.read()


# ---- 7. virtio-blk requests in flight across checkpoints ----

VS_BASE = 2048            # tests/guests/virtio.c: first sector of the stream
VS_MAGIC = 0x4d52545356594b48
VSTREAM = re.compile(r"^KHYVE-VSTREAM done=(\d+) sent=(\d+) dup=(\d+) "
                     r"bad=(\d+)$", re.M)


def vstream_done(text):
    v = [int(m.group(1)) for m in VSTREAM.finditer(complete(text))]
    return v[-1] if v else 0


def wait_vstream(g, n, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        if vstream_done(g.read()) >= n or g.proc.poll() is not None:
            break
        time.sleep(0.02)
    return vstream_done(g.read()) >= n


_VS_MIDS = [bytes(4) + i.to_bytes(2, "little") for i in range(3, 64)]


@functools.lru_cache(maxsize=None)
def stream_block(k):
    """Request k's 4 KiB as tests/guests/virtio.c vs_fill() stamps it:
    per sector magic, k, sector number, then k ^ (i << 48) for qwords
    3..63 (k < 2^16 here, so each is k's two bytes, 4 zeros, i's two)."""
    kb = k.to_bytes(2, "little")
    rest = kb + kb.join(_VS_MIDS)
    head = VS_MAGIC.to_bytes(8, "little") + k.to_bytes(8, "little")
    return b"".join(head + (VS_BASE + 8 * k + s).to_bytes(8, "little") + rest
                    for s in range(8))


def stream_stamps(img, n):
    """Which stream requests the image holds: a list of request numbers in
    disk order, None for a 4 KiB block never written, and 'bad' for one
    that is neither zero nor exactly request k's stamp."""
    out = []
    zero = bytes(4096)
    with open(img, "rb") as f:
        f.seek(VS_BASE * 512)
        for k in range(n):
            blk = f.read(4096)
            out.append(None if blk == zero else
                       k if blk == stream_block(k) else "bad")
        # Nothing beyond the stream.
        assert f.read(64 * 4096).strip(b"\0") == b"", \
            "data after request %d" % n
    return out


@needs_kvm
def test_vblk_in_flight_across_checkpoints(guest_factory, tmp_path):
    """The guest keeps 16 writes in flight all the time and checks every
    used-ring entry (no duplicate, none lost, status; completions may come
    out of submission order, the worker pool runs several at once).
    Live checkpoints must not disturb it; a restore from one of them, on a
    copy of the disk taken with it, must find on disk exactly the requests
    the guest had seen complete and then finish the stream itself.
    The stream is long (30000) so that on a loaded host the guest is still
    writing when the test's last pause arrives after 3500: with 8000 it
    sometimes finished first (about 1 run in 4 on a busy 2-core host)."""
    n = 30000
    img = str(tmp_path / "disk.img")
    with open(img, "wb") as f:
        f.truncate(128 << 20)
    g = boot(guest_factory, "tests=vstream vstream_n=%d vstream_qd=16" % n,
             extra=["-s", "2,virtio-blk,%s" % img])
    snaps = []
    for i, at in enumerate((500, 2000)):
        assert wait_vstream(g, at), g.read()
        snap = str(tmp_path / ("v%d.snap" % i))
        ctl_json(g, "checkpoint", "t", snap)
        snaps.append(snap)
    # One more with the VM paused around it, so the disk can be copied in
    # the state the snapshot describes.
    assert wait_vstream(g, 3500), g.read()
    snap = str(tmp_path / "v2.snap")
    assert g.ctl("pause", "t").returncode == 0
    ctl_json(g, "checkpoint", "t", snap)
    seen = vstream_done(g.read())   # the guest cannot print while paused
    img2 = str(tmp_path / "disk2.img")
    shutil.copy(img, img2)
    assert g.ctl("resume", "t").returncode == 0
    # The original finishes on its own, every completion accounted for.
    assert g.wait_for("KHYVE-GUEST done", 300), g.read()
    assert g.finish() == 1
    out = g.read()
    assert re.search(r"KHYVE-TEST vstream PASS done=%d sent=%d dup=0 "
                     r"order=\d+ bad=0 lost=0" % (n, n), out), out
    assert stream_stamps(img, n) == list(range(n))
    # The paused copy holds a prefix: every request the guest saw complete
    # (and the ones drained with the snapshot), nothing after a gap.
    st = stream_stamps(img2, n)
    k = st.index(None) if None in st else n
    assert st[:k] == list(range(k)) and set(st[k:]) == {None}, st
    assert seen <= k < n, (seen, k)
    # Restored on that copy, the guest goes on from where it was and
    # finishes with none lost or repeated; the disk then holds it all.
    r = restored(guest_factory, snap, "vr",
                 ["-s", "2,virtio-blk,%s" % img2])
    assert r.wait_for("KHYVE-GUEST done", 300), (r.read(), r.proc.poll())
    assert r.finish() == 1
    out = r.read()
    first = [int(m.group(1)) for m in VSTREAM.finditer(complete(out))][0]
    assert seen < first <= k + 100, (seen, k, out[:300])
    assert re.search(r"KHYVE-TEST vstream PASS done=%d sent=%d dup=0 "
                     r"order=\d+ bad=0 lost=0" % (n, n), out), out
    assert stream_stamps(img2, n) == list(range(n))
    for s in snaps + [snap]:
        verify(r, s)


def ctl_request(g, cmd, args):
    """One request on the control socket, for options khyvectl does not
    send (JSON lines, see docs/control-protocol.md)."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(60)
    s.connect(os.path.join(g.rundir, g.name + ".sock"))
    f = s.makefile("rwb")
    try:
        f.readline()  # greeting
        f.write(json.dumps({"id": 1, "cmd": cmd, "args": args}).encode()
                + b"\n")
        f.flush()
        r = json.loads(f.readline())
        assert r.get("ok"), r
        return r["result"]
    finally:
        f.close()
        s.close()


def ctl_json_reading(g, *args, timeout=300):
    """ctl_json, reading the guest's console meanwhile: a guest that
    prints fast fills the pipe during a long save, and khyve then drops
    console output (lines the test needs)."""
    p = subprocess.Popen([KHYVECTL, "--rundir", g.rundir] + list(args) +
                         ["--json"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    end = time.time() + timeout
    while p.poll() is None and time.time() < end:
        g.read()
        time.sleep(0.01)
    if p.poll() is None:
        p.kill()
        p.wait(15)
        raise AssertionError("khyvectl %s: no reply in %d s" % (args, timeout))
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    return json.loads(out)


def stamp_image(img, n, size):
    """A disk whose stream blocks 0..n-1 hold request k's stamp."""
    with open(img, "wb") as f:
        f.truncate(size)
        f.seek(VS_BASE * 512)
        for k0 in range(0, n, 1024):
            f.write(b"".join(stream_block(k)
                             for k in range(k0, min(n, k0 + 1024))))


def vstream_lines(text):
    """(done, dup, bad) of each complete progress line."""
    return [(int(m.group(1)), int(m.group(3)), int(m.group(4)))
            for m in VSTREAM.finditer(complete(text))]


def wait_vstream_clean(g, n, timeout=120):
    """Progress to n completions with no dup or bad page on the way."""
    ok = wait_vstream(g, n, timeout)
    lines = vstream_lines(g.read())
    assert lines and all(d == 0 and b == 0 for _, d, b in lines), \
        [x for x in lines if x[1] or x[2]][:5]
    return ok


@needs_kvm
def test_live_checkpoints_while_vblk_reads_into_guest(guest_factory,
                                                      tmp_path):
    """virtio-blk reads land in guest memory from khyve's own threads,
    which KVM's dirty log never sees: only khyve's own dirty bitmap (marked
    when a request is pushed to the used ring) makes a live checkpoint copy
    those pages and the used ring again. The guest keeps 16 reads in
    flight and checks every completed page against the stamp the host put
    on disk, pages it never writes itself; all its RAM holds data (the mem
    test), so each pre-copy takes long enough for thousands of reads to
    land during it. Each checkpoint must be live, and each restore must go
    on reading with every page right (the completions it had not seen yet
    come first): a page copied too early shows as bad, a stale used ring
    as dup or no progress."""
    span, n = 4096, 10**7  # 16 MiB of stamps, read round and round
    img = str(tmp_path / "stamps.img")
    stamp_image(img, span, (VS_BASE * 512 + span * 4096 + (1 << 20)))
    blk = ["-s", "2,virtio-blk,%s" % img]
    g = boot(guest_factory, "tests=mem,vstream vstream_read=1 vstream_n=%d "
             "vstream_span=%d vstream_qd=16" % (n, span), mem="256M",
             extra=blk)
    snaps = []
    at = 1000
    for i in range(2):
        assert wait_vstream_clean(g, at), g.read()
        snap = str(tmp_path / ("r%d.snap" % i))
        before = vstream_done(g.read())
        res = ctl_json_reading(g, "checkpoint", "t", snap)
        assert res["live"] is True, res
        assert "not_live_reason" not in res, res
        assert res["precopy_rounds"] >= 1, res
        # The final copy is what was dirtied in the last round, not RAM.
        assert res["final_copy_bytes"] < 64 * 2**20, res
        # A progress line the pause cut in two completes only once the
        # guest runs again: wait for it (line_complete), then the
        # snapshot point lies between the two reads.
        done = vstream_done(line_complete(g))
        snaps.append((snap, before, done))
        at = done + 2000
    # The original read on, every page right.
    assert wait_vstream_clean(g, at), g.read()
    assert g.ctl("poweroff", "t", "--force").returncode == 0
    g.finish()
    # Restored soon (the guest counts 10 s without a completion as lost,
    # and on a software KVM its TSC cannot be set back).
    for i, (snap, before, done) in enumerate(snaps):
        verify(g, snap)
        r = restored(guest_factory, snap, "rr%d" % i, blk)
        assert wait_vstream_clean(r, done + 3000), (r.read(), r.proc.poll())
        # It goes on from the checkpoint, in steps of 100.
        seq = [x[0] for x in vstream_lines(r.read())]
        assert before < seq[0] <= done + 100, (before, done, seq[:5])
        assert seq == list(range(seq[0], seq[0] + 100 * len(seq), 100)), \
            seq[:20]
        assert "KHYVE-TEST" not in r.read(), r.read()
        assert r.ctl("poweroff", r.name, "--force").returncode == 0
        r.finish()


@needs_kvm
def test_checkpoint_not_live_says_why(guest_factory, tmp_path):
    """A save that is not live says why in the reply, whatever the cause;
    a live one does not carry the key. The stop-and-copy one holds the
    guest for its whole RAM copy: its times against the host's and the
    guest's clocks (check_times)."""
    g = boot(guest_factory, COUNTER + " gaps")
    assert wait_tick(g, 2), g.read()
    before = last_tick(g)
    t0 = time.monotonic()
    res = ctl_request(g, "checkpoint", {"file": str(tmp_path / "s.snap"),
                                        "live": False})
    wall_ms = (time.monotonic() - t0) * 1000
    assert res["live"] is False and res["precopy_rounds"] == 0, res
    assert "live" in res["not_live_reason"], res
    check_times(g, res, wall_ms, before, tick_after_checkpoint(g))
    assert g.ctl("pause", "t").returncode == 0
    res = ctl_json(g, "checkpoint", "t", str(tmp_path / "p.snap"))
    assert res["live"] is False, res
    assert "paused" in res["not_live_reason"], res
    assert g.ctl("resume", "t").returncode == 0
    res = ctl_json(g, "checkpoint", "t", str(tmp_path / "l.snap"))
    assert res["live"] is True and "not_live_reason" not in res, res
    assert res["precopy_rounds"] >= 1, res


# ---- 8. four busy vCPUs with timer interrupts across a checkpoint ----

BUSY = re.compile(r"^KHYVE-BUSY (\d+) lapic=(\d+) pit=(\d+) aps=(\d+) "
                  r"progress=(\S+) tsc=\d+$", re.M)


def busy_lines(text):
    return [(int(m.group(1)), int(m.group(2)), int(m.group(3)),
             int(m.group(4)), m.group(5))
            for m in BUSY.finditer(complete(text))]


def wait_busy_ok(g, after, count, timeout=120):
    """`count` lines numbered > after that all report progress=ok."""
    end = time.time() + timeout
    while time.time() < end:
        ok = [b for b in busy_lines(g.read()) if b[0] > after
              and b[4] == "ok"]
        if len(ok) >= count:
            return True
        if g.proc.poll() is not None:
            break
        time.sleep(0.05)
    return False


@needs_kvm
def test_four_busy_vcpus_with_timers_survive_restore(guest_factory,
                                                     tmp_path):
    """Three APs spin on work in user mode, the BSP runs LAPIC timer and
    PIT interrupts at 1 kHz; each KHYVE-BUSY line says whether the timers
    and every AP moved since the previous one."""
    snap = str(tmp_path / "busy.snap")
    cmd = "tests=smp busy interval_ms=200 smp_slice_kb=64"
    g = boot(guest_factory, cmd, cpus=4)
    assert wait_busy_ok(g, 0, 2), g.read()
    assert "cpus=4 expected=4" in g.read(), g.read()
    pre = busy_lines(g.read())[-1]
    before = pre[0]
    ctl_json(g, "checkpoint", "t", snap)
    # After the snapshot point: the original may have printed more lines
    # by the time this is read (line_complete).
    line_complete(g)
    saved = busy_lines(g.read())[-1]
    # The original keeps going.
    assert wait_busy_ok(g, saved[0], 2), g.read()
    assert g.ctl("poweroff", "t", "--force").returncode == 0
    g.finish()
    r = restored(guest_factory, snap, "busy")
    # The first line after restore may span the save; the next ones must
    # each show both timers and all three APs moving.
    assert wait_busy_ok(r, saved[0] + 1, 3), r.read()
    lines = busy_lines(r.read())
    assert before <= lines[0][0] <= saved[0] + 2, (before, saved, lines[:3])
    # Both timers moved on from where they were before the snapshot.
    assert lines[-1][1] > pre[1] and lines[-1][2] > pre[2], (pre, lines[-1])
    assert all(b[3] == 3 for b in lines)
    assert "exception" not in r.read()


# ---- 9. time after restore ----

CLOCK = re.compile(r"^KHYVE-CLOCK (\d+) kvm_ns=(\d+) wall_ms=(\d+) "
                   r"rtc=(\d+) back=(\d+)$", re.M)


def clock_lines(text):
    return [tuple(int(x) for x in m.groups())
            for m in CLOCK.finditer(complete(text))]


def first_clock_line(g, timeout=60, index=0):
    """The guest's first clock line (or the one at @index) and the host's
    wall time once it was seen. With the host's time before the guest was
    started, that is the bracket the guest's clock reading must fall in:
    wide on a loaded host, never wrong (a bracket from the poll before the
    line appeared assumed the line took less than a second to reach us)."""
    end = time.time() + timeout
    while time.time() < end:
        got = clock_lines(g.read())
        if len(got) > index:
            return got[index], time.time()
        assert g.proc.poll() is None, g.read()
        time.sleep(0.01)
    raise AssertionError("no clock line: " + g.read())


@needs_kvm
def test_guest_clocks_after_restore_of_old_snapshot(guest_factory, tmp_path):
    """kvmclock never goes back; the wall clock (kvmclock wall time, and
    the CMOS RTC) is the host's again after restoring a 5 s old snapshot,
    and stays 5 s behind with --keep-clock."""
    snap = str(tmp_path / "clk.snap")
    t0 = time.time()
    g = boot(guest_factory, "counter clock interval_ms=100 check_every=5")
    assert wait_tick(g, 3), g.read()
    c = clock_lines(g.read())[0]
    t1 = time.time()
    assert c[1] > 0, "kvmclock not available in the guest: %s" % (c,)
    # Before any snapshot the guest's clocks are the host's: read between
    # the start and now (to a second; the RTC counts whole seconds).
    assert t0 - 1 <= c[2] / 1000 <= t1 + 1, (c, t0, t1)
    assert t0 - 2 <= c[3] <= t1 + 1, (c, t0, t1)
    suspend(g, snap)
    saved = clock_lines(g.read())[-1]
    saved_wall = saved[2] / 1000
    time.sleep(5)
    for extra in ([], ["--keep-clock"]):
        t0 = time.time()
        # On disk for at least this long (5 s and more).
        away = t0 - saved_wall
        assert away >= 5, away
        r = restored(guest_factory, snap, "clk%d" % len(extra), extra)
        # The second line: the guest reads its clocks, then prints them
        # one UART exit at a time, so the suspend can fall in between and
        # the restored guest's first line carry readings from before it
        # (a jump of one tick, 0.1 s, about 1 run in 10 on a loaded host).
        (n, kvm_ns, wall_ms, rtc, back), t1 = first_clock_line(r, index=1)
        r.stop()
        assert n > saved[0] and back == 0, (saved, n, back)
        jump = (kvm_ns - saved[1]) / 1e9
        assert jump > 0, (saved, kvm_ns)   # monotonic
        wall = wall_ms / 1000
        if not extra:
            # The clock moved on by the time spent on disk: wall time is
            # the host's, read between the restore's start and now.
            assert jump >= away - 1, (jump, away)
            assert t0 - 1 <= wall <= t1 + 1, (wall, t0, t1)
            assert t0 - 2 <= rtc <= t1 + 1, (rtc, t0, t1)
        else:
            # Frozen: the guest lost the 5+ s it spent on disk. It ran for
            # at most t1 - t0 since, so its clocks moved on that much.
            assert jump <= (t1 - t0) + 1, (jump, t0, t1)
            assert wall <= saved_wall + (t1 - t0) + 1, (wall, saved_wall,
                                                        t0, t1)
            assert rtc <= saved_wall + (t1 - t0) + 1, (rtc, saved_wall,
                                                       t0, t1)
