"""Clones that know they are clones (issue 15, item 4), judged by what the
guest reports.

The test guest's "genid" mode (tests/guests/snapmodes.c) finds the VM
generation ID the way an OS does - RSDP, XSDT, FADT, DSDT, the VMGENCTR
device's ADDR package - and with every counter tick prints the 16 bytes
it reads there, 16 bytes it just got from the virtio-rng and the MAC the
virtio-net's configuration space reports. Two clones of one snapshot must
each read a generation ID of their own (new on restore, before any vCPU
ran), get RNG bytes nobody else got, and a clone restored with mac= must
see that MAC. Needs /dev/kvm; the MAC test also root and /dev/net/tun."""
import os
import re
import subprocess
import time

import pytest

from conftest import KHYVE, Guest, needs_kvm
import netlab
from test_snapshot import (boot, complete, ctl_json, restored, suspend,
                           tick_after_checkpoint)

GENID_MODE = "counter interval_ms=50 check_every=5 genid"
GENID = re.compile(r"^KHYVE-GENID (\d+) id=(\S+) rng=(\S+) mac=(\S+) "
                   r"notified=([01])$", re.M)
INFO = re.compile(r"^KHYVE-INFO genid addr=(0x[0-9a-f]+) err=(-?\d+) "
                  r"rng=(\S+) ged_gsi=(-?\d+)$", re.M)


def genids(g, after=0):
    """(tick, id, rng, mac, notified) of every complete identity line past
    @after. notified: the GED's interrupt, routed by the guest to a vector
    it never takes (user mode runs with IF=0), is pending in its LAPIC."""
    return [(int(n), i, r, m, int(x)) for n, i, r, m, x in
            GENID.findall(complete(g.read())) if int(n) > after]


def wait_genids(g, count, after=0, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        if len(genids(g, after)) >= count:
            return genids(g, after)
        if g.proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError("want %d identity lines past tick %d:\n%s\n%s"
                         % (count, after, g.read()[-3000:],
                            g.proc.stderr.read().decode()
                            if g.proc.poll() is not None else ""))


def one_id(lines):
    ids = {x[1] for x in lines}
    assert len(ids) == 1, lines
    return ids.pop()


def clone_lines(c, after, count=4):
    """A clone's lines, its first one left out: the guest may have read
    that line's ID and RNG bytes before the snapshot was taken."""
    return wait_genids(c, count + 1, after)[1:]


@needs_kvm
def test_two_clones_get_new_generation_ids_and_rng(guest_factory, tmp_path):
    snap = str(tmp_path / "id.snap")
    # An -s entry that creates nothing (the host bridge) before the
    # platform devices: their bookkeeping once wrote out of bounds here.
    g = boot(guest_factory, GENID_MODE,
             extra=["-s", "1,hostbridge", "-s", "3,virtio-rng"])
    before = wait_genids(g, 3)
    # The DSDT names the page khyve reserves (layout.h BOOT_VMGENID_ADDR)
    # and the GED's GSI (vmgenid.h VMGENID_GED_GSI).
    assert INFO.search(g.read()).groups() == ("0xef000", "0", "virtio",
                                              "16"), g.read()
    assert {x[4] for x in before} == {0}, before
    id0 = one_id(before)
    assert re.fullmatch(r"[0-9a-f]{32}", id0) and id0 != "0" * 32, id0
    res = ctl_json(g, "checkpoint", "t", snap)
    assert res["live"] is True, res
    upto = tick_after_checkpoint(g)
    clones = [restored(guest_factory, snap, "clone%d" % k) for k in (1, 2)]
    got = [clone_lines(c, 0) for c in clones]
    ids = [one_id(x) for x in got]
    # New on restore, and not the same new one twice.
    assert id0 not in ids and ids[0] != ids[1], (id0, ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids), ids
    # Each clone got the GED's edge (Linux re-reads the ID on it).
    assert all({x[4] for x in lines} == {1} for lines in got), got
    # The clones start from the snapshot, not from a boot of their own.
    assert all(x[0][0] >= before[-1][0] for x in got), got
    # The original, checkpointed, keeps its generation.
    after = wait_genids(g, 3, upto)
    assert one_id(before + after) == id0
    assert {x[4] for x in after} == {0}, after
    # RNG bytes: every line of all three guests its own 16 bytes.
    rngs = [line[2] for x in [before + after] + got for line in x]
    assert all(re.fullmatch(r"[0-9a-f]{32}", r) for r in rngs), rngs
    assert len(set(rngs)) == len(rngs), rngs
    for x in [g] + clones:
        assert x.ctl("poweroff", x.name, "--force").returncode == 0
        assert x.finish() == 1


@needs_kvm
def test_no_vmgenid_and_snapshots_without_one(guest_factory, tmp_path,
                                              rundir):
    """--no-vmgenid: nothing in the DSDT, and a snapshot of such a guest
    (like one from a khyve before the device) restores without one."""
    snap = str(tmp_path / "none.snap")
    g = boot(guest_factory, GENID_MODE,
             extra=["--no-vmgenid", "-s", "3,virtio-rng"])
    lines = wait_genids(g, 2)
    assert INFO.search(g.read()).groups() == ("0x0", "-2", "virtio",
                                              "-1"), g.read()
    assert one_id(lines) == "none"
    t = suspend(g, snap)
    c = restored(guest_factory, snap, "c")
    lines = clone_lines(c, t)
    assert one_id(lines) == "none"
    assert {x[4] for x in lines} == {0}, lines
    c.stop()
    r = subprocess.run([KHYVE, "--rundir", rundir, "-r", snap,
                        "--no-vmgenid", "x"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 4, r
    assert r.stderr == ("khyve: --no-vmgenid cannot be used with -r: the "
                        "snapshot says whether the guest has one\n"), r.stderr


NET_OK, NET_WHY = netlab.usable()


class NsGuest(Guest):
    """A khyve in the test's network namespace (its TAPs are made there)."""

    def __init__(self, lab, args, rundir, name):
        self.name = name
        self.rundir = rundir
        self.proc = subprocess.Popen(
            lab.ns_cmd([KHYVE, "--rundir", rundir] + args + [name]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        self.out = b""
        os.set_blocking(self.proc.stdout.fileno(), False)


@needs_kvm
@pytest.mark.skipif(not NET_OK, reason=NET_WHY)
def test_clone_with_new_mac_and_name(tmp_path, rundir):
    """`khyve -r SNAP -s N,virtio-net,TAP,mac=NEW NAME`: the clone's NIC
    reports NEW in its configuration space, where the guest reads it; a
    clone without mac= keeps the snapshot's MAC."""
    from conftest import GUEST
    snap = str(tmp_path / "mac.snap")
    new_mac = "02:15:15:00:00:01"
    lab = netlab.NetLab(str(tmp_path), "gen15")
    made = []

    def start(args, name):
        made.append(NsGuest(lab, args, rundir, name))
        return made[-1]

    try:
        g = start(["-m", "64M", "-k", GUEST, "-a", GENID_MODE, "-l",
                   "com1,stdio", "-s", "3,virtio-rng", "-s",
                   "4,virtio-net,kg15a"], "t")
        mac0 = one_id([(0, x[3]) for x in wait_genids(g, 2)])
        assert re.fullmatch(r"[0-9a-f]{12}", mac0), mac0
        t = suspend(g, snap)
        c = start(["-r", snap, "-s", "4,virtio-net,kg15b,mac=" + new_mac],
                  "clone-a")
        lines = clone_lines(c, t, 3)
        assert {x[3] for x in lines} == {new_mac.replace(":", "")}, lines
        # The clone answers to its new name.
        st = ctl_json(c, "status", "clone-a")
        assert st["state"] == "running", st
        # Without mac= the snapshot's MAC stays.
        c2 = start(["-r", snap, "-s", "4,virtio-net,kg15c"], "clone-b")
        assert {x[3] for x in clone_lines(c2, t, 3)} == {mac0}
        assert one_id(clone_lines(c, t, 3)) != one_id(clone_lines(c2, t, 3))
    finally:
        for x in made:
            x.stop()
        lab.close()
