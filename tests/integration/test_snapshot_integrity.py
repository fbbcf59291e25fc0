"""Snapshot integrity and trust (issue 13, "Nothing lost, nobody in").

1. A failed save leaves the previous state/RAM pair exactly as it was,
   whatever step fails (KHYVE_FAULT_INJECT makes each step fail on
   purpose), and leaves nothing behind; a restore refuses a state file and
   a RAM file from different saves (the save id in both).
3. A snapshot names host paths: the RAM file must be a bare name beside
   the state file; nothing the snapshot names is opened before the whole
   file is validated, nor created or truncated unless the command line
   names it; `khyvectl snapshot info` lists it all.
4. A FIFO, device node or symlink at a snapshot path is refused at once,
   by checkpoint and by restore.
8. A RAM file that shrinks under a mapped restore: the next save refuses
   (instead of dying of SIGBUS), a restore refuses to start, and the read
   lease makes khyve warn about the writer.

Needs /dev/kvm for the guests. Hostile snapshots are edited here and
resealed (libxxhash through ctypes, the format of docs/snapshot-format.md).
"""
import ctypes
import hashlib
import json
import os
import re
import shutil
import stat
import struct
import subprocess
import time

import pytest

from conftest import GUEST, KHYVE, KHYVECTL, Guest, needs_kvm
from test_snapshot import (check_continues, last_tick, tick_after_checkpoint,
                           ticks, wait_tick)

COUNTER = "counter interval_ms=50 check_every=5"
MEM = "64M"
STEPS = ["ram-write", "ram-commit", "state-write", "state-commit",
         "device-save"]


# ---- guests ----

def boot(guest_factory, name="t", extra=(), fault=None):
    """The fast test guest; @fault arms KHYVE_FAULT_INJECT for it only."""
    old = os.environ.get("KHYVE_FAULT_INJECT")
    if fault:
        os.environ["KHYVE_FAULT_INJECT"] = fault
    try:
        return guest_factory(["-m", MEM, "-k", GUEST, "-a", COUNTER,
                              "-l", "com1,stdio"] + list(extra), name=name)
    finally:
        if old is None:
            os.environ.pop("KHYVE_FAULT_INJECT", None)
        else:
            os.environ["KHYVE_FAULT_INJECT"] = old


def runs_on(g, more=2):
    """The guest is alive and still ticking."""
    assert g.proc.poll() is None, g.proc.stderr.read().decode()
    t = last_tick(g)
    assert wait_tick(g, t + more), g.read()


def stderr_of(g):
    """khyve's stderr so far (it is a pipe nobody else reads)."""
    os.set_blocking(g.proc.stderr.fileno(), False)
    try:
        data = g.proc.stderr.read() or b""
    except (BlockingIOError, ValueError):
        data = b""
    g.err = getattr(g, "err", b"") + data
    return g.err.decode(errors="replace")


def checkpoint(g, path):
    r = g.ctl("checkpoint", g.name, str(path), "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def restore_run(rundir, snap, *extra, timeout=60):
    """khyve -r that must refuse at once: (status, stderr)."""
    p = subprocess.run([KHYVE, "--rundir", rundir, "-r", str(snap)] +
                       list(extra) + ["bad"], capture_output=True,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert "KHYVE-" not in p.stdout, p.stdout  # no guest ran
    return p.returncode, p.stderr


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def snapshot_of(d):
    return {n: sha(os.path.join(d, n)) for n in sorted(os.listdir(d))}


def verify(snap):
    return subprocess.run([KHYVECTL, "snapshot", "verify", str(snap)],
                          capture_output=True, text=True, timeout=120)


# ---- 1. a failed save keeps the previous pair ----

@needs_kvm
@pytest.mark.parametrize("step", STEPS)
def test_failed_save_keeps_previous_pair(guest_factory, tmp_path, rundir,
                                         step):
    """Save 1 succeeds; saves 2 (live, same path), 3 (paused, same path)
    and 4 (suspend, new path) fail at @step: the guest runs on, the
    directory holds exactly the first pair, byte for byte, which verifies
    and restores to the first save's tick."""
    d = tmp_path / "snaps"
    d.mkdir()
    snap = d / "s.snap"
    g = boot(guest_factory, fault=step + "@2+")
    assert wait_tick(g, 3), g.read()
    before = last_tick(g)
    res = checkpoint(g, snap)
    saved = tick_after_checkpoint(g)
    assert res["live"] is True, res
    good = snapshot_of(d)
    assert sorted(good) == ["s.snap", "s.snap.ram"], good

    def failed(r):
        assert r.returncode != 0, r.stdout
        assert "injected fault" in r.stderr or \
            "No space left on device" in r.stderr, r.stderr
        runs_on(g)
        assert snapshot_of(d) == good, os.listdir(str(d))

    failed(g.ctl("checkpoint", "t", str(snap)))
    assert g.ctl("pause", "t").returncode == 0
    failed_paused = g.ctl("checkpoint", "t", str(snap))
    assert g.ctl("resume", "t").returncode == 0
    failed(failed_paused)
    r = g.ctl("suspend", "t", str(d / "new.snap"))
    failed(r)  # a failed suspend does not end the guest
    assert "KHYVE_FAULT_INJECT" in stderr_of(g)  # it says it is armed
    v = verify(snap)
    assert v.returncode == 0, v.stdout + v.stderr
    assert g.ctl("poweroff", "t", "--force").returncode == 0
    g.finish()
    r = guest_factory(["-r", str(snap)], name="back")
    check_continues(r, before, upto=saved)


@needs_kvm
def test_failed_rollback_leaves_a_refused_pair(guest_factory, tmp_path,
                                               rundir):
    """The state file's rename fails and putting the old RAM file back
    fails too: the two names hold different saves, which restore and
    verify refuse (naming both ids), and the previous RAM file is kept
    under the name the error gives; moved back, the pair restores."""
    d = tmp_path / "snaps"
    d.mkdir()
    snap = d / "s.snap"
    g = boot(guest_factory, fault="rollback@2")
    assert wait_tick(g, 3), g.read()
    before = last_tick(g)
    checkpoint(g, snap)
    saved = tick_after_checkpoint(g)
    r = g.ctl("checkpoint", "t", str(snap))
    assert r.returncode != 0 and "different saves" in r.stderr, r.stderr
    m = re.search(r"the previous RAM file is (\S+)", r.stderr)
    assert m, r.stderr
    kept = m.group(1).rstrip(")")
    assert os.path.basename(kept).startswith(".s.snap.ram.old-"), kept
    runs_on(g)
    st, err = restore_run(rundir, snap)
    assert st == 4 and "come from different saves" in err, err
    assert verify(snap).returncode != 0
    os.rename(kept, str(d / "s.snap.ram"))
    assert sorted(os.listdir(str(d))) == ["s.snap", "s.snap.ram"]
    assert verify(snap).returncode == 0
    g.ctl("poweroff", "t", "--force")
    g.finish()
    b = guest_factory(["-r", str(snap)], name="back")
    check_continues(b, before, upto=saved)


@needs_kvm
def test_restore_refuses_ram_file_of_another_save(guest_factory, tmp_path,
                                                  rundir):
    """Two checkpoints of one guest; the second's RAM file beside the
    first's state file has the right size, so the mapped restore used to
    run it: now the save ids differ and both restores refuse, cheaply."""
    a, b = tmp_path / "a.snap", tmp_path / "b.snap"
    g = boot(guest_factory)
    assert wait_tick(g, 3), g.read()
    checkpoint(g, a)
    t = last_tick(g)
    assert wait_tick(g, t + 3), g.read()
    checkpoint(g, b)
    shutil.copy(str(b) + ".ram", str(a) + ".ram")
    for extra in ([], ["--eager"]):
        st, err = restore_run(rundir, a, *extra)
        assert st == 4, err
        assert str(a) + ".ram" in err and "different saves" in err, err
    g.ctl("poweroff", "t", "--force")


# ---- hostile snapshots: edit and reseal ----

_xxh = ctypes.CDLL("libxxhash.so.0")
_xxh.XXH3_64bits.restype = ctypes.c_uint64
_xxh.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def xxh3(b):
    b = bytes(b)
    return _xxh.XXH3_64bits(b, len(b))


class StateFile:
    """A state file as header + sections; write() reseals every checksum
    (section, end marker, whole file), as anyone can."""

    def __init__(self, path):
        data = open(path, "rb").read()
        hlen = struct.unpack_from("<I", data, 12)[0]
        self.header = data[:hlen]
        self.sections = []  # [header40, name, payload]
        off = hlen
        while data[off:off + 4] == b"SECT":
            nlen = struct.unpack_from("<H", data, off + 6)[0]
            plen = struct.unpack_from("<Q", data, off + 24)[0]
            self.sections.append([bytearray(data[off:off + 40]),
                                  data[off + 40:off + 40 + nlen],
                                  bytearray(data[off + 40 + nlen:
                                                 off + 40 + nlen + plen])])
            off += 40 + nlen + plen

    def section(self, name):
        for s in self.sections:
            if s[1] == name.encode():
                return s
        raise KeyError(name)

    @property
    def config(self):
        return json.loads(bytes(self.section("config")[2]))

    @config.setter
    def config(self, cfg):
        self.section("config")[2] = bytearray(
            json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode())

    def set_ram_name(self, name):
        p = self.section("ram")[2]
        nlen = struct.unpack_from("<H", p, 20)[0]
        self.section("ram")[2] = p[:20] + struct.pack("<H", len(name)) + \
            p[22:24] + name.encode() + p[24 + nlen:]

    def set_u8_field(self, sec, field, value):
        p = self.section(sec)[2]
        off = 4
        for _ in range(struct.unpack_from("<I", p, 0)[0]):
            nlen, typ, _r, count = struct.unpack_from("<BBHI", p, off)
            name = bytes(p[off + 8:off + 8 + nlen]).decode()
            size = {1: 1, 2: 2, 3: 4, 4: 8, 5: 8, 6: 1, 7: 1}[typ]
            if name == field:
                p[off + 8 + nlen] = value
                return
            off += 8 + nlen + count * size
        raise KeyError(field)

    def write(self, path):
        out = bytearray(self.header)
        for hdr, name, payload in self.sections:
            struct.pack_into("<Q", hdr, 24, len(payload))
            struct.pack_into("<Q", hdr, 32,
                             xxh3(bytes(hdr[:32]) + name + bytes(payload)))
            out += hdr + name + payload
        end = struct.pack("<IIQ", 0x444E454B, len(self.sections),
                          len(out) + 24)
        out += end
        out += struct.pack("<Q", xxh3(out))
        open(path, "wb").write(out)


@pytest.fixture(scope="module")
def disk_snap(tmp_path_factory):
    """A suspended test guest with a virtio-blk disk: (dir, state file)."""
    d = tmp_path_factory.mktemp("hostile")
    disk = d / "disk.img"
    disk.write_bytes(b"\0" * (1 << 20))
    snap = d / "g.snap"
    g = Guest(["-m", MEM, "-k", GUEST, "-a", COUNTER, "-l", "com1,stdio",
               "-s", "3,virtio-blk,%s" % disk], str(d / "run"), "good")
    try:
        assert wait_tick(g, 3), g.read()
        r = g.ctl("suspend", "good", str(snap))
        assert r.returncode == 0, r.stderr
        assert g.finish() == 5
    finally:
        g.stop()
    return d, snap


def hostile(disk_snap, tmp_path, name="h.snap", ram=None, console=None,
            disk=None, edit=None):
    """A resealed copy of the good snapshot in tmp_path, its RAM file
    beside it under its recorded name unless @ram renames it."""
    _, good = disk_snap
    sf = StateFile(str(good))
    cfg = sf.config
    if console is not None:
        cfg["console"] = console
    if disk is not None:
        for dev in cfg["devices"]:
            if dev["emulation"] == "virtio-blk":
                dev["conf"] = str(disk)
    sf.config = cfg
    path = tmp_path / name
    if ram is not None:
        sf.set_ram_name(ram)
    else:
        sf.set_ram_name(name + ".ram")
        shutil.copy(str(good) + ".ram", str(path) + ".ram")
    if edit:
        edit(sf)
    sf.write(str(path))
    return path


def victims(tmp_path):
    """Files a hostile snapshot names, and how to tell they were touched."""
    v = tmp_path / "victim.txt"
    v.write_text("precious\n")
    vd = tmp_path / "victim.img"
    vd.write_bytes(b"\x5a" * (1 << 20))
    return v, vd, (v.read_bytes(), os.stat(str(v)).st_mtime_ns,
                   sha(str(vd)), os.stat(str(vd)).st_mtime_ns)


def untouched(v, vd, before):
    assert (v.read_bytes(), os.stat(str(v)).st_mtime_ns, sha(str(vd)),
            os.stat(str(vd)).st_mtime_ns) == before


@needs_kvm
def test_hostile_ram_names_refused_before_any_binding(disk_snap, tmp_path,
                                                      rundir):
    """Absolute and '..' RAM file names are refused (even pointing at a
    valid RAM file), and before the console file:VICTIM the snapshot names
    is opened - it used to be truncated first."""
    good_ram = str(disk_snap[1]) + ".ram"
    v, vd, before = victims(tmp_path)
    sub = tmp_path / "sub"
    sub.mkdir()
    shutil.copy(good_ram, str(tmp_path / "up.ram"))
    for name, where, ram in (("abs.snap", tmp_path, good_ram),
                             ("dots.snap", sub, "../up.ram"),
                             ("dir.snap", tmp_path, "sub/x.ram")):
        snap = hostile(disk_snap, where, name, ram=ram,
                       console="file:" + str(v), disk=vd)
        st, err = restore_run(rundir, snap)
        assert st == 4, err
        assert "not a bare file name beside the state file" in err, err
        untouched(v, vd, before)
        info = subprocess.run([KHYVECTL, "snapshot", "info", str(snap)],
                              capture_output=True, text=True, timeout=60)
        assert "not a bare file name" in info.stdout, info.stdout


@needs_kvm
def test_hostile_section_refused_before_any_binding(disk_snap, tmp_path,
                                                    rundir):
    """A value only this khyve's description refuses (uart rx_len 200 >
    16), resealed: refused by the pre-flight check of the whole file, the
    console file it names untouched, the new file it names not created."""
    v, vd, before = victims(tmp_path)
    newfile = tmp_path / "created.txt"
    for console in ("file:" + str(v), "file:" + str(newfile)):
        snap = hostile(disk_snap, tmp_path, console=console, disk=vd,
                       edit=lambda sf: sf.set_u8_field("uart8250",
                                                       "rx_len", 200))
        st, err = restore_run(rundir, snap)
        assert st == 4, err
        assert "'rx_len': value 200 exceeds maximum 16" in err, err
        untouched(v, vd, before)
        assert not newfile.exists()


@needs_kvm
def test_snapshot_bindings_never_created_or_truncated(disk_snap, tmp_path,
                                                      rundir,
                                                      guest_factory):
    v, vd, before = victims(tmp_path)
    # A file or socket that does not exist: refused, not created.
    for console in ("file:" + str(tmp_path / "new.txt"),
                    "append:" + str(tmp_path / "new.txt"),
                    "socket:" + str(tmp_path / "new.sock")):
        snap = hostile(disk_snap, tmp_path, console=console, disk=vd)
        st, err = restore_run(rundir, snap)
        assert st == 4, err
        assert "named by the snapshot" in err, err
        assert not (tmp_path / "new.txt").exists()
        assert not (tmp_path / "new.sock").exists()
        untouched(v, vd, before)
    # `info` shows every host path a restore of it would open.
    snap = hostile(disk_snap, tmp_path, console="file:" + str(v), disk=vd)
    info = subprocess.run([KHYVECTL, "snapshot", "info", "--json",
                           str(snap)], capture_output=True, text=True,
                          timeout=60)
    assert info.returncode == 0, info.stderr
    binds = {(b["what"], b["kind"], b["target"])
             for b in json.loads(info.stdout)["host_bindings"]}
    assert ("ram", "ram", str(snap) + ".ram") in binds, binds
    assert ("com1", "file", str(v)) in binds, binds
    assert ("virtio-blk@3:0", "disk", str(vd)) in binds, binds
    text = subprocess.run([KHYVECTL, "snapshot", "info", str(snap)],
                          capture_output=True, text=True, timeout=60).stdout
    for p in (str(v), str(vd), str(snap) + ".ram"):
        assert p in text, text
    # Every binding given on the command line instead: runs, and nothing
    # the snapshot names is touched.
    copy = tmp_path / "copy.img"
    copy.write_bytes(b"\0" * (1 << 20))
    g = guest_factory(["-r", str(snap), "-l", "com1,stdio", "-s",
                       "3,virtio-blk,%s" % copy], name="rebound")
    assert wait_tick(g, last_tick(g) + 3) and ticks(g.read()), \
        (g.read(), stderr_of(g))
    g.ctl("poweroff", "rebound", "--force")
    g.finish()
    untouched(v, vd, before)
    # Left to the snapshot, an existing console file is appended to,
    # never truncated.
    g = guest_factory(["-r", str(snap), "-s", "3,virtio-blk,%s" % copy],
                      name="appended")
    end = time.time() + 60
    while b"KHYVE-COUNTER" not in v.read_bytes() and time.time() < end:
        time.sleep(0.05)
    g.ctl("poweroff", "appended", "--force")
    g.finish()
    data = v.read_bytes()
    assert data.startswith(b"precious\n") and b"KHYVE-COUNTER" in data, \
        (data[:200], stderr_of(g))


@needs_kvm
def test_strict_bindings_take_nothing_from_the_snapshot(disk_snap, tmp_path,
                                                        rundir,
                                                        guest_factory):
    """--strict-bindings: every host binding from the command line, or
    the restore is refused naming the first one missing."""
    v, vd, before = victims(tmp_path)
    snap = hostile(disk_snap, tmp_path, console="file:" + str(v), disk=vd)
    st, err = restore_run(rundir, snap, "--strict-bindings")
    assert st == 4 and "COM1 console is file:%s" % v in err, err
    st, err = restore_run(rundir, snap, "--strict-bindings", "-l",
                          "com1,stdio")
    assert st == 4, err
    assert "virtio-blk at 3:0 is bound to '%s'" % vd in err, err
    assert "-s 3:0,virtio-blk,BINDING" in err, err
    untouched(v, vd, before)
    copy = tmp_path / "copy.img"
    copy.write_bytes(b"\0" * (1 << 20))
    g = guest_factory(["-r", str(snap), "--strict-bindings", "-l",
                       "com1,stdio", "-s", "3,virtio-blk,%s" % copy],
                      name="strict")
    assert wait_tick(g, last_tick(g) + 3) and ticks(g.read()), \
        (g.read(), stderr_of(g))
    g.ctl("poweroff", "strict", "--force")
    g.finish()
    untouched(v, vd, before)


# ---- 4. FIFOs, device nodes and symlinks at snapshot paths ----

def plant(path, kind, tmp_path):
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # null
    else:
        target = tmp_path / "link-target"
        target.write_text("not a snapshot\n")
        os.symlink(str(target), path)


def planted_intact(path, kind):
    st = os.lstat(path)
    assert {"fifo": stat.S_ISFIFO, "device": stat.S_ISCHR,
            "symlink": stat.S_ISLNK}[kind](st.st_mode), kind


@needs_kvm
def test_checkpoint_refuses_special_files(guest_factory, tmp_path):
    g = boot(guest_factory)
    assert wait_tick(g, 3), g.read()
    for kind in ("fifo", "device", "symlink"):
        for which in ("", ".ram"):
            d = tmp_path / ("%s%s" % (kind, which.replace(".", "-")))
            d.mkdir()
            snap = str(d / "s.snap")
            plant(snap + which, kind, tmp_path)
            t0 = time.time()
            r = g.ctl("checkpoint", "t", snap)
            assert r.returncode != 0, (kind, which, r.stdout)
            assert time.time() - t0 < 30
            assert snap + which in r.stderr, r.stderr
            assert ("symbolic link" in r.stderr if kind == "symlink"
                    else "not a regular file" in r.stderr), r.stderr
            planted_intact(snap + which, kind)
            assert sorted(os.listdir(str(d))) == \
                [os.path.basename(snap + which)], os.listdir(str(d))
            runs_on(g)
    assert (tmp_path / "link-target").read_text() == "not a snapshot\n"
    g.ctl("poweroff", "t", "--force")


@needs_kvm
def test_restore_refuses_special_files(disk_snap, tmp_path, rundir):
    _, good = disk_snap
    for kind in ("fifo", "device", "symlink"):
        for which in ("", ".ram"):
            d = tmp_path / ("%s%s" % (kind, which.replace(".", "-")))
            d.mkdir()
            snap = str(d / "g.snap")
            if which:
                shutil.copy(str(good), snap)
            plant(snap + which, kind, tmp_path)
            if kind == "symlink":
                # A link to the real file: followed, it would restore.
                os.unlink(snap + which)
                os.symlink(str(good) + which, snap + which)
            st, err = restore_run(rundir, snap)
            assert st == 4, (kind, which, err)
            assert snap + which in err, err
            assert ("symbolic link" in err if kind == "symlink"
                    else "not a regular file" in err), err
            planted_intact(snap + which, kind)


# ---- 8. the RAM file under a mapped restore ----

@needs_kvm
def test_ram_file_shrinking_under_mapped_restore(guest_factory, tmp_path,
                                                 rundir):
    snap = tmp_path / "m.snap"
    g = boot(guest_factory)
    assert wait_tick(g, 3), g.read()
    assert g.ctl("suspend", "t", str(snap)).returncode == 0
    g.finish()
    r = guest_factory(["-r", str(snap)], name="mapped")
    assert wait_tick(r, last_tick(r) + 3) and ticks(r.read()), r.read()
    # Paused, so the guest does not touch the pages that go away.
    assert r.ctl("pause", "mapped").returncode == 0
    os.truncate(str(snap) + ".ram", 16 * 2**20)
    # The read lease made khyve notice (and let the truncate through).
    end = time.time() + 30
    while "truncates it" not in stderr_of(r) and time.time() < end:
        time.sleep(0.05)
    assert str(snap) + ".ram" in stderr_of(r), stderr_of(r)
    res = r.ctl("checkpoint", "mapped", str(tmp_path / "again.snap"))
    assert res.returncode != 0 and "shrank" in res.stderr, res.stderr
    assert r.proc.poll() is None, stderr_of(r)  # no SIGBUS
    st = r.ctl("status", "mapped")
    assert st.returncode == 0 and "paused" in st.stdout, st.stdout
    assert not (tmp_path / "again.snap").exists()
    r.ctl("poweroff", "mapped", "--force")
    r.finish()
    # A restore refuses to start from it.
    code, err = restore_run(rundir, snap)
    assert code == 4 and "size" in err and str(snap) + ".ram" in err, err
