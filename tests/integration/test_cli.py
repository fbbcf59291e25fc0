"""Command-line and bad-input behaviour of khyve and khyvectl.

These run everywhere: they check the errors a user gets before any guest
runs (and, on machines without /dev/kvm, the error for that)."""
import os
import subprocess

import pytest

from conftest import KHYVE, KHYVECTL, KVM_OK, GUEST, needs_kvm


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=30, **kw)


def test_help_and_version():
    r = run([KHYVE, "--help"])
    assert r.returncode == 0
    assert "usage: khyve" in r.stdout and "-s, --slot" in r.stdout
    r = run([KHYVE, "--version"])
    assert r.returncode == 0 and r.stdout.startswith("khyve ")


def test_slot_help_lists_emulations():
    r = run([KHYVE, "-s", "help"])
    assert r.returncode == 0
    assert "virtio-blk" in r.stdout


@pytest.mark.parametrize("args,needle", [
    (["-c", "0", "-k", "/etc/hostname", "vm"], "vCPUs"),
    (["-c", "65", "-k", "/etc/hostname", "vm"], "vCPUs"),
    (["-m", "1M", "-k", "/etc/hostname", "vm"], "at least 16M"),
    (["-m", "lots", "-k", "/etc/hostname", "vm"], "not a memory size"),
    (["--frobnicate", "vm"], "unknown option --frobnicate"),
    (["-k", "/etc/hostname"], "missing VM name"),
    (["vm"], "no kernel given"),
    (["-k", "/etc/hostname", "bad/name"], "invalid VM name"),
    (["-k", "/nonexistent/vmlinux", "vm"], "kernel /nonexistent/vmlinux: No such file"),
    (["-k", "/etc/hostname", "-i", "/nonexistent/initrd", "vm"], "initrd /nonexistent/initrd"),
    (["-k", "/etc/hostname", "-s", "2,virtio-blk,a", "-s", "2,virtio-rng", "vm"], "already taken"),
    (["-k", "/etc/hostname", "-l", "com9,stdio", "vm"], "com1"),
    (["-r", "/nonexistent.snap"], "/nonexistent.snap"),
])
def test_bad_input_one_clear_line(args, needle, tmp_path):
    r = run([KHYVE, "--rundir", str(tmp_path)] + args, cwd=str(tmp_path))
    assert r.returncode == 4, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    assert needle in lines[0]
    assert lines[0].startswith("khyve: ")
    # Nothing left behind: no socket, no core file.
    assert not os.path.exists(os.path.join(str(tmp_path), "vm.sock"))
    assert not os.path.exists(os.path.join(str(tmp_path), "core"))


@needs_kvm
def test_missing_disk_image_one_line(tmp_path):
    # The device says why in the error it returns; nobody else logs it.
    img = "/nonexistent/x.img"
    r = run([KHYVE, "--rundir", str(tmp_path), "-m", "64M", "-k", GUEST,
             "-s", "2,virtio-blk," + img, "vm"], cwd=str(tmp_path))
    assert r.returncode == 4, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("khyve: ") and img in lines[0], r.stderr
    assert "No such file or directory" in lines[0], r.stderr
    assert not os.path.exists(os.path.join(str(tmp_path), "vm.sock"))


@pytest.mark.skipif(KVM_OK, reason="this host has /dev/kvm")
def test_missing_kvm_is_reported(tmp_path):
    r = run([KHYVE, "--rundir", str(tmp_path), "-k", "/etc/hostname", "vm"])
    assert r.returncode == 4
    assert "/dev/kvm" in r.stderr and "KVM is not available" in r.stderr
    assert os.listdir(str(tmp_path)) == [] if os.path.isdir(str(tmp_path)) else True


def test_khyvectl_unknown_vm(tmp_path):
    r = run([KHYVECTL, "--rundir", str(tmp_path), "status", "nosuchvm"])
    assert r.returncode != 0
    assert "nosuchvm" in r.stderr and str(tmp_path) in r.stderr


def test_khyvectl_snapshot_info_rejects_garbage(tmp_path):
    bad = tmp_path / "garbage.snap"
    bad.write_bytes(os.urandom(4096))
    r = run([KHYVECTL, "snapshot", "info", str(bad)])
    assert r.returncode != 0
    assert "garbage.snap" in r.stderr
    r = run([KHYVECTL, "snapshot", "verify", str(bad)])
    assert r.returncode != 0


def test_test_guest_is_built():
    # The fast test guest is a PVH ELF (the boot tests need it).
    with open(GUEST, "rb") as f:
        head = f.read(4)
    assert head == b"\x7fELF"
