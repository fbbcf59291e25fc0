"""Migration streams from an incompatible host or another format version
(issue 15, "Bad input and faults"), beside test_migrate.py's faults.

A destination must refuse, with a precise message and having run
nothing, a source on another CPU vendor, a HELLO whose RAM size or vCPU
count disagrees with its own config, and a stream whose state file is of
a newer snapshot format; it must accept a newer *minor* stream version's
HELLO, which may only add to its end (docs/snapshot-format.md, "Stream").
The streams are real ones (`khyvectl --checkpoint=-` of the counter
guest), edited record by record and resealed, restored with `khyve -r
FILE` (the path a migration's destination takes, as --incoming fd:N), or
crafted HELLOs sent to a listening destination."""
import os
import socket
import struct
import subprocess

import pytest

from conftest import GUEST, KHYVE, KHYVECTL, Guest, needs_kvm
from test_migrate import _read_reply, _record, _xxh3, wait_path
from test_snapshot import (check_continues, last_tick, ticks,
                           wait_memcheck_ok_after, wait_tick)

MAGIC = 0x474d484b
HELLO, STATE = 1, 4


def records(data):
    """[(type, payload)] of a stream, every record's checksum checked."""
    out, off = [], 0
    while off < len(data):
        magic, rtype, _, seq, plen = struct.unpack_from("<IHHII", data, off)
        assert magic == MAGIC and seq == len(out), (off, magic, seq)
        payload = data[off + 24:off + 24 + plen]
        assert struct.unpack_from("<Q", data, off + 16)[0] == \
            _xxh3(data[off:off + 16] + payload)
        out.append((rtype, payload))
        off += 24 + plen
    return out


def stream_of(recs):
    return b"".join(_record(t, i, p) for i, (t, p) in enumerate(recs))


def hello_fields(p):
    major, minor, flags, ram, ncpus, page, cpuid = struct.unpack_from(
        "<HHIQIIQ", p, 0)
    return {"major": major, "minor": minor, "ram": ram, "ncpus": ncpus,
            "vendor": p[32:48].rstrip(b"\0").decode()}


def host_vendor():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    return ""


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """`khyvectl --checkpoint=-` of a 64 MiB counter guest: the stream's
    bytes and the ticks around it."""
    d = tmp_path_factory.mktemp("mf")
    g = Guest(["-c", "1", "-m", "64M", "-k", GUEST, "-a",
               "counter interval_ms=50 check_every=5 mem_kb=1024",
               "-l", "com1,stdio"], str(d / "run"), "t")
    try:
        assert wait_tick(g, 3), g.read()
        before = last_tick(g)
        path = d / "s.stream"
        with open(path, "wb") as out:
            r = subprocess.run([KHYVECTL, "--rundir", g.rundir, "--vm=t",
                                "--checkpoint=-"], stdout=out,
                               stderr=subprocess.PIPE, text=True,
                               timeout=300)
        assert r.returncode == 0, r.stderr
        after = last_tick(g)
    finally:
        g.stop()
    return {"dir": d, "data": path.read_bytes(), "before": before,
            "after": after}


def restore(path, rundir, name):
    """khyve -r FILE: (process as a Guest-like object)."""
    return Guest(["-r", str(path)], rundir, name)


def refused(path, rundir):
    """khyve -r FILE refuses: status 4, one line, no guest output."""
    p = subprocess.run([KHYVE, "--rundir", rundir, "-r", str(path), "bad"],
                       capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 4, (p.returncode, p.stdout, p.stderr)
    assert "KHYVE-" not in p.stdout, p.stdout
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    return lines[0]


@needs_kvm
def test_newer_minor_hello_is_read(recorded, tmp_path):
    """A HELLO one minor version newer than this khyve's, with 16 bytes
    after its config (what a newer minor may add): restored, the guest
    goes on from its tick, memory checked."""
    recs = records(recorded["data"])
    t, hello = recs[0]
    assert t == HELLO, t
    newer = hello_fields(hello)["minor"] + 1
    recs[0] = (HELLO, hello[:2] + struct.pack("<H", newer) + hello[4:] +
               b"\x5a" * 16)
    path = tmp_path / "minor.stream"
    path.write_bytes(stream_of(recs))
    g = restore(path, str(tmp_path / "run"), "minor")
    try:
        check_continues(g, recorded["before"], more=5,
                        upto=recorded["after"] + 2)
        assert wait_memcheck_ok_after(g, ticks(g.read())[0]), g.read()
    finally:
        g.stop()


def _reseal_state_file(b):
    """A state file's header checksum and end marker recomputed
    (docs/snapshot-format.md): header [0, H-8) at H-8, the whole file
    before its last 8 bytes at the end."""
    b = bytearray(b)
    h = struct.unpack_from("<I", b, 12)[0]
    struct.pack_into("<Q", b, h - 8, _xxh3(bytes(b[:h - 8])))
    struct.pack_into("<Q", b, len(b) - 8, _xxh3(bytes(b[:-8])))
    return bytes(b)


@needs_kvm
def test_newer_state_format_refused(recorded, tmp_path):
    """The state file inside the stream is of format 2.0: refused before
    anything runs, naming both versions; nothing else of it is used."""
    recs = records(recorded["data"])
    i = next(k for k, (t, _) in enumerate(recs) if t == STATE)
    state = bytearray(recs[i][1])
    assert state[:8] == b"KHYVSNAP"
    struct.pack_into("<H", state, 8, 2)
    recs[i] = (STATE, _reseal_state_file(state))
    path = tmp_path / "newer.stream"
    path.write_bytes(stream_of(recs))
    msg = refused(path, str(tmp_path / "run"))
    assert "format 2." in msg and "newer than this khyve supports" in msg, \
        msg
    assert "migration from %s" % path in msg, msg
    # convert says the same, and writes nothing.
    r = subprocess.run([KHYVECTL, "snapshot", "convert", str(path),
                        str(tmp_path / "out")], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1 and "newer than this khyve" in r.stderr, \
        r.stderr
    assert not os.path.exists(str(tmp_path / "out"))


@needs_kvm
def test_hello_disagreeing_with_its_config_refused(recorded, tmp_path):
    """RAM size or vCPU count in HELLO not those of the config it
    carries: refused, naming both."""
    recs = records(recorded["data"])
    hello = recs[0][1]
    f = hello_fields(hello)
    cases = [(struct.pack("<Q", f["ram"] * 2), 8,
              "HELLO record: %d bytes of RAM, its config says %d"
              % (f["ram"] * 2, f["ram"])),
             (struct.pack("<I", 2), 16,
              "HELLO record: 2 vCPUs, its config says 1")]
    for k, (val, off, want) in enumerate(cases):
        bad = list(recs)
        bad[0] = (HELLO, hello[:off] + val + hello[off + len(val):])
        path = tmp_path / ("h%d.stream" % k)
        path.write_bytes(stream_of(bad))
        msg = refused(path, str(tmp_path / ("run%d" % k)))
        assert want in msg, (want, msg)


@needs_kvm
def test_other_cpu_vendor_refused_by_listener(recorded, tmp_path):
    """A live source on another CPU vendor: the listening destination
    answers HELLO with the reason and exits 4, having run nothing."""
    here = host_vendor()
    other = "GenuineIntel" if here != "GenuineIntel" else "AuthenticAMD"
    hello = recorded and records(recorded["data"])[0][1]
    assert hello_fields(hello)["vendor"] == here
    live = bytearray(hello)
    struct.pack_into("<I", live, 4, 0)  # not a recorded stream
    live[32:48] = other.encode().ljust(16, b"\0")
    sock = str(tmp_path / "m.sock")
    dst = Guest(["--incoming", "unix:" + sock], str(tmp_path / "run"),
                "dst")
    try:
        assert wait_path(sock), dst.proc.stderr.read()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(60)
        s.connect(sock)
        s.sendall(_record(HELLO, 0, bytes(live)))
        status, msg = _read_reply(s)
        s.close()
        assert status != 0, msg
        assert ("the guest runs on a %s CPU, this host has a %s CPU"
                % (other, here)) in msg, msg
        assert dst.finish() == 4
        err = dst.proc.stderr.read().decode()
        assert "cannot move between CPU vendors" in err, err
        assert "KHYVE-" not in dst.read()
    finally:
        dst.stop()
