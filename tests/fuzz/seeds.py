#!/usr/bin/env python3
"""Writes the committed seed corpora of the libFuzzer harnesses into
tests/fuzz/corpus/<harness>/ (run from anywhere; files are rewritten, so
re-running it changes nothing unless this script changed):

- config:      configuration JSON as a snapshot embeds it, valid and not;
- ctl:         control-socket byte streams (see fuzz_ctl.c for the header);
- virtqueue:   guest RAM with well-formed and broken split rings;
- snap_reader: the golden snapshot's state file (tests/golden) behind the
               harness's mode bytes. seed_snap_reader.c adds its own
               (make -C tests/fuzz seed-fuzz_snap_reader);
- virtio_pci:  register sequences (fuzz_virtio_pci.c's ops): a driver's
               bring-up, MSI-X, BARs moved, the PCI_CFG window, resets.

device_load's seeds are sections as the devices save them, so the harness
writes them itself: make -C tests/fuzz seed-fuzz_device_load.
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


# fuzz_virtio_pci.c: op byte = kind | size index << 4 | write << 7.
VP_CFG, VP_PORT, VP_BAR, VP_MSIX, VP_MMIO, VP_RAM, VP_USED = 0, 1, 2, 4, 5, 6, 7
VP_CFGCHG, VP_NEEDS_RESET, VP_MSI, VP_SAVE = 8, 9, 10, 11
SZ = {1: 0, 2: 1, 4: 2, 8: 3}
# The toy's config space: MSI-X capability, then the virtio ones (pci.c
# places capabilities from 0x40, 4-aligned).
MSIX_CAP, PCI_CFG_CAP = 0x40, 0x90


def vp_op(kind, size=4, write=True):
    return bytes([kind | SZ[size] << 4 | (0x80 if write else 0)])


def vp_cfg(reg, val, size=4, write=True):
    return vp_op(VP_CFG, size, write) + bytes([reg]) + \
        val.to_bytes(size, "little")


def vp_bar(off, val, size=4, write=True, kind=VP_BAR):
    return vp_op(kind, size, write) + struct.pack("<H", off) + \
        val.to_bytes(size, "little")


def vp_common(off, val, size):
    return vp_bar(off, val, size)


def vp_ram(gpa, val):
    return vp_op(VP_RAM, 8) + gpa.to_bytes(3, "little") + \
        struct.pack("<Q", val)


def vp_bringup(msix=True):
    """What Linux's virtio_pci_modern does, two queues of 16 at 0x1000..."""
    b = vp_cfg(4, 0x6, 2)  # memory + bus master
    if msix:
        b += vp_cfg(MSIX_CAP + 2, 0x8000, 2)
    b += vp_common(0x14, 1, 1) + vp_common(0x14, 3, 1)
    b += vp_common(0x00, 1, 4) + vp_bar(0x04, 0, 4, write=False)
    b += vp_common(0x08, 0, 4) + vp_common(0x0c, 1 << 28 | 1 << 29, 4)
    b += vp_common(0x08, 1, 4) + vp_common(0x0c, 1, 4)
    b += vp_common(0x14, 0xb, 1) + vp_bar(0x14, 0, 1, write=False)
    for q in range(2):
        b += vp_common(0x16, q, 2) + vp_bar(0x18, 0, 2, write=False)
        b += vp_common(0x18, 16, 2) + vp_common(0x1a, q + 1, 2)
        b += vp_common(0x20, 0x1000 + 0x1000 * q, 8)
        b += vp_common(0x28, 0x8000 + 0x1000 * q, 8)
        b += vp_common(0x30, 0x10000 + 0x1000 * q, 8)
        b += vp_common(0x1c, 1, 2)
    b += vp_common(0x10, 0, 2) + vp_common(0x14, 0xf, 1)
    return b


def vp_request(q, head, idx):
    """One descriptor (a 64-byte device-writable buffer) made available
    on queue @q and kicked."""
    desc = 0x1000 + 0x1000 * q + 16 * head
    avail = 0x8000 + 0x1000 * q
    b = vp_ram(desc, 0x20000 + 0x100 * head)
    b += vp_ram(desc + 8, 64 | 2 << 32)  # len 64, flags WRITE, next 0
    b += vp_ram(avail + 4 + 2 * idx, head)
    b += vp_ram(avail, (idx + 1) << 16)
    b += vp_bar(0x3000 + 4 * q, q, 2)  # notify
    return b


def virtio_pci_seeds():
    up = vp_bringup()
    put("virtio_pci", "bringup", up + vp_op(VP_SAVE))
    put("virtio_pci", "bringup-intx", vp_bringup(msix=False) +
        vp_request(0, 0, 0) + vp_bar(0x1000, 0, 1, write=False))
    put("virtio_pci", "requests", up + vp_request(0, 0, 0) +
        vp_request(0, 1, 1) + vp_request(1, 3, 0) + vp_op(VP_SAVE) +
        vp_request(1, 4, 1) + vp_op(VP_USED) + b"\x01")
    # MSI-X: vectors programmed, function masked, a pending bit, unmasked.
    msix = up
    for v in range(3):
        msix += vp_bar(16 * v, 0xfee00000, 4, kind=VP_MSIX)
        msix += vp_bar(16 * v + 8, 0x4020 + v, 4, kind=VP_MSIX)
        msix += vp_bar(16 * v + 12, 0, 4, kind=VP_MSIX)
    msix += vp_cfg(MSIX_CAP + 2, 0xc000, 2) + vp_op(VP_MSI) + b"\x01"
    msix += vp_bar(0x800, 0, 8, write=False, kind=VP_MSIX)
    msix += vp_op(VP_SAVE) + vp_cfg(MSIX_CAP + 2, 0x8000, 2)
    msix += vp_bar(12, 1, 4, kind=VP_MSIX) + vp_op(VP_MSI) + b"\x00"
    msix += vp_bar(0x30, 0xffffffff, 8, kind=VP_MSIX)
    put("virtio_pci", "msix", msix)
    # BARs sized and moved as firmware does, the device used there.
    bars = vp_cfg(4, 0, 2)
    for reg in (0x10, 0x14, 0x20, 0x24):
        bars += vp_cfg(reg, 0xffffffff) + vp_cfg(reg, 0, 4, write=False)
    bars += vp_cfg(0x20, 0xd0000000) + vp_cfg(0x24, 0) + vp_cfg(0x14, 0xd0004000)
    bars += vp_cfg(4, 0x2, 2) + vp_bar(0x14, 1, 1) + vp_op(VP_SAVE)
    bars += vp_cfg(0x24, 1) + vp_cfg(0x20, 0xfffff000) + vp_op(VP_SAVE)
    bars += vp_cfg(0x20, 0xc0000000) + vp_cfg(0x24, 0) + vp_cfg(0x14, 0xc0000000)
    put("virtio_pci", "bars", bars)
    # The PCI_CFG window: BAR 4, status (1 byte), then the device config.
    win = up + vp_cfg(PCI_CFG_CAP + 4, 4, 1) + vp_cfg(PCI_CFG_CAP + 8, 0x14)
    win += vp_cfg(PCI_CFG_CAP + 12, 1) + vp_cfg(PCI_CFG_CAP + 16, 0, 4, False)
    win += vp_cfg(PCI_CFG_CAP + 8, 0x2000) + vp_cfg(PCI_CFG_CAP + 12, 4)
    win += vp_cfg(PCI_CFG_CAP + 16, 0x11223344)
    win += vp_cfg(PCI_CFG_CAP + 8, 0x2008) + vp_cfg(PCI_CFG_CAP + 16, 7)
    put("virtio_pci", "pci-cfg-window", win)
    # Device config at every width, across its end; ISR read to clear.
    dev = up
    for off in range(0, 12):
        dev += vp_bar(0x2000 + off, 0, 1, write=False)
    dev += vp_bar(0x2008, 0, 4, write=False) + vp_bar(0x2000, 0xfeed, 8)
    dev += vp_op(VP_CFGCHG) + vp_bar(0x1000, 0, 1, write=False)
    put("virtio_pci", "device-config", dev)
    # Failure paths: needs-reset, a queue that cannot be enabled, reset.
    bad = up + vp_op(VP_NEEDS_RESET) + vp_bar(0x14, 0, 1, write=False)
    bad += vp_common(0x16, 7, 2) + vp_common(0x18, 0xffff, 2)
    bad += vp_common(0x16, 0, 2) + vp_common(0x14, 0, 1) + vp_op(VP_SAVE)
    bad += vp_common(0x16, 1, 2) + vp_common(0x18, 8, 2)
    bad += vp_common(0x20, 0x3fff0, 8) + vp_common(0x1c, 1, 2)
    bad += vp_common(0x00, 0xffffffff, 4) + vp_common(0x08, 0x12345678, 4)
    put("virtio_pci", "errors", bad)
    # The address latch and other functions and slots.
    ports = b""
    for addr in (0x80000000, 0x80001800, 0x80001900, 0x8000ff00, 0x12345678):
        ports += vp_op(VP_PORT, 4) + b"\x00" + struct.pack("<I", addr)
        ports += vp_op(VP_PORT, 2, False) + b"\x06" + b"\0\0\0\0"
        ports += vp_op(VP_PORT, 4, False) + b"\x04" + b"\0\0\0\0"
    ports += vp_op(VP_PORT, 1) + b"\x01" + b"\xff\0\0\0"
    put("virtio_pci", "ports", ports)


if __name__ == "__main__":
    config_seeds()
    ctl_seeds()
    virtqueue_seeds()
    snap_reader_seeds()
    virtio_pci_seeds()
