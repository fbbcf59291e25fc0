"""A clone's Linux is told it is one (issue 15): the project's kernel
(guest/linux, root on virtio-blk, init=/bin/sh) binds khyve's Generic Event
Device (ACPI0013, IOAPIC GSI 16, edge) and enumerates the VMGENCTR
device; a clone restored from a checkpoint of it takes exactly one GED
interrupt - the one khyve raises after writing the new generation ID,
whose _EVT notifies VMGENCTR - while the checkpointed original takes
none. (This kernel has no CONFIG_VMGENID, docs/linux-guest.md, so
nothing re-reads the ID yet; the notify path up to Linux is what is
judged.) One boot of the project kernel, straight to a shell (no
initramfs: kvm_pvm emulates its decompression for minutes); needs
build/linux (vmlinux, rootfs.ext4 from guest/linux/build.sh) and
/dev/kvm."""
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import needs_kvm
from test_linux import BOOT_TIMEOUT, LINUX_DIR
from test_snapshot import ctl_json, restored

pytestmark = needs_kvm

GED = re.compile(r"^\s*\d+:\s+(\d+)\s+IO-APIC\s+16-edge\s+ACPI:Ged\s*$", re.M)


def shell(g, cmd, tag, timeout):
    """Run @cmd in the guest's shell; its output up to the marker. The
    marker is computed by the shell, so the echoed command never matches;
    the command is sent again until the guest echoes it, as busybox's
    first prompt may swallow input while it asks the terminal for the
    cursor position."""
    mark = "MARK-%s-%d" % (tag, 42)
    text = "%s; echo MARK-%s-$((40+2))" % (cmd, tag)
    line = ("\r\n%s\r\n" % text).encode()
    end, sent = time.time() + timeout, 0
    start = len(g.read())
    while time.time() < end:
        out = g.read()[start:]
        if mark in out:
            return out[:out.index(mark)]
        if g.proc.poll() is not None:
            break
        # Until the tty echoes it: a command sent twice would still be
        # queued in the guest at the next checkpoint, and run by clones.
        if text not in out and time.time() - sent > 20:
            g.proc.stdin.write(line)
            g.proc.stdin.flush()
            sent = time.time()
        time.sleep(0.1)
    raise AssertionError("no %s from the guest:\n%s" % (mark,
                                                         g.read()[-3000:]))


def ged_count(g, tag, timeout=300):
    out = shell(g, "grep -e Ged /proc/interrupts", tag, timeout)
    m = GED.findall(out)
    assert len(m) == 1, out
    return int(m[0])


@pytest.mark.skipif(not all(os.path.isfile(os.path.join(LINUX_DIR, f))
                            for f in ("vmlinux", "rootfs.ext4")),
                    reason="no %s/vmlinux and rootfs.ext4 (run "
                    "guest/linux/build.sh)" % LINUX_DIR)
def test_linux_clone_takes_the_generation_notify(guest_factory, tmp_path):
    snap = str(tmp_path / "lx.snap")
    # Mounted read-only: the clone runs beside the original on the same
    # image (the snapshot's binding), and neither may write it.
    disk = str(tmp_path / "rootfs.ext4")
    shutil.copyfile(os.path.join(LINUX_DIR, "rootfs.ext4"), disk)
    # khyve's CPU policy appends "noxsave ..." to the command line on
    # kvm_pvm, and Linux hands such words to init as arguments: sh then
    # runs the script /noxsave, which gives it the console.
    script = str(tmp_path / "noxsave")
    with open(script, "w") as f:
        f.write("exec /bin/sh\n")
    r = subprocess.run(["debugfs", "-w", "-R", "write %s noxsave" % script,
                        disk], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    g = guest_factory(["-m", "256M", "-k", os.path.join(LINUX_DIR, "vmlinux"),
                       "-a", "console=ttyS0 root=/dev/vda ro panic=-1 "
                       "init=/bin/sh", "-l", "com1,stdio",
                       "-s", "2,virtio-blk," + disk, "-s", "3,virtio-rng"],
                      name="lx")
    assert g.wait_for("Run /bin/sh as init process", BOOT_TIMEOUT), \
        g.read()[-3000:]
    devs = shell(g, "mount -t proc proc /proc; mount -t sysfs sys /sys; "
                 "ls /sys/bus/acpi/devices", "devs", 300)
    assert "VMGENCTR:00" in devs and "ACPI0013:00" in devs, devs
    assert ged_count(g, "orig0") == 0
    res = ctl_json(g, "checkpoint", "lx", snap)
    assert res["file"] == snap, res
    c = restored(guest_factory, snap, "lxc", ["-l", "com1,stdio"])
    assert ged_count(c, "clone") == 1
    # The original goes on in its own generation.
    assert ged_count(g, "orig1") == 0
    for x in (g, c):
        x.stop()
