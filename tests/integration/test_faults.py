"""Faults injected for real (issue 16, docs/reliability.md): khyve killed
with SIGKILL at random points of checkpoints, khyvectl killed mid-request,
a disk that fails with EIO in the middle of a save. Judged by what is left
on disk (the previous pair restores and verifies, no temporary stays once
the next save ran) and by what the guest reports after it."""
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import time

import pytest

from conftest import GUEST, KHYVECTL, needs_kvm
from test_snapshot import last_tick, memchecks, wait_memcheck_ok_after, \
    wait_tick

# A guest that dirties RAM while it counts, with a 16 MiB region checked
# every 5 ticks: a save takes long enough to be killed at many points.
CMDLINE = ("counter interval_ms=50 check_every=5 mem_kb=16384 "
           "dirty_pages=256 touch_mb=24")
KILLS = int(os.environ.get("KHYVE_KILL_LOOPS", "100"))


def boot(guest_factory, name="t"):
    g = guest_factory(["-m", "64M", "-k", GUEST, "-a", CMDLINE,
                       "-l", "com1,stdio"], name=name)
    assert wait_tick(g, 3), g.read()
    return g


def verify(snap):
    return subprocess.run([KHYVECTL, "snapshot", "verify", snap],
                          capture_output=True, text=True, timeout=120)


def checkpoint_bg(g, snap):
    return subprocess.Popen([KHYVECTL, "--rundir", g.rundir, "--json",
                             "checkpoint", g.name, snap],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def save_id(snap):
    r = subprocess.run([KHYVECTL, "snapshot", "info", snap, "--json"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["save_id"]


def strays(d):
    return sorted(f for f in os.listdir(d) if f not in ("s.khyve",
                                                        "s.khyve.ram"))


@needs_kvm
def test_kill9_during_checkpoints(guest_factory, tmp_path):
    """SIGKILL at a random moment of a checkpoint over an existing pair,
    KILLS times: after each, the pair at that path verifies and restores
    (the next round runs from it), whichever save it holds; temporaries a
    killed save left are removed by the next save to that path."""
    d = str(tmp_path / "snaps")
    os.mkdir(d)
    snap = os.path.join(d, "s.khyve")
    g = boot(guest_factory, "k0")
    t0 = time.monotonic()
    r = g.ctl("checkpoint", g.name, snap)
    full_s = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    rng = random.Random(16)
    outcome = {"committed": 0, "previous": 0}
    max_strays = 0
    for i in range(KILLS):
        before = save_id(snap)
        c = checkpoint_bg(g, snap)
        time.sleep(rng.uniform(0, full_s * 1.2))
        os.kill(g.proc.pid, signal.SIGKILL)
        g.finish()
        out, err = c.communicate(timeout=60)
        v = verify(snap)
        assert v.returncode == 0, "kill %d: %s" % (i, v.stdout + v.stderr)
        after = save_id(snap)
        if c.returncode == 0:
            # the reply came: the pair is the new save
            assert after == json.loads(out)["save_id"], (i, out)
        outcome["committed" if after != before else "previous"] += 1
        max_strays = max(max_strays, len(strays(d)))
        g = guest_factory(["-r", snap], name="k%d" % (i + 1))
        assert wait_tick(g, last_tick(g) + 2), "kill %d: %s" % (i, g.read())
    # a save that completes leaves the pair and nothing else
    r = g.ctl("checkpoint", g.name, snap)
    assert r.returncode == 0, r.stderr
    assert strays(d) == [], strays(d)
    assert verify(snap).returncode == 0
    n = last_tick(g)
    assert wait_memcheck_ok_after(g, n), g.read()
    print("kill9: %d kills over %.0f ms saves: %s, at most %d stray files "
          "between saves" % (KILLS, full_s * 1000, outcome, max_strays))


@needs_kvm
def test_khyvectl_killed_mid_request(guest_factory, tmp_path):
    """khyvectl killed during a checkpoint: khyve finishes or drops that
    request, and serves the next clients."""
    snap = str(tmp_path / "c.khyve")
    g = boot(guest_factory, "c")
    for i in range(5):
        c = checkpoint_bg(g, snap)
        time.sleep(0.02 * i)
        c.send_signal(signal.SIGKILL)
        c.communicate(timeout=60)
        r = g.ctl("status", g.name)
        assert r.returncode == 0, r.stderr
    n = last_tick(g)
    assert wait_tick(g, n + 3), g.read()
    r = g.ctl("checkpoint", g.name, snap)
    assert r.returncode == 0, r.stderr
    assert verify(snap).returncode == 0
    assert not [m for m in memchecks(g.read()) if m[0] == "bad"]


def sh(*cmd):
    return subprocess.run(list(cmd), capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def failing_disk(tmp_path):
    """An ext4 file system on a loop device whose backing file lives on a
    96 MiB tmpfs but claims 256 MiB: once the tmpfs is full (fill_disk),
    the device fails the writes that reach it while the file system still
    has room. (The kernel here has no device-mapper: no dm-error target.)
    Yields (mount point, fill_disk)."""
    if os.geteuid() != 0 or not shutil.which("losetup") or \
            not shutil.which("mkfs.ext4"):
        pytest.skip("needs root, losetup and mkfs.ext4")
    back, mnt = tmp_path / "back", tmp_path / "mnt"
    back.mkdir()
    mnt.mkdir()
    r = sh("mount", "-t", "tmpfs", "-o", "size=96M", "tmpfs", str(back))
    if r.returncode:
        pytest.skip("cannot mount a tmpfs: " + r.stderr.strip())
    loop = None
    try:
        img = str(back / "disk")
        with open(img, "wb") as f:
            f.truncate(256 << 20)
        r = sh("losetup", "-f", "--show", img)
        if r.returncode:
            pytest.skip("no loop device: " + r.stderr.strip())
        loop = r.stdout.strip()
        assert sh("mkfs.ext4", "-q", "-F", loop).returncode == 0
        assert sh("mount", loop, str(mnt)).returncode == 0

        def fill_disk(leave=4 << 20):
            # in steps: ext4's own writeback may take room meanwhile
            st = os.statvfs(str(back))
            left = st.f_bavail * st.f_frsize - leave
            with open(str(back / "filler"), "wb", buffering=0) as f:
                while left > 0:
                    try:
                        f.write(b"\xff" * min(left, 1 << 20))
                    except OSError as e:
                        if e.errno != errno.ENOSPC:
                            raise
                        break
                    left -= 1 << 20

        yield str(mnt), fill_disk
    finally:
        sh("umount", "-l", str(mnt))
        if loop:
            sh("losetup", "-d", loop)
        sh("umount", "-l", str(back))


@needs_kvm
def test_disk_fails_mid_save(guest_factory, tmp_path, failing_disk):
    """The first checkpoint fits; the second fails half-way on the device:
    an error reply naming the RAM file, the guest runs on, the previous
    pair there still verifies and no temporary is left; a checkpoint to a
    working disk then succeeds and restores."""
    mnt, fill_disk = failing_disk
    snap = os.path.join(mnt, "s.khyve")
    g = guest_factory(["-m", "64M", "-k", GUEST, "-a",
                       "counter interval_ms=50 check_every=5 mem_kb=16384",
                       "-l", "com1,stdio"], name="eio")
    assert wait_tick(g, 3), g.read()
    r = g.ctl("checkpoint", g.name, snap)
    assert r.returncode == 0, r.stderr
    first = save_id(snap)
    fill_disk()  # 4 MiB left under a 16 MiB save
    r = g.ctl("checkpoint", g.name, snap)
    assert r.returncode != 0, r.stdout
    assert "s.khyve" in r.stderr, r.stderr
    print("disk failing mid-save: " + r.stderr.strip())
    n = last_tick(g)
    assert wait_tick(g, n + 3), g.read()
    assert sorted(os.listdir(mnt)) == ["lost+found", "s.khyve",
                                               "s.khyve.ram"]
    assert save_id(snap) == first
    v = verify(snap)
    assert v.returncode == 0, v.stdout + v.stderr
    good = str(tmp_path / "good.khyve")
    r = g.ctl("checkpoint", g.name, good)
    assert r.returncode == 0, r.stderr
    n = last_tick(g)
    g.ctl("poweroff", g.name, "--force")
    g.finish()
    b = guest_factory(["-r", good], name="eio2")
    assert wait_tick(b, n + 2), b.read()
    assert wait_memcheck_ok_after(b, n), b.read()
