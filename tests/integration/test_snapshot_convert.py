"""`khyvectl snapshot convert` (issue 15 item 3): the mapped pair and a
recorded, zstd-compressed stream, both ways, judged by the guest.

The counter guest verifies its memory region every few ticks and prints
the region's sum, the same at tick n in every copy of the guest; with
`touch_mb=N touch_zip` it also fills N MiB with data that compresses
(one pattern byte in eight). A pair converted to a stream and back must
give the same RAM file byte for byte, each form must restore to a guest
that goes on with the same memory, and a cut or corrupted input must be
refused with a precise error and no output left behind."""
import os
import subprocess

import pytest

from conftest import KHYVECTL, needs_kvm
from test_snapshot import (_mount_small_tmpfs, boot, copy_snap, last_tick,
                           restore_fails, restored,
                           tick_after_checkpoint, wait_tick)
from test_snapshot_chain import checkpoint, wait_memsum

ZIP = ("counter interval_ms=50 check_every=5 mem_kb=1024 dirty_pages=16 "
       "zero_every=3 "
       "touch_mb=4 touch_zip")


def ctl(*args):
    return subprocess.run([KHYVECTL] + list(args), capture_output=True,
                          text=True, timeout=120)


def convert(a, b):
    r = ctl("snapshot", "convert", a, b)
    assert r.returncode == 0, r.stderr
    return r.stdout


def allocated(path):
    return os.stat(path).st_blocks * 512


def convert_fails(a, b):
    r = ctl("snapshot", "convert", a, b)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A checkpoint of a guest with 4 MiB of compressible data, the tick
    it was taken at, and an increment on top of it."""
    from conftest import Guest
    d = tmp_path_factory.mktemp("conv")
    g = Guest(["-c", "1", "-m", "16M", "-k", __import__("conftest").GUEST,
               "-a", ZIP, "-l", "com1,stdio"], str(d / "run"), "t")
    try:
        assert wait_tick(g, 3), g.read()
        assert g.ctl("pause", "t").returncode == 0
        full = str(d / "full")
        checkpoint(g, full)
        assert g.ctl("resume", "t").returncode == 0
        tick = tick_after_checkpoint(g)
        assert wait_tick(g, last_tick(g) + 3), g.read()
        inc = str(d / "inc")
        assert checkpoint(g, inc, incremental=True)["chain_depth"] == 1
        itick = tick_after_checkpoint(g)
        g.ctl("poweroff", "t", "--force")
        g.finish()
    finally:
        g.stop()
    return {"dir": d, "full": full, "tick": tick, "inc": inc,
            "itick": itick}


def goes_on(guest_factory, snap, name, tick):
    c = restored(guest_factory, snap, name)
    sums = wait_memsum(c, tick + 5)
    assert min(sums) > tick - 5, (tick, sums)
    c.stop()
    return sums


@needs_kvm
def test_pair_stream_pair_round_trip(saved, guest_factory, tmp_path):
    full = saved["full"]
    stream = str(tmp_path / "s.khs")
    out = convert(full, stream)
    assert "mapped pair" in out and "(stream)" in out, out
    # The stream is smaller than the RAM file's data (4 MiB of it
    # compresses), and every record of it checks.
    assert os.path.getsize(stream) < allocated(full + ".ram") * 0.6, \
        (os.path.getsize(stream), allocated(full + ".ram"))
    r = ctl("snapshot", "verify", stream)
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr
    r = ctl("snapshot", "info", stream)
    assert r.returncode == 0 and "stream:" in r.stdout, r.stdout + r.stderr
    back = str(tmp_path / "back")
    convert(stream, back)
    # Byte for byte: the same save (its id kept), the same RAM.
    assert open(back + ".ram", "rb").read() == \
        open(full + ".ram", "rb").read()
    assert ctl("snapshot", "verify", back).returncode == 0
    # Each form goes on with the original's memory (same sums per tick).
    runs = [goes_on(guest_factory, s, n, saved["tick"])
            for s, n in ((full, "a"), (stream, "b"), (back, "c"))]
    common = set.intersection(*(set(v) for v in runs))
    assert common, runs
    for n in common:
        assert len({r[n] for r in runs}) == 1, (n, runs)


@needs_kvm
def test_chain_tip_flattened(saved, tmp_path):
    """An increment converts to a stream of the whole chain's RAM: back
    as a pair, a full snapshot whose RAM is the merge's."""
    stream = str(tmp_path / "i.khs")
    out = convert(saved["inc"], stream)
    assert "a chain, flattened" in out, out
    back = str(tmp_path / "i")
    convert(stream, back)
    r = ctl("snapshot", "info", back)
    assert r.returncode == 0 and "chain:" not in r.stdout, r.stdout
    assert ctl("snapshot", "verify", back).returncode == 0
    merged = str(tmp_path / "m")
    assert ctl("snapshot", "merge", saved["inc"], merged).returncode == 0
    # The same RAM (the trailers' save ids are both new).
    with open(back + ".ram", "rb") as a, open(merged + ".ram", "rb") as b:
        assert a.read(16 << 20) == b.read(16 << 20)


@needs_kvm
def test_bad_inputs_leave_nothing(saved, tmp_path, rundir):
    d = tmp_path
    stream = str(d / "s.khs")
    convert(saved["full"], stream)
    size = os.path.getsize(stream)
    data = open(stream, "rb").read()

    def variant(name, b):
        p = str(d / name)
        with open(p, "wb") as f:
            f.write(b)
        return p

    cases = [
        # cut inside a record, cut at a record boundary (before END)
        (variant("cut", data[:size // 2]), "ends in the middle of record"),
        (variant("noend", data[:size - 56]), "before its END record"),
        # a flipped byte in the middle (a RAM record's data)
        (variant("flip", data[:size // 2] + bytes([data[size // 2] ^ 1]) +
                 data[size // 2 + 1:]), "checksum mismatch"),
        (variant("junk", data + b"x"), "data after the stream's END"),
    ]
    for p, want in cases:
        msg = convert_fails(p, str(d / "out"))
        assert want in msg and p in msg, (want, msg)
        assert not os.path.exists(str(d / "out"))
        assert not os.path.exists(str(d / "out.ram"))
        v = ctl("snapshot", "verify", p)
        assert v.returncode == 1 and want in v.stdout + v.stderr, \
            (want, v.stdout, v.stderr)
    msg = convert_fails(variant("empty", b""), str(d / "out"))
    assert "empty file" in msg, msg
    # The cut stream does not restore either.
    msg = restore_fails(rundir, cases[0][0])
    assert "ends in the middle of record" in msg, msg
    # A pair whose RAM file was changed: the chunk hash names it.
    os.mkdir(str(d / "b"))
    bad = copy_snap(saved["full"], d / "b")
    with open(bad + ".ram", "r+b") as f:
        f.seek(0x200000 + 123)
        c = f.read(1)
        f.seek(0x200000 + 123)
        f.write(bytes([c[0] ^ 0x40]))
    msg = convert_fails(bad, str(d / "out"))
    assert "chunk 1" in msg, msg
    assert not os.path.exists(str(d / "out"))
    # A previous output stays as it was; the input is never the output.
    prev = variant("prev", b"previous")
    convert_fails(bad, prev)
    assert open(prev, "rb").read() == b"previous"
    msg = convert_fails(stream, stream)
    assert "an input of the conversion" in msg, msg
    assert sorted(f for f in os.listdir(str(d)) if f.startswith(".")) == []


@needs_kvm
def test_full_disk_leaves_nothing(saved, tmp_path):
    """No room for the output, either way: a precise error, no output, no
    temporary file, and a previous output as it was."""
    import subprocess as sp
    d = str(tmp_path / "small")
    _mount_small_tmpfs(d, "1M")
    try:
        stream = str(tmp_path / "s.khs")
        convert(saved["full"], stream)
        for src, out in ((saved["full"], os.path.join(d, "s.khs")),
                         (stream, os.path.join(d, "p"))):
            with open(out, "wb") as f:
                f.write(b"previous")
            msg = convert_fails(src, out)
            assert "No space left on device" in msg and d in msg, msg
            assert open(out, "rb").read() == b"previous"
            os.unlink(out)
            assert os.listdir(d) == [], os.listdir(d)
    finally:
        sp.run(["umount", "-l", d], timeout=60)


@needs_kvm
def test_stream_clones_get_new_generation_ids(guest_factory, tmp_path):
    """A stream is a snapshot: each guest restored from one (khyve -r
    FILE, here the converted pair) reads a VM generation ID of its own and
    gets the GED's edge, as clones of the pair do (test_clone_identity);
    only a live migration keeps the ID."""
    from test_clone_identity import (GENID_MODE, clone_lines, one_id,
                                     wait_genids)
    g = boot(guest_factory, GENID_MODE, mem="16M")
    id0 = one_id(wait_genids(g, 2))
    snap, stream = str(tmp_path / "g"), str(tmp_path / "g.khs")
    checkpoint(g, snap)
    g.stop()
    convert(snap, stream)
    clones = [restored(guest_factory, stream, "s%d" % k) for k in (1, 2)]
    got = [clone_lines(c, 0, count=2) for c in clones]
    ids = [one_id(x) for x in got]
    assert id0 not in ids and ids[0] != ids[1], (id0, ids)
    assert all({x[4] for x in lines} == {1} for lines in got), got
    for c in clones:
        c.stop()
