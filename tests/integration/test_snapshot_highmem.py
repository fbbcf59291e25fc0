"""A guest with RAM above the 32-bit PCI hole, saved and restored by every
path: a live checkpoint, a mapped restore, an eager restore, and a re-save
of a mapped restore. The counter region sits at the top of RAM (above
4 GiB, counter_high=1), so the guest's own memchecks judge the high RAM
region of the snapshot: RAM file offsets, the second KVM memory slot and
the dirty tracking of the high slot."""
import re

from conftest import needs_kvm
from test_snapshot import (COUNTER, boot, check_continues, ctl_json,
                           last_tick, restored, suspend, tick_after_checkpoint,
                           verify, wait_memcheck_ok_after, wait_tick)

pytestmark = needs_kvm

# 5 GiB: 3 GiB below the hole, 2 GiB above; 16 MiB counter region at the
# top, 4 pages rewritten per tick (most keep the boot generation).
MEM5G = "5G"
CMD = COUNTER + " mem_kb=16384 dirty_pages=4 counter_high=1"


def high_base(g):
    m = re.search(r"KHYVE-INFO counter .* mem_base=(0x[0-9a-f]+)", g.read())
    return int(m.group(1), 16) if m else None


def test_high_ram_live_mapped_eager_and_resave(guest_factory, tmp_path):
    live, again = str(tmp_path / "live.snap"), str(tmp_path / "again.snap")
    g = boot(guest_factory, CMD, mem=MEM5G)
    assert wait_memcheck_ok_after(g, 0, 120), g.read()
    base = high_base(g)
    assert base is not None and base >= 4 << 30, g.read()
    # A live checkpoint while the guest keeps rewriting high pages.
    res = ctl_json(g, "checkpoint", "t", live)
    assert res["live"] is True, res
    t1 = tick_after_checkpoint(g)
    verify(g, live)
    assert wait_memcheck_ok_after(g, t1), g.read()
    assert g.ctl("poweroff", "t", "--force").returncode == 0
    assert g.finish() == 1

    # Mapped restore: the high pages come from the RAM file's mapping.
    r1 = restored(guest_factory, live, "r1")
    assert wait_tick(r1, t1 + 2, 60), r1.read()
    assert wait_memcheck_ok_after(r1, t1), r1.read()
    # Re-save of the mapped restore: pages it never touched live only in
    # the first file and must be in the second.
    t2 = suspend(r1, again)
    verify(r1, again)

    # Eager restore of the first, mapped restore of the second.
    e = restored(guest_factory, live, "e", extra=["--eager"])
    assert wait_tick(e, t1 + 2, 60), e.read()
    assert wait_memcheck_ok_after(e, t1), e.read()
    assert e.ctl("poweroff", "e", "--force").returncode == 0
    r2 = restored(guest_factory, again, "r2")
    check_continues(r2, t2)
    assert wait_memcheck_ok_after(r2, t2), r2.read()
    assert last_tick(r2) > t2
