#!/usr/bin/env python3
"""Writes the committed seed corpora of the libFuzzer harnesses into
tests/fuzz/corpus/<harness>/ (run from anywhere; files are rewritten, so
re-running it changes nothing unless this script changed):

- config:      configuration JSON as a snapshot embeds it, valid and not;
- ctl:         control-socket byte streams (see fuzz_ctl.c for the header);
- virtqueue:   guest RAM with well-formed and broken split rings;
- snap_reader: the golden snapshot's state file (tests/golden) behind the
               harness's mode bytes. seed_snap_reader.c adds its own
               (make -C tests/fuzz seed-fuzz_snap_reader).
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
GOLDEN = os.path.join(HERE, "..", "golden")


def put(harness, name, data):
    d = os.path.join(CORPUS, harness)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def config_seeds():
    base = {"name": "golden", "cpus": 1, "memory": 64 << 20,
            "kernel": "/work/main/build/guests/testguest.elf",
            "initrd": None, "cmdline": "counter interval_ms=50",
            "console": "stdio", "cpu_policy": "auto", "devices": []}
    full = dict(base, name="vm-2.x", cpus=2, memory=512 << 20,
                initrd="/boot/initrd", console="file:/tmp/c",
                cpu_policy="safe", devices=[
                    {"slot": 2, "func": 0, "emulation": "virtio-blk",
                     "conf": "/var/lib/khyve/disk.img,ro"},
                    {"slot": 3, "func": 0, "emulation": "virtio-net",
                     "conf": "tap0,mac=52:54:00:12:34:56"},
                    {"slot": 4, "func": 1, "emulation": "virtio-console",
                     "conf": "socket:/tmp/vcon"},
                    {"slot": 5, "func": 7, "emulation": "virtio-rng",
                     "conf": ""}])
    seeds = {
        "golden": base,
        "devices": full,
        "minimal": {"name": "a", "cpus": 1, "memory": 16 << 20},
        "host": dict(base, cpu_policy="host", cpus=64),
        "bad-cpus": dict(base, cpus=0),
        "bad-cpus-big": dict(base, cpus=65),
        "bad-memory": dict(base, memory=(64 << 20) + 4096),
        "bad-memory-small": dict(base, memory=14 << 20),
        "bad-name": dict(base, name=".hidden"),
        "bad-name-long": dict(base, name="n" * 65),
        "bad-kernel": dict(base, kernel=5),
        "bad-devices": dict(base, devices={"slot": 1}),
        "bad-device-slot": dict(full, devices=[dict(full["devices"][0],
                                                    slot=32)]),
        "bad-device-conf": dict(full, devices=[dict(full["devices"][0],
                                                    conf="c" * 512)]),
        "too-many-devices": dict(full, devices=[
            {"slot": i % 32, "func": 0, "emulation": "virtio-rng",
             "conf": ""} for i in range(33)]),
    }
    for name, obj in seeds.items():
        put("config", name, json.dumps(obj, sort_keys=True))
    put("config", "not-object", "[1, 2]")
    put("config", "missing", '{"name": "x"}')


def ctl_seeds():
    def hdr(mode=0, max_line=0, max_out=0, chunk=0):
        return bytes([mode, max_line, max_out, chunk])

    reqs = [
        {"id": 1, "cmd": "hello", "args": {"protocol": 1}},
        {"id": 2, "cmd": "help"},
        {"id": "s", "cmd": "status"},
        {"cmd": "pause"}, {"cmd": "resume", "args": None},
        {"id": 3, "cmd": "poweroff", "args": {"force": True}},
        {"cmd": "reset"},
        {"id": 4, "cmd": "regs", "args": {"vcpu": 1, "msrs": True}},
        {"id": [5], "cmd": "stats"},
        {"id": 6, "cmd": "checkpoint",
         "args": {"file": "/tmp/x.snap", "progress": True, "live": False}},
        {"id": 7, "cmd": "suspend", "args": {"file": "x.snap"}},
        {"id": 8, "cmd": "migrate", "args": {"to": "host"}},
    ]
    good = "".join(json.dumps(r) + "\n" for r in reqs)
    bad = "\n".join([
        "not json", "[1]", '{"cmd": 1}', '{"cmd": "nosuch", "id": 9}',
        '{"cmd": "status", "args": {"bogus": 1}}',
        '{"cmd": "status", "args": [1]}',
        '{"cmd": "hello", "args": {"protocol": 2}}',
        '{"cmd": "hello", "args": {"protocol": "1"}}',
        '{"cmd": "regs", "args": {"vcpu": -1}}',
        '{"cmd": "poweroff", "args": {"force": 1}}',
        '{"cmd": "checkpoint", "args": {"file": ""}}',
        '{"cmd": "checkpoint", "args": {"file": "a\\u0000b"}}',
        '{"cmd": "checkpoint", "args": {"file": "a", "progress": 1}}',
        "", "  \t", '{"cmd": "help"}\r', '{"id": 10, "cmd": "status"} ',
    ]) + "\n"
    for outcome in range(8):
        put("ctl", "good-%d" % outcome, hdr(outcome | 8) + good.encode())
    put("ctl", "bad", hdr(0) + bad.encode())
    put("ctl", "bad-noimpl", hdr(7) + bad.encode())
    put("ctl", "eof-no-newline", hdr(16) + b'{"id": 1, "cmd": "status"}')
    put("ctl", "bytewise", hdr(8, chunk=1) + good.encode())
    put("ctl", "chunked", hdr(3, chunk=7) + (good + bad).encode())
    put("ctl", "too-large", hdr(0, max_line=8) + good.encode())
    put("ctl", "too-large-partial", hdr(16, max_line=4) + b'{"cmd": "hel')
    put("ctl", "output-cap", hdr(8, max_out=2) + good.encode())


DESC_NEXT, DESC_WRITE, DESC_INDIRECT = 1, 2, 4


def ring_ram(descs, heads, avail_at=0x1000, indirect=None, size=8):
    """RAM image: descriptor table at 0, avail ring at 0x1000, used at
    0x2000 (fuzz_virtqueue.c's layout), data buffers above."""
    ram = bytearray(0x6000)
    for i, (addr, ln, flags, nxt) in enumerate(descs):
        struct.pack_into("<QIHH", ram, 16 * i, addr, ln, flags, nxt)
    struct.pack_into("<HH", ram, avail_at, 0, len(heads))
    for i, h in enumerate(heads):
        struct.pack_into("<H", ram, avail_at + 4 + 2 * i, h)
    for at, table in (indirect or {}).items():
        for i, (addr, ln, flags, nxt) in enumerate(table):
            struct.pack_into("<QIHH", ram, at + 16 * i, addr, ln, flags,
                             nxt)
    for off in range(0x3000, 0x6000, 64):
        ram[off] = off >> 6 & 0xff
    return bytes(ram)


def virtqueue_seeds():
    def hdr(feats, log2size, last_avail=0):
        return bytes([feats, log2size]) + struct.pack("<H", last_avail)

    chain = [(0x3000, 64, DESC_NEXT, 1), (0x4000, 128, DESC_WRITE, 0)]
    put("virtqueue", "chain", hdr(0, 3) + ring_ram(chain, [0]))
    three = chain + [(0x3100, 16, 0, 0), (0x4100, 32, DESC_WRITE, 0)]
    put("virtqueue", "three", hdr(2, 3) + ring_ram(three, [0, 2, 3]))
    ind = [(0x5000, 32, DESC_INDIRECT, 0)]
    table = {0x5000: [(0x3000, 64, DESC_NEXT, 1),
                      (0x4000, 256, DESC_WRITE, 0)]}
    put("virtqueue", "indirect", hdr(1, 3) + ring_ram(ind, [0],
                                                      indirect=table))
    put("virtqueue", "indirect-off", hdr(0, 3) + ring_ram(ind, [0],
                                                          indirect=table))
    loop = [(0x3000, 64, DESC_NEXT, 1), (0x3040, 64, DESC_NEXT, 0)]
    put("virtqueue", "loop", hdr(0, 3) + ring_ram(loop, [0]))
    oob = [(0xfff0, 64, 0, 0), (0x4000, 1 << 20, DESC_WRITE, 0)]
    put("virtqueue", "out-of-ram", hdr(0, 3) + ring_ram(oob, [0, 1]))
    put("virtqueue", "wrap", hdr(3, 1, 0xffff) + ring_ram(chain, [0, 0]))
    put("virtqueue", "bad-head", hdr(0, 3) + ring_ram(chain, [9]))


def snap_reader_seeds():
    with open(os.path.join(GOLDEN, "counter-64m.snap"), "rb") as f:
        snap = f.read()
    # Mode bytes (fuzz_snap_reader.c): as is, resealed, resealed with
    # every knob, through a file.
    for mode in (0x00, 0x01, 0x0f, 0x80):
        put("snap_reader", "golden-%02x" % mode, bytes([mode]) + snap)


if __name__ == "__main__":
    config_seeds()
    ctl_seeds()
    virtqueue_seeds()
    snap_reader_seeds()
