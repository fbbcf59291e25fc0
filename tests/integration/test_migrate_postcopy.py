"""Post-copy migration (issue 15's second step), judged by the guest.

As test_migrate.py: two network namespaces joined by a veth pair, the
fast test guest's counter (a tick every 50 ms, its 16 MiB memory pattern
checked every 5 ticks by the guest itself). With --postcopy-after=0 the
guest runs at the destination with none of its RAM there: its code, page
tables and pattern arrive on its faults (KVM's own accesses to guest
memory, served through userfaultfd) or from the source's background push,
held to a few MiB/s here so that the post-copy lasts seconds. The guest
going on from its tick with every memory check passing is the proof that
every page it read came from the source."""
import ctypes
import json
import os
import subprocess
import time

import pytest

from conftest import KHYVECTL, needs_kvm
from test_migrate import (DST_IP, destination, migrate_bg, netns,  # noqa
                          procs, source, wait_listening, wait_path)
from test_snapshot import (check_continues, last_tick, ticks,
                           wait_memcheck_ok_after)


def _has_userfaultfd():
    """Can this kernel serve page faults to a process? (x86-64 system
    call 323; a nested machine's kernel might lack it.)"""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(323, os.O_CLOEXEC)
    if fd < 0:
        return False
    os.close(fd)
    return True


pytestmark = pytest.mark.skipif(not _has_userfaultfd(),
                                reason="no userfaultfd in this kernel")


def ctl(g, *args):
    # A generous timeout: make check runs at a load of 20 and more.
    return subprocess.run([KHYVECTL, "--rundir", g.rundir,
                           "--timeout=60000"] + list(args),
                          capture_output=True, text=True, timeout=60)


def wait_running_at(dst, timeout=30):
    """The destination's guest printed a tick: it runs, post-copy or not."""
    end = time.time() + timeout
    while time.time() < end:
        if ticks(dst.read()):
            return True
        time.sleep(0.02)
    return False


@needs_kvm
def test_postcopy_guest_runs_on_missing_pages(netns, procs, tmp_path):
    s_ns, d_ns = netns
    src = source(procs, s_ns, str(tmp_path / "r1"))
    dst = destination(procs, d_ns, str(tmp_path / "r2"),
                      "tcp:%s:7351" % DST_IP)
    assert wait_listening(d_ns, 7351), dst.err()
    before = last_tick(src)
    # 16 MiB at 8 MiB/s: about 2 s of post-copy while the guest runs.
    m = migrate_bg(src, "tcp:%s:7351" % DST_IP, "--postcopy-after=0",
                   "--bandwidth=8")
    # Its control socket is up from before the switch-over until (and
    # after) the last page: not all of its memory is here yet, and a
    # checkpoint says so.
    assert wait_path(os.path.join(dst.rundir, "dst.sock")), dst.err()
    cp = ctl(dst, "--vm=dst", "--checkpoint=" + str(tmp_path / "c.khs"))
    assert wait_running_at(dst), (dst.read(), dst.err())
    out, err = m.communicate(timeout=120)
    assert m.returncode == 0, err
    res = json.loads(out)
    assert cp.returncode == 1, (cp.stdout, cp.stderr)
    assert "post-copy migration is still bringing" in cp.stderr, cp.stderr
    assert src.finish() == 6, src.err()
    check_continues(dst, before, more=5, upto=last_tick(src))
    assert wait_memcheck_ok_after(dst, ticks(dst.read())[0]), dst.read()
    assert res["postcopy"] and res["rounds"] == 0, res
    # The guest faulted on pages it did not have, and was served.
    assert res["on_demand_pages"] > 0, res
    assert res["postcopy_pages"] >= 4096, res  # the pattern, at least
    assert 0 < res["downtime_ms"] < res["total_ms"], res
    assert res["postcopy_ms"] > 0, res
    print("post-copy, 64 MiB guest: %.1f ms total, %.2f ms down, %d pages "
          "after the switch-over (%d on a fault), %d bytes" %
          (res["total_ms"], res["downtime_ms"], res["postcopy_pages"],
           res["on_demand_pages"], res["bytes"]))
    # All here now: the destination is a VM like any other.
    cp = ctl(dst, "--vm=dst", "--checkpoint=" + str(tmp_path / "c.khs"))
    assert cp.returncode == 0, cp.stderr
    # And it ends as any other (a sanitized build checks for leaks here).
    assert ctl(dst, "--vm=dst", "--force-poweroff").returncode == 0
    assert dst.finish() == 1, dst.err()


@needs_kvm
def test_postcopy_source_killed_destination_exits(netns, procs, tmp_path):
    """After GO the guest's memory is split: the destination cannot go
    on, and says so with its own exit status, at once."""
    s_ns, d_ns = netns
    src = source(procs, s_ns, str(tmp_path / "r1"))
    dst = destination(procs, d_ns, str(tmp_path / "r2"),
                      "tcp:%s:7352" % DST_IP)
    assert wait_listening(d_ns, 7352), dst.err()
    m = migrate_bg(src, "tcp:%s:7352" % DST_IP, "--postcopy",
                   "--postcopy-after=0", "--bandwidth=2")
    assert wait_running_at(dst), (dst.read(), dst.err())
    src.proc.kill()
    t0 = time.monotonic()
    status = dst.finish()
    took = time.monotonic() - t0
    m.communicate(timeout=60)
    err = dst.err()
    assert status == 7, err
    assert took < 10, took
    assert "post-copy failed" in err, err
    assert "the guest cannot go on without them" in err, err
    assert "stopping with status 7" in err, err


@needs_kvm
def test_postcopy_destination_killed_source_stays_paused(netns, procs,
                                                         tmp_path):
    """The source cannot know what the destination's guest did since GO:
    it keeps its copy paused and will not resume it."""
    s_ns, d_ns = netns
    src = source(procs, s_ns, str(tmp_path / "r1"))
    dst = destination(procs, d_ns, str(tmp_path / "r2"),
                      "tcp:%s:7353" % DST_IP)
    assert wait_listening(d_ns, 7353), dst.err()
    m = migrate_bg(src, "tcp:%s:7353" % DST_IP, "--postcopy-after=0",
                   "--bandwidth=2")
    assert wait_running_at(dst), (dst.read(), dst.err())
    dst.proc.kill()
    out, err = m.communicate(timeout=120)
    assert m.returncode == 1, (out, err)
    assert "post-copy failed after the switch-over" in err, err
    assert src.proc.poll() is None, src.err()
    r = ctl(src, "--vm=src", "--resume")
    assert r.returncode == 1, r.stdout
    assert "a post-copy migration failed after the switch-over" in \
        r.stderr, r.stderr
    st = ctl(src, "--json", "status", "src")
    assert st.returncode == 0 and st.stdout.strip(), st.stderr
    assert json.loads(st.stdout)["state"] == "paused", st.stdout
