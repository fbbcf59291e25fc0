"""Boot the fast test guest under khyve and check what the guest reports.

Needs /dev/kvm; skipped (with the reason) where it is absent."""
import json
import re
import time

import pytest

from conftest import GUEST, needs_kvm, verdict

pytestmark = needs_kvm


def boot(guest_factory, tests, cpus=1, mem="256M", extra=()):
    return guest_factory(["-c", str(cpus), "-m", mem, "-k", GUEST,
                          "-a", tests, "-l", "com1,stdio"] + list(extra))


@pytest.mark.parametrize("cpus", [1, 2])
def test_self_checks_pass(guest_factory, cpus):
    g = boot(guest_factory, "tests=serial,mem,timer,smp", cpus=cpus)
    assert g.wait_for("KHYVE-GUEST done", 120), g.read()
    assert g.finish() == 1  # powered off
    out = g.read()
    # smp-mem needs an AP: with one vCPU it is not run, not passed.
    verdict(out, ["serial", "mem-size", "mem-pattern", "timer", "smp"] +
            (["smp-mem"] if cpus > 1 else []))
    assert re.search(r"KHYVE-TEST smp PASS cpus=%d" % cpus, out), out


def test_memory_above_4g(guest_factory):
    # The pattern covers the top 64 MiB of RAM (above 4 GiB): writing all
    # 5 GiB takes minutes on the nested KVM the suite may run on.
    g = boot(guest_factory, "tests=mem mem_limit_mb=64", mem="5G")
    assert g.wait_for("KHYVE-GUEST done", 300), g.read()
    # The verdict line comes one UART write at a time: read it whole (a
    # sanitized build was once read at "KHYVE-GUEST done pas").
    end = time.time() + 30
    while "\n" not in g.read().split("KHYVE-GUEST done", 1)[1] and \
            time.time() < end:
        time.sleep(0.02)
    out = g.read()
    m = re.search(r"KHYVE-TEST mem-size PASS ram=(\d+)", out)
    assert m and int(m.group(1)) >= 5 * 1024**3 - 2 * 1024**2, out
    ranges = [int(a, 16) for a in re.findall(r"KHYVE-INFO mem range (0x[0-9a-f]+)-", out)]
    assert ranges and min(ranges) >= 4 * 1024**3, out  # tested above 4 GiB
    verdict(out, ["mem-size", "mem-pattern"])


@pytest.mark.parametrize("mode,status", [("poweroff", 1), ("reboot", 0),
                                         ("triplefault", 3)])
def test_exit_statuses(guest_factory, mode, status):
    g = boot(guest_factory, "exit=" + mode)
    assert g.finish(60) == status, g.proc.stderr.read().decode()


def test_typed_input_echoes(guest_factory):
    g = boot(guest_factory, "tests=echo")
    assert g.wait_for("KHYVE-ECHO ready", 60)
    g.proc.stdin.write(b"hello khyve\n")
    g.proc.stdin.flush()
    assert g.wait_for("KHYVE-ECHO got hello khyve", 30), g.read()
    g.proc.stdin.write(b"second line\nquit\n")
    g.proc.stdin.flush()
    assert g.wait_for("KHYVE-GUEST done", 30), g.read()
    assert g.finish() == 1
    # The guest counts what it received: both lines, whole.
    verdict(g.read(), ["echo"])
    assert "KHYVE-TEST echo PASS lines=2 bytes=22" in g.read(), g.read()


def counter_values(text):
    # Complete lines only: a suspend can land in the middle of one.
    return [int(x) for x in re.findall(r"KHYVE-COUNTER (\d+) [^\n]*\n", text)]


def test_pause_resume_and_registers(guest_factory):
    g = boot(guest_factory, "counter interval_ms=50")
    assert g.wait_for("KHYVE-COUNTER 3", 60)
    assert g.ctl("pause", "t").returncode == 0
    # All the guest printed before the pause reaches us: as many bytes as
    # its UART sent (waited for; a sleep assumed it took under 0.3 s).
    st = json.loads(g.ctl("stats", "t", "--json").stdout)
    sent = st["devices"]["com1"]["tx_bytes"]
    end = time.time() + 30
    while len(g.out) < sent and time.time() < end:
        g.read()
        time.sleep(0.02)
    assert len(g.out) == sent, (len(g.out), sent)
    before = counter_values(g.read())
    time.sleep(0.5)  # a guest still running would print in this time
    assert counter_values(g.read()) == before  # stopped while paused
    assert len(g.out) == sent
    r = g.ctl("regs", "t", "--json")
    assert r.returncode == 0, r.stderr
    regs = json.loads(r.stdout)
    val = lambda k: int(regs[k], 0) if isinstance(regs[k], str) else regs[k]
    assert val("cr0") & 0x80000000  # paging on
    assert val("efer") & 0x400      # long mode active
    # The counter loop runs in the test guest's image, loaded at 1 MiB.
    assert 0x100000 <= val("rip") < 0x100000 + 4 * 1024 * 1024, regs
    st1 = json.loads(g.ctl("stats", "t", "--json").stdout)
    assert g.ctl("resume", "t").returncode == 0
    assert g.wait_for("KHYVE-COUNTER %d" % (before[-1] + 3), 30)
    st = g.ctl("stats", "t", "--json")
    assert st.returncode == 0 and "exits" in st.stdout
    st2 = json.loads(st.stdout)
    # Real numbers that move: the guest's console output exits.
    assert st2["vcpus"][0]["exits_total"] > st1["vcpus"][0]["exits_total"]
    assert st2["devices"]["com1"]["tx_bytes"] > st1["devices"]["com1"]["tx_bytes"]
    assert st2["rss"] > 0
    assert g.ctl("poweroff", "t", "--force").returncode == 0
    assert g.finish() == 1


def test_checkpoint_restore_continues(guest_factory, tmp_path):
    snap = str(tmp_path / "c.snap")
    g = boot(guest_factory, "counter interval_ms=50")
    assert g.wait_for("KHYVE-COUNTER 5", 60)
    r = g.ctl("suspend", "t", snap)
    assert r.returncode == 0, r.stderr
    assert g.finish() == 5
    last = counter_values(g.read())[-1]
    info = g.ctl("snapshot", "verify", snap)
    assert info.returncode == 0, info.stderr
    r2 = guest_factory(["-r", snap], name="t2")
    assert r2.wait_for("KHYVE-COUNTER %d" % (last + 2), 60), r2.read()
    # The two outputs joined are one count: a suspend in the middle of a
    # line leaves its start to the original and its end to the restore
    # (whose first whole line is then last + 2).
    vals = counter_values(g.read() + r2.read())
    assert vals[0] < last and vals == list(range(vals[0], vals[0] + len(vals))), vals
    assert "KHYVE-MEMCHECK bad" not in r2.read()
