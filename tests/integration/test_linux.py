"""Linux under khyve: Debian's stock kernel and the project's own kernel.

Needs /dev/kvm (tests/nested/run.sh provides it where the host has none)
and the kernel artefacts; each part skips with the reason when they are
missing. A Linux boot is slow under nested KVM, so each kernel boots once
per run (a module-scoped fixture) and several tests read its console.

Artefacts:
- stock: $KHYVE_TEST_VMLINUZ, else build/nested/vmlinuz (tests/nested/run.sh
  downloads Debian's linux-image-*-amd64 there);
- project: $KHYVE_LINUX_DIR, else build/linux (guest/linux/build.sh):
  vmlinux, rootfs.ext4.
"""
import os
import re
import shutil
import subprocess
import time
import zlib

import pytest

from conftest import BUILD, KHYVE, ROOT, needs_kvm

pytestmark = needs_kvm

STOCK = os.environ.get("KHYVE_TEST_VMLINUZ",
                       os.path.join(ROOT, "build", "nested", "vmlinuz"))
LINUX_DIR = os.environ.get("KHYVE_LINUX_DIR",
                           os.path.join(ROOT, "build", "linux"))
# Nested KVM under TCG runs the stock kernel to its root-mount panic in
# about a minute when the host is idle, but over 5 minutes when other QEMUs
# share its 2 cores; the limit only matters when something is wrong.
BOOT_TIMEOUT = float(os.environ.get("KHYVE_LINUX_TIMEOUT", "600"))


def run_console(args, stop, timeout, cwd):
    """Run khyve until a console line matches @stop or it exits; return
    (console text, exit status or None if it was killed)."""
    p = subprocess.Popen([KHYVE, "--rundir", os.path.join(cwd, "run")] +
                         args, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    os.set_blocking(p.stdout.fileno(), False)
    out = b""
    end = time.time() + timeout
    rc = None
    while time.time() < end:
        try:
            d = p.stdout.read()
        except BlockingIOError:
            d = None
        if d:
            out += d
        if re.search(stop, out.decode(errors="replace")):
            break
        if p.poll() is not None:
            out += p.stdout.read() or b""
            break
        time.sleep(0.05)
    try:
        rc = p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        rc = None
    return out.decode(errors="replace").replace("\r", ""), rc


# ---- Debian's stock kernel: early boot milestones ----

@pytest.fixture(scope="module")
def stock(tmp_path_factory):
    if not os.path.isfile(STOCK):
        pytest.skip("no stock kernel at %s (tests/nested/run.sh fetches it)"
                    % STOCK)
    d = str(tmp_path_factory.mktemp("stock"))
    # panic=-1: the root-mount panic reboots, and khyve exits with status 0.
    out, rc = run_console(["-c", "2", "-m", "256M", "-k", STOCK, "-a",
                           "console=ttyS0 panic=-1", "stock"],
                          r"Kernel panic - not syncing[^\n]*\n", BOOT_TIMEOUT, d)
    return out, rc


def test_stock_kernel_starts(stock):
    out, _ = stock
    assert re.search(r"Linux version 6\.\d+", out), out[-3000:]
    assert "Hypervisor detected: KVM" in out, out[-3000:]


def test_stock_kernel_sees_cpus_and_memory(stock):
    out, _ = stock
    assert "smpboot: Allowing 2 CPUs" in out, out[-3000:]
    assert re.search(r"smp: Brought up 1 node, 2 CPUs", out), out[-3000:]
    m = re.search(r"Memory: (\d+)K/(\d+)K available", out)
    assert m, out[-3000:]
    # 256 MiB minus the holes below 1 MiB.
    assert 250 * 1024 <= int(m.group(2)) <= 256 * 1024, m.group(0)


def test_stock_kernel_legacy_devices_get_irqs(stock):
    out, _ = stock
    # The ISA devices are found through the DSDT and get their interrupts.
    assert re.search(r"ttyS0 at I/O 0x3f8 \(irq = \d+", out), out[-3000:]
    assert re.search(r"serio: i8042 KBD port at 0x60,0x64 irq \d+", out), \
        out[-3000:]
    assert "rtc_cmos 00:02: registered as rtc0" in out or \
        re.search(r"rtc_cmos \S+: registered as rtc0", out), out[-3000:]
    assert "probe of i8042 failed" not in out
    assert "probe of rtc_cmos failed" not in out


def test_stock_kernel_reaches_root_mount_and_reboots(stock):
    out, rc = stock
    assert "Kernel panic - not syncing: VFS: Unable to mount root fs" in out, \
        out[-3000:]
    assert "Oops" not in out and "BUG:" not in out, out[-3000:]
    if rc is None:
        # Seen on nested KVM: after the panic the guest's restart (ACPI
        # reset register 0xcf9, then i8042) did not end khyve within 30 s.
        # Not understood yet; recorded instead of hidden.
        pytest.xfail("khyve did not exit after the guest's panic reboot")
    assert rc == 0, "khyve exit status %r (0 = rebooted)" % rc


# ---- the project's kernel: root on virtio-blk, khyve_test workloads ----

@pytest.fixture(scope="module")
def project(tmp_path_factory):
    need = [os.path.join(LINUX_DIR, f) for f in ("vmlinux", "rootfs.ext4")]
    missing = [f for f in need if not os.path.isfile(f)]
    if missing:
        pytest.skip("project kernel not built (%s missing; run "
                    "guest/linux/build.sh)" % ", ".join(missing))
    d = str(tmp_path_factory.mktemp("project"))
    disk = os.path.join(d, "rootfs.ext4")
    shutil.copyfile(need[1], disk)
    cmd = ("console=ttyS0 root=/dev/vda rw panic=-1 khyve_test.counter=1 "
           "khyve_test.mem=16 khyve_test.mem_interval=2 khyve_test.blk=1 "
           "khyve_test.runtime=5 khyve_test.poweroff=1")
    out, rc = run_console(["-c", "2", "-m", "256M", "-k", need[0],
                           "-s", "2,virtio-blk," + disk, "-a", cmd,
                           "project"],
                          r"reboot: Power down|Kernel panic", BOOT_TIMEOUT, d)
    return out, rc, disk


def test_project_kernel_boots_with_root_on_virtio_blk(project):
    out, rc, _ = project
    assert "smpboot: Allowing 2 CPUs" in out, out[-3000:]
    assert re.search(r"Brought up 1 node, 2 CPUs", out), out[-3000:]
    assert re.search(r"virtio_blk virtio\d+: \[vda\]", out), out[-3000:]
    assert re.search(r"EXT4-fs \(vda\): mounted filesystem", out), \
        out[-3000:]
    # Hardware-like nested KVM: user space runs (busybox init from vda).
    assert "Run /sbin/init as init process" in out, out[-3000:]
    assert "Kernel panic" not in out, out[-3000:]


def test_project_kernel_test_module(project):
    out, rc, _ = project
    counters = [int(x) for x in
                re.findall(r"khyve_test: counter (\d+) ", out)]
    assert len(counters) >= 3, out[-3000:]
    assert counters == list(range(counters[0], counters[0] + len(counters)))
    assert re.search(r"khyve_test: memcheck ok", out), out[-3000:]
    assert "memcheck BAD" not in out
    assert re.search(r"khyve_test: file \S+ ok", out), out[-3000:]
    assert not re.search(r"khyve_test: file \S+ BAD", out), out[-3000:]
    assert "khyve_test: all tests done, 0 failures" in out, out[-3000:]
    assert rc == 1, "khyve exit status %r (1 = powered off)" % rc


def test_project_kernel_disk_clean_after(project):
    out, rc, disk = project
    if rc is None:
        pytest.skip("guest did not power off")
    r = subprocess.run(["e2fsck", "-fn", disk], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"khyve_test: wrote (\S+) size (\d+) crc32 ([0-9a-f]+)",
                  out)
    assert m, out[-3000:]
    dump = os.path.join(os.path.dirname(disk), "guest.bin")
    r = subprocess.run(["debugfs", "-R", "dump %s %s" % (m.group(1), dump),
                        disk], capture_output=True, text=True)
    assert os.path.isfile(dump), r.stderr
    data = open(dump, "rb").read()
    assert len(data) == int(m.group(2))
    assert zlib.crc32(data) & 0xffffffff == int(m.group(3), 16)
