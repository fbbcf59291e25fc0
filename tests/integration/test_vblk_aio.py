"""virtio-blk's three back-ends (aio=io_uring, threads, sync; issue 18)
under the fast test guest's own drivers (tests/guests/virtio.c): each
serves the guest's reads, writes and flushes, says which one it is in
`khyvectl stats`, keeps what it acknowledged across a kill -9, drains
at a pause so a snapshot holds exactly the completed prefix, and turns
host faults (the image truncated under the guest, a full file system)
into an I/O error status for the guest while khyve keeps running.
test_virtio.py runs its block tests with each back-end too; the long
in-flight stream across live checkpoints (test_snapshot.py) runs with the
default (io_uring) only, to keep make check's time.

Needs /dev/kvm; skipped (with the reason) where it is absent."""
import ctypes
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import time

import pytest

from conftest import GUEST, KHYVE, KHYVECTL, needs_kvm
from test_snapshot import VSTREAM, complete, ctl_json, restored, \
    stamp_image, stream_stamps, verify, vstream_done, wait_vstream
from test_virtio import NSECT, g_pattern, make_image, qword_sum

pytestmark = needs_kvm

AIOS = ["io_uring", "threads", "sync"]
# The slow cases run with every back-end only when asked (KHYVE_VBLK_AIO_ALL=1):
# by default io_uring is left to test_snapshot.py's longer stream test,
# which runs with the default back-end, to keep make check's time.
SLOW_AIOS = AIOS if os.environ.get("KHYVE_VBLK_AIO_ALL") else AIOS[1:]
# threads: two workers, so that the pool runs even where the machine's
# default is none (2 CPUs, virtio_blk_default_workers()).
OPT = {"io_uring": ",aio=io_uring", "threads": ",aio=threads,workers=2",
       "sync": ",aio=sync"}


def boot(guest_factory, disk, cmdline, name="t", mem="128M"):
    return guest_factory(["-m", mem, "-k", GUEST, "-a", cmdline,
                          "-l", "com1,stdio", "-s", "2,virtio-blk," + disk],
                         name=name)


def blk_stats(g):
    st = ctl_json(g, "stats", g.name)
    return st["devices"]["virtio-blk@2:0"]


@pytest.mark.parametrize("aio", AIOS)
def test_flush_survives_kill9_and_stats_name_backend(guest_factory,
                                                     tmp_path, aio):
    """The guest reads, writes, flushes and verifies, then counts: once
    it counts, everything it was told is written is in the image, even
    with khyve killed by SIGKILL (nothing acknowledged is held back in
    khyve). `khyvectl stats` names the back-end; io_uring is asked for
    by default (no aio=), which this kernel has."""
    img = str(tmp_path / "disk.img")
    head = make_image(img)
    g = boot(guest_factory, img + ("" if aio == "io_uring" else OPT[aio]),
             "tests=vblk vblk_sectors=%d counter interval_ms=50" % NSECT)
    assert g.wait_for("KHYVE-COUNTER 1 ", 120), g.read()
    out = g.read()
    assert "KHYVE-TEST vblk PASS op=flush status=0" in out, out
    m = re.search(r"KHYVE-TEST vblk PASS op=read sectors=%d sum=0x([0-9a-f]+)"
                  % NSECT, out)
    assert m and int(m.group(1), 16) == qword_sum(head), out
    assert "KHYVE-TEST vblk PASS op=verify sectors=%d bad=0" % NSECT in out
    st = blk_stats(g)
    assert st["aio"] == aio, st
    assert st["flushes"] >= 1 and st["errors"] == 0, st
    os.kill(g.proc.pid, signal.SIGKILL)
    assert g.finish() == -signal.SIGKILL
    with open(img, "rb") as f:
        data = f.read()
    base = NSECT * 512
    assert data[:base] == head
    got = struct.unpack("<%dQ" % (NSECT * 64), data[base:2 * base])
    assert all(v == g_pattern(base + i * 8) for i, v in enumerate(got))


@pytest.mark.parametrize("aio", SLOW_AIOS)
def test_pause_snapshot_mid_stream_then_restore(guest_factory, tmp_path,
                                                aio):
    """16 writes always in flight; a pause drains them (no request half
    done), a checkpoint is taken while paused and the image copied: the
    copy holds exactly a prefix of the stream (every request the guest
    saw complete, none after a gap). The original goes on; restored on
    the copy (with the same back-end), the guest goes on from where it
    was, none lost, repeated or bad, and the copy then holds the stream
    up to where it got. (The stream is long so that it never ends before
    the pause on a fast host; neither run is waited for to the end.)"""
    n = 30000
    img = str(tmp_path / "disk.img")
    with open(img, "wb") as f:
        f.truncate(128 << 20)
    disk = img + OPT[aio]
    g = boot(guest_factory, disk, "tests=vstream vstream_n=%d vstream_qd=16"
             % n)
    assert wait_vstream(g, 800), g.read()
    assert g.ctl("pause", "t").returncode == 0
    st = blk_stats(g)
    assert st["aio"] == aio, st
    snap = str(tmp_path / "p.snap")
    ctl_json(g, "checkpoint", "t", snap)
    seen = vstream_done(g.read())
    img2 = str(tmp_path / "disk2.img")
    shutil.copy(img, img2)
    assert g.ctl("resume", "t").returncode == 0
    assert wait_vstream(g, seen + 300), g.read()
    assert g.ctl("poweroff", "t", "--force").returncode == 0
    g.finish()
    assert not [x for x in VSTREAM.findall(complete(g.read()))
                if x[2] != "0" or x[3] != "0"], g.read()
    st = stream_stamps(img2, n)
    k = st.index(None) if None in st else n
    assert st[:k] == list(range(k)) and set(st[k:]) == {None}, st[:k + 20]
    assert seen <= k < n, (seen, k)
    r = restored(guest_factory, snap, "vr", ["-s", "2,virtio-blk," +
                                             img2 + OPT[aio]])
    assert wait_vstream(r, k + 500), (r.read(), r.proc.poll())
    assert r.ctl("poweroff", "vr", "--force").returncode == 0
    r.finish()
    out = complete(r.read())
    lines = VSTREAM.findall(out)
    first, last = int(lines[0][0]), int(lines[-1][0])
    assert seen < first <= k + 100, (seen, k, out[:300])
    assert not [x for x in lines if x[2] != "0" or x[3] != "0"], out
    st = stream_stamps(img2, n)
    assert st[:last] == list(range(last)), st[:last]
    verify(r, snap)


def stream_result(g):
    """(done, dup, bad, lost) of the guest's final vstream line (it then
    counts: "counter" on its command line, so khyve is still there)."""
    assert g.wait_for("KHYVE-TEST vstream", 120), g.read()
    assert g.wait_for("KHYVE-COUNTER 1 ", 60), g.read()
    m = re.search(r"KHYVE-TEST vstream (?:PASS|FAIL) done=(\d+) sent=\d+ "
                  r"dup=(\d+) order=\d+ bad=(\d+) lost=(\d+)", g.read())
    assert m, g.read()
    return tuple(int(x) for x in m.groups())


@pytest.mark.parametrize("aio", AIOS)
def test_image_truncated_under_the_guest(guest_factory, tmp_path, aio):
    """The guest reads its stamps round and round; the image is cut short
    under it: reads past the new end fail with VIRTIO_BLK_S_IOERR (the
    guest counts them bad, khyve counts errors), every request still
    completes (no dup, none lost) and khyve keeps serving: it answers
    status afterwards and the guest finishes."""
    span, n = 256, 2000
    img = str(tmp_path / "stamps.img")
    stamp_image(img, span, 2048 * 512 + span * 4096 + (1 << 20))
    g = boot(guest_factory, img + OPT[aio],
             "tests=vstream vstream_read=1 vstream_n=%d vstream_span=%d "
             "vstream_qd=16 counter interval_ms=50" % (n, span))
    assert wait_vstream(g, 300), g.read()
    os.truncate(img, 2048 * 512)  # every stamp gone
    done, dup, bad, lost = stream_result(g)
    assert (done, dup, lost) == (n, 0, 0), g.read()
    assert 0 < bad <= n - 300, g.read()
    st = blk_stats(g)
    assert st["errors"] >= bad and st["aio"] == aio, st
    assert g.ctl("status", "t").returncode == 0
    assert g.ctl("poweroff", "t", "--force").returncode == 0
    g.finish()


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 2 MiB tmpfs: a sparse image on it fails writes with ENOSPC once
    the guest has filled it."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs",
                        str(mnt)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip("cannot mount a tmpfs: " + r.stderr.strip())
    try:
        yield str(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


@pytest.mark.parametrize("aio", AIOS)
def test_host_enospc_is_an_io_error_for_the_guest(guest_factory, small_tmpfs,
                                                  aio):
    """1000 4 KiB writes to a 16 MiB sparse image on a 2 MiB file system:
    the first ~500 fit, the rest fail on the host with ENOSPC and reach
    the guest as VIRTIO_BLK_S_IOERR; every request completes and khyve
    keeps running."""
    n = 1000
    img = os.path.join(small_tmpfs, "disk.img")
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    g = boot(guest_factory, img + OPT[aio],
             "tests=vstream vstream_n=%d vstream_qd=16 counter "
             "interval_ms=50" % n)
    done, dup, bad, lost = stream_result(g)
    assert (done, dup, lost) == (n, 0, 0), g.read()
    assert 100 < bad < n, g.read()
    st = blk_stats(g)
    assert st["errors"] >= bad - 1 and st["aio"] == aio, st
    assert g.ctl("poweroff", "t", "--force").returncode == 0
    g.finish()


# ---- io_uring refused: the threads back-end takes over ----

def seccomp_refuse_io_uring():
    """preexec_fn: a seccomp filter (as container runtimes install) that
    fails io_uring_setup with EPERM and allows everything else."""
    libc = ctypes.CDLL(None, use_errno=True)
    # struct sock_filter {u16 code; u8 jt, jf; u32 k}
    ld_arch, ld_nr = 0x20, 0x20       # BPF_LD|BPF_W|BPF_ABS
    jeq, ret = 0x15, 0x06             # BPF_JMP|BPF_JEQ|BPF_K, BPF_RET|BPF_K
    prog = [(ld_arch, 0, 0, 4),                  # seccomp_data.arch
            (jeq, 0, 3, 0xc000003e),             # AUDIT_ARCH_X86_64
            (ld_nr, 0, 0, 0),                    # seccomp_data.nr
            (jeq, 0, 1, 425),                    # __NR_io_uring_setup
            (ret, 0, 0, 0x00050000 | 1),         # SECCOMP_RET_ERRNO|EPERM
            (ret, 0, 0, 0x7fff0000)]             # SECCOMP_RET_ALLOW
    buf = b"".join(struct.pack("<HBBI", *i) for i in prog)
    filt = ctypes.create_string_buffer(buf)
    fprog = struct.pack("<HxxxxxxQ", len(prog), ctypes.addressof(filt))
    fp = ctypes.create_string_buffer(fprog)
    ul = ctypes.c_ulong
    if libc.prctl(38, ul(1), ul(0), ul(0), ul(0)):  # PR_SET_NO_NEW_PRIVS
        os._exit(97)
    # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
    if libc.prctl(22, ul(2), ctypes.c_void_p(ctypes.addressof(fp)), ul(0),
                  ul(0)):
        os._exit(98)


def test_io_uring_refused_falls_back(tmp_path, rundir):
    """khyve under a profile that refuses io_uring_setup with EPERM: the
    disk (default and aio=io_uring alike) is served by the threads
    back-end (sync where the machine's default pool is empty), the guest's
    block test passes, stats say which back-end it got."""
    img = str(tmp_path / "disk.img")
    make_image(img)
    p = subprocess.Popen(
        [KHYVE, "--rundir", rundir, "-m", "128M", "-k", GUEST, "-a",
         "tests=vblk vblk_sectors=%d counter interval_ms=50" % NSECT,
         "-l", "com1,stdio", "-s", "2,virtio-blk,%s,aio=io_uring" % img,
         "u"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=seccomp_refuse_io_uring)
    try:
        out = b""
        os.set_blocking(p.stdout.fileno(), False)
        for _ in range(6000):
            out += p.stdout.read() or b""
            if b"KHYVE-COUNTER 1 " in out or p.poll() is not None:
                break
            time.sleep(0.02)
        text = out.decode(errors="replace")
        assert "KHYVE-TEST vblk PASS op=verify sectors=%d bad=0" % NSECT \
            in text, (text, p.poll())
        assert "FAIL" not in text, text
        r = subprocess.run([KHYVECTL, "--rundir", rundir, "stats", "u",
                            "--json"], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        st = json.loads(r.stdout)["devices"]["virtio-blk@2:0"]
        assert st["aio"] in ("threads", "sync"), st
    finally:
        p.kill()
        p.wait(15)
    err = p.stderr.read().decode(errors="replace")
    assert "no io_uring (Operation not permitted)" in err, err


@pytest.mark.parametrize("opt,msg", [
    ("aio=native", "aio=native: want io_uring, threads or sync"),
    ("aio=sync,workers=4", "aio=sync runs no workers (workers=4)"),
])
def test_bad_aio_option_refused(tmp_path, opt, msg):
    """A wrong aio= is one line naming the slot, and no VM."""
    img = str(tmp_path / "disk.img")
    make_image(img)
    r = subprocess.run([KHYVE, "--rundir", str(tmp_path / "run"), "-k", GUEST,
                        "-s", "2,virtio-blk,%s,%s" % (img, opt), "vm"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 4, r.stderr
    assert "-s 2,virtio-blk: " + msg in r.stderr, r.stderr
