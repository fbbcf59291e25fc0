"""The progress line of long saves and eager restores (issue 6, item 6):
drawn only on a terminal, so scripts reading khyvectl's or khyve's output
through pipes see exactly what they saw before. Needs /dev/kvm."""
import contextlib
import fcntl
import json
import os
import select
import struct
import subprocess
import time

import pytest

from conftest import GUEST, KHYVE, KHYVECTL, needs_kvm

ERASE = b"\x1b[K"


def boot(guest_factory):
    g = guest_factory(["-m", "64M", "-k", GUEST, "-a",
                       "counter interval_ms=50 touch_mb=16", "-l",
                       "com1,stdio"])
    assert g.wait_for("KHYVE-COUNTER 2 ", 120), g.read()
    return g


@contextlib.contextmanager
def pty_pair(tmp_path):
    """(master, slave) fds of a pseudo-terminal. The nested machine of
    tests/nested/run.sh has no /dev/pts: there (as root) a private devpts
    instance is mounted for the test."""
    mnt = None
    try:
        m, s = os.openpty()
    except FileNotFoundError:
        if os.geteuid() != 0:
            pytest.skip("no pseudo-terminals here (no /dev/ptmx)")
        mnt = str(tmp_path / "pts")
        os.makedirs(mnt, exist_ok=True)
        subprocess.run(["mount", "-t", "devpts", "-o",
                        "newinstance,ptmxmode=0666", "devpts", mnt],
                       check=True, timeout=60)
        m = os.open(mnt + "/ptmx", os.O_RDWR | os.O_NOCTTY)
        # Python's termios lacks these two: _IOW('T', 0x31, int) and
        # _IOR('T', 0x30, unsigned int) from <asm-generic/ioctls.h>.
        tiocsptlck, tiocgptn = 0x40045431, 0x80045430
        fcntl.ioctl(m, tiocsptlck, struct.pack("i", 0))
        n = struct.unpack("i", fcntl.ioctl(m, tiocgptn,
                                           struct.pack("i", 0)))[0]
        s = os.open("%s/%d" % (mnt, n), os.O_RDWR | os.O_NOCTTY)
    fds = [m, s]
    try:
        yield fds
    finally:
        for fd in fds:
            if fd >= 0:
                os.close(fd)
        if mnt:
            subprocess.run(["umount", "-l", mnt], timeout=60)


def drain(fd, until, timeout=30):
    """Read a pty master until @until shows up (or the other side ends)."""
    out = b""
    end = time.time() + timeout
    while until not in out and time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if not r:
            continue
        try:
            data = os.read(fd, 4096)
        except OSError:  # EIO: every slave fd closed
            break
        if not data:
            break
        out += data
    return out


@needs_kvm
def test_checkpoint_reply_unchanged_without_terminal(guest_factory,
                                                     tmp_path):
    g = boot(guest_factory)
    snap = str(tmp_path / "p.snap")
    env = dict(os.environ, KHYVE_PROGRESS_DELAY_MS="0")
    r = subprocess.run([KHYVECTL, "--rundir", g.rundir, "--json",
                        "checkpoint", "t", snap], capture_output=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr == b""
    # one JSON document, the reply's result, no progress anywhere
    res = json.loads(r.stdout)
    assert res["file"] == snap and res["bytes"] > 16 << 20, res
    assert b"progress" not in r.stdout and ERASE not in r.stdout
    r = subprocess.run([KHYVECTL, "--rundir", g.rundir, "checkpoint", "t",
                        snap], capture_output=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr == b"" and r.stdout.startswith(b"VM 't' checkpointed\n")


@needs_kvm
def test_progress_line_on_terminal(guest_factory, tmp_path):
    g = boot(guest_factory)
    snap = str(tmp_path / "p.snap")
    env = dict(os.environ, KHYVE_PROGRESS_DELAY_MS="0")
    with pty_pair(tmp_path) as fds:
        r = subprocess.run([KHYVECTL, "--rundir", g.rundir, "--json",
                            "checkpoint", "t", snap], stdout=subprocess.PIPE,
                           stderr=fds[1], env=env, timeout=120)
        os.close(fds[1])
        fds[1] = -1
        # khyvectl has exited; what it wrote reaches the master side
        # through a kernel work item: waited for, bounded.
        tty = drain(fds[0], b"\r" + ERASE, 30)
    assert r.returncode == 0
    # drawn on the terminal and erased at the end; stdout untouched
    assert b"\rsaving t: " in tty and b"/64 MiB" in tty, tty
    assert tty.endswith(b"\r" + ERASE), tty
    assert json.loads(r.stdout)["file"] == snap
    g.stop()

    # khyve -r --eager draws its own copy progress on a terminal stderr
    with pty_pair(tmp_path) as fds:
        p = subprocess.Popen([KHYVE, "--rundir", g.rundir, "-r", snap,
                              "--eager", "e"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=fds[1], env=env)
        try:
            os.close(fds[1])
            fds[1] = -1
            tty = drain(fds[0], b"\r" + ERASE, 60)
            os.set_blocking(p.stdout.fileno(), False)
            out = b""
            end = time.time() + 60
            while b"KHYVE-COUNTER" not in out and time.time() < end:
                out += p.stdout.read() or b""
                time.sleep(0.05)
        finally:
            p.kill()
            p.wait(15)
    assert b"\rkhyve: restoring guest RAM: " in tty, tty
    assert b"/64 MiB" in tty and b"\r" + ERASE in tty, tty
    assert b"KHYVE-COUNTER" in out, out
