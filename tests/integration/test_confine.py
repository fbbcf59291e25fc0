"""Confinement of the khyve process (issue 16, docs/security.md
"Confinement"): guest RAM never in a core file, no core at all unless
asked, inherited descriptors closed, no-new-privs and limits set, and
--user dropping to another user once everything is open - with the guest,
checkpoints and restores still working. Judged by the kernel's own view
(/proc/PID/status, limits, smaps, fd) and by what the guest reports."""
import os
import pwd
import resource
import shutil
import signal
import struct
import subprocess
import tempfile
import time

import pytest

from conftest import GUEST, KHYVE, KHYVECTL, Guest, needs_kvm
from test_snapshot import last_tick, wait_tick

MEM_MB = 64
# The mem test fills all RAM above the guest image with its pattern; the
# counter then keeps the guest running.
CMDLINE = "tests=mem counter interval_ms=50"
SEED = 0x6b68797665  # tests/guests: the default pattern seed
M64 = (1 << 64) - 1


def pattern(addr, seed=SEED):
    """tests/guests/gutil.c g_pattern(): the qword the mem test leaves at
    guest physical address @addr."""
    x = addr ^ seed
    x = ((x ^ (x >> 30)) * 0xbf58476d1ce4e5b9) & M64
    x = ((x ^ (x >> 27)) * 0x94d049bb133111eb) & M64
    return x ^ (x >> 31)


def needles():
    """32 bytes of the pattern at a few guest addresses well above the
    image: any one in a file means guest RAM is in it."""
    return [b"".join(struct.pack("<Q", pattern(a + 8 * i)) for i in range(4))
            for a in (16 << 20, 32 << 20, (MEM_MB - 4) << 20)]


def holds_guest_ram(path):
    data = open(path, "rb").read()
    return [n.hex() for n in needles() if n in data]


def core_unlimited():
    resource.setrlimit(resource.RLIMIT_CORE,
                       (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def core_env():
    """A sanitizer build (KHYVE_BUILD=build-san) turns core dumps off by
    itself: let it dump, so the check is khyve's, not ASan's."""
    env = dict(os.environ)
    opts = env.get("ASAN_OPTIONS", "")
    env["ASAN_OPTIONS"] = (opts + ":" if opts else "") + "disable_coredump=0"
    return env


def no_leak_check(monkeypatch):
    """A sanitized khyve (make check's) checks for leaks at exit with
    LeakSanitizer, which needs /proc: a chroot without /proc takes it
    away, and khyve then hangs at exit until the test's 60 s wait kills
    it. Address and UB checks stay on. (The seccomp filters of a
    sanitizer build allow what the leak check needs: docs/security.md.)"""
    opts = os.environ.get("ASAN_OPTIONS", "")
    monkeypatch.setenv("ASAN_OPTIONS", opts + ":detect_leaks=0")


class CwdGuest(Guest):
    """A khyve started in @cwd with an unlimited core size, so that what
    it dumps lands there (core_pattern "core" is relative to the cwd)."""

    def __init__(self, args, rundir, name, cwd, pass_fds=()):
        self.name = name
        self.rundir = rundir
        self.proc = subprocess.Popen(
            [KHYVE, "--rundir", rundir] + args + [name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd=cwd, preexec_fn=core_unlimited,
            pass_fds=pass_fds, env=core_env())
        self.out = b""
        os.set_blocking(self.proc.stdout.fileno(), False)


@pytest.fixture
def cwd_guests(rundir):
    made = []

    def make(args, name, cwd, pass_fds=()):
        g = CwdGuest(args, rundir, name, cwd, pass_fds)
        made.append(g)
        return g

    yield make
    for g in made:
        g.stop()


def plain_core_pattern():
    """Cores land as "core" in the cwd only with the default pattern; it
    is host-global, so it is read here, never changed."""
    with open("/proc/sys/kernel/core_pattern") as f:
        pat = f.read().strip()
    with open("/proc/sys/kernel/core_uses_pid") as f:
        uses_pid = f.read().strip() != "0"
    return pat == "core" and not uses_pid


def status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split(":", 1)[1].split()
    return None


def limit(pid, name):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith(name):
                return line[len(name):].split()[:2]
    return None


def ram_vmas(pid, size):
    """VmFlags of every mapping of exactly @size bytes (guest RAM)."""
    found, cur = [], None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and ":" not in head[0]:
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                cur = (hi - lo == size, line.strip())
            elif line.startswith("VmFlags:") and cur and cur[0]:
                found.append((cur[1], head[1:]))
    return found


def boot(cwd_guests, tmp, name, extra=()):
    g = cwd_guests(["-m", "%dM" % MEM_MB, "-k", GUEST, "-a", CMDLINE,
                    "-l", "com1,stdio"] + list(extra), name, tmp)
    assert wait_tick(g, 3), g.read()
    return g


def segv(g, tmp):
    """Crash khyve the way a bug would; its status says it died of it."""
    os.kill(g.proc.pid, signal.SIGSEGV)
    assert g.finish() == -signal.SIGSEGV, g.proc.stderr.read()
    return os.path.join(tmp, "core")


@needs_kvm
def test_no_core_by_default(cwd_guests, tmp_path):
    """Without --allow-core-dump: core limit 0 and not dumpable, so even
    a parent that allows cores gets none."""
    tmp = str(tmp_path)
    g = boot(cwd_guests, tmp, "nocore")
    assert limit(g.proc.pid, "Max core file size") == ["0", "0"]
    core = segv(g, tmp)
    if not plain_core_pattern():
        pytest.skip("core_pattern is not the default 'core': the core "
                    "file cannot be looked for (limits checked)")
    assert not os.path.exists(core), os.listdir(tmp)


@needs_kvm
def test_guest_ram_not_in_core(cwd_guests, tmp_path):
    """--allow-core-dump: a core is written, without guest RAM in it (its
    pattern is in the RAM file of a checkpoint, so the search works) -
    booted, and after a mapped restore replaced guest RAM's mapping."""
    if not plain_core_pattern():
        pytest.skip("core_pattern is not the default 'core'")
    tmp = str(tmp_path)
    size = MEM_MB << 20
    g = boot(cwd_guests, tmp, "core", ["--allow-core-dump"])
    vmas = ram_vmas(g.proc.pid, size)
    assert vmas and all("dd" in f for _, f in vmas), vmas
    snap = os.path.join(tmp, "s.khyve")
    r = g.ctl("checkpoint", g.name, snap)
    assert r.returncode == 0, r.stderr
    assert len(holds_guest_ram(snap + ".ram")) == 3
    core = segv(g, tmp)
    assert os.path.getsize(core) > 0
    assert holds_guest_ram(core) == [], "guest RAM in the core file"
    os.unlink(core)

    g2 = cwd_guests(["-r", snap, "--allow-core-dump"], "core2", tmp)
    assert wait_tick(g2, last_tick(g2) + 3), g2.read()
    vmas = ram_vmas(g2.proc.pid, size)
    # the RAM file's own mapping, with the flag set again
    assert [v for v in vmas if "s.khyve.ram" in v[0]], vmas
    assert all("dd" in f for _, f in vmas), vmas
    core = segv(g2, tmp)
    assert os.path.getsize(core) > 0
    assert holds_guest_ram(core) == [], "guest RAM in the core file"


@needs_kvm
def test_start_hygiene(cwd_guests, tmp_path):
    """A descriptor the parent leaked is closed; no-new-privs; the
    descriptor limit is khyve's own."""
    tmp = str(tmp_path)
    leak = os.open(tmp, os.O_RDONLY)
    try:
        g = cwd_guests(
            ["-m", "%dM" % MEM_MB, "-k", GUEST, "-a", CMDLINE,
             "-l", "com1,stdio"], "hyg", tmp, pass_fds=(leak,))
        assert wait_tick(g, 3), g.read()
    finally:
        os.close(leak)
    fds = {int(f): os.readlink("/proc/%d/fd/%s" % (g.proc.pid, f))
           for f in os.listdir("/proc/%d/fd" % g.proc.pid)}
    assert tmp not in fds.values(), fds
    assert status(g.proc.pid, "NoNewPrivs") == ["1"]
    assert limit(g.proc.pid, "Max open files") == ["4096", "4096"]


def nobody():
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        return None


@pytest.fixture
def nobody_dir():
    """A directory the dropped user can write (pytest's tmp_path sits
    under a 0700 directory of root's)."""
    d = tempfile.mkdtemp(prefix="khyve-sec16-")
    pw = nobody()
    os.chown(d, pw.pw_uid, pw.pw_gid)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@needs_kvm
@pytest.mark.skipif(os.geteuid() != 0 or not nobody(),
                    reason="needs root and a 'nobody' user")
def test_user_drop(cwd_guests, nobody_dir):
    """--user nobody: the process runs as nobody (every uid and gid, no
    other group), the guest runs, checkpoint and restore work after the
    drop and the snapshot verifies."""
    pw = nobody()
    uid, gid = str(pw.pw_uid), str(pw.pw_gid)
    g = boot(cwd_guests, nobody_dir, "drop", ["--user", "nobody"])
    assert status(g.proc.pid, "Uid") == [uid] * 4
    assert status(g.proc.pid, "Gid") == [gid] * 4
    assert status(g.proc.pid, "Groups") == [gid]
    snap = os.path.join(nobody_dir, "d.khyve")
    r = g.ctl("checkpoint", g.name, snap)
    assert r.returncode == 0, r.stderr
    assert os.stat(snap).st_uid == pw.pw_uid
    n = last_tick(g)
    assert wait_tick(g, n + 3), g.read()
    r = subprocess.run([KHYVECTL, "snapshot", "verify", snap],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    g.ctl("poweroff", g.name, "--force")
    g.finish()

    g2 = cwd_guests(["-r", snap, "--user", "nobody"], "drop2", nobody_dir)
    assert wait_tick(g2, n + 3), g2.read()
    assert status(g2.proc.pid, "Uid") == [uid] * 4
    r = g2.ctl("checkpoint", g2.name, snap + "2")
    assert r.returncode == 0, r.stderr
    r = g2.ctl("status", g2.name)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("args,msg", [
    (["--user", "no-such-user-khyve"], "--user no-such-user-khyve: no such "
     "user"),
    (["--group", "nogroup"], "--group needs --user"),
    (["--user", "nobody", "--group", "no-such-group-khyve"],
     "--group no-such-group-khyve: no such group"),
])
def test_confine_option_errors(args, msg, tmp_path):
    r = subprocess.run([KHYVE, "--rundir", str(tmp_path), "-k", GUEST] +
                       args + ["bad"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 4
    assert r.stderr == "khyve: %s\n" % msg, r.stderr


@needs_kvm
@pytest.mark.skipif(os.geteuid() != 0 or not nobody(),
                    reason="needs root and a 'nobody' user")
def test_chroot(cwd_guests, tmp_path, monkeypatch):
    """--chroot DIR --user nobody, jailer-style: a root-owned DIR with a
    snapshot directory of the user's in it. khyve's root is DIR, paths in
    requests are inside it, and the snapshot written there restores."""
    no_leak_check(monkeypatch)
    jail = tempfile.mkdtemp(prefix="khyve-jail-")
    try:
        pw = nobody()
        os.chmod(jail, 0o755)  # the user must get into its root
        os.mkdir(os.path.join(jail, "snaps"))
        os.chown(os.path.join(jail, "snaps"), pw.pw_uid, pw.pw_gid)
        g = boot(cwd_guests, str(tmp_path), "jail",
                 ["--chroot", jail, "--user", "nobody"])
        assert os.readlink("/proc/%d/root" % g.proc.pid) == jail
        assert status(g.proc.pid, "Uid") == [str(pw.pw_uid)] * 4
        r = g.ctl("checkpoint", g.name, "/snaps/j.khyve")
        assert r.returncode == 0, r.stderr
        snap = os.path.join(jail, "snaps", "j.khyve")
        n = last_tick(g)
        g.ctl("poweroff", g.name, "--force")
        g.finish()
        g2 = cwd_guests(["-r", snap, "--chroot", jail, "--user", "nobody"],
                        "jail2", str(tmp_path))
        assert wait_tick(g2, n + 3), g2.read()
        assert os.readlink("/proc/%d/root" % g2.proc.pid) == jail
        # /proc is not in the jail: stats still answer
        r = g2.ctl("stats", g2.name)
        assert r.returncode == 0, r.stderr
    finally:
        shutil.rmtree(jail, ignore_errors=True)


def seccomp_modes(pid):
    """Each thread's name and Seccomp mode (2: filter)."""
    out = {}
    for t in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/comm" % (pid, t)) as f:
            comm = f.read().strip()
        with open("/proc/%d/task/%s/status" % (pid, t)) as f:
            mode = f.read().split("Seccomp:")[1].split()[0]
        out.setdefault(comm, set()).add(mode)
    return out


@needs_kvm
def test_seccomp_kill_mode(cwd_guests, tmp_path):
    """--seccomp=kill with a disk: every thread is filtered, the guest
    runs its disk test, a checkpoint and a mapped restore (itself under
    the filters) work, and nothing was killed."""
    tmp = str(tmp_path)
    img = os.path.join(tmp, "d.img")
    with open(img, "wb") as f:
        f.truncate(8 << 20)
    g = cwd_guests(["--seccomp=kill", "-c", "2", "-m", "%dM" % MEM_MB,
                    "-k", GUEST, "-a", "tests=serial,vblk,smp " + CMDLINE,
                    "-s", "2,virtio-blk," + img, "-l", "com1,stdio"],
                   "sc", tmp)
    assert wait_tick(g, 3), g.read() + g.proc.stderr.read1().decode()
    assert "KHYVE-TEST vblk PASS" in g.read(), g.read()
    modes = seccomp_modes(g.proc.pid)
    assert all(m == {"2"} for m in modes.values()), modes
    assert "vcpu0" in modes and "vcpu1" in modes, modes
    snap = os.path.join(tmp, "sc.khyve")
    r = g.ctl("checkpoint", g.name, snap)
    assert r.returncode == 0, r.stderr
    n = last_tick(g)
    g.ctl("poweroff", g.name, "--force")
    g.finish()
    assert "seccomp" not in g.proc.stderr.read().decode()
    g2 = cwd_guests(["-r", snap, "--seccomp=kill"], "sc2", tmp)
    assert wait_tick(g2, n + 3), g2.read()
    r = g2.ctl("checkpoint", g2.name, snap)
    assert r.returncode == 0, r.stderr
    assert g2.proc.poll() is None
