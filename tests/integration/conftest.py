"""Shared fixtures for khyve's integration tests.

Tests that need a guest to run need /dev/kvm; on machines without it they
are skipped with that reason (they are not faked).
"""
import os
import re
import subprocess
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.join(ROOT, os.environ.get("KHYVE_BUILD", "build"))
KHYVE = os.path.join(BUILD, "khyve")
KHYVECTL = os.path.join(BUILD, "khyvectl")
GUEST = os.path.join(ROOT, "build", "guests", "testguest.elf")


def kvm_usable():
    """The project's one KVM probe: `khyve --probe-kvm` opens /dev/kvm,
    checks the API version and the capabilities khyve needs. Status 4 is
    "no usable KVM here" (a skip, with khyve's reason); anything else that
    is not 0 is a broken build, which must fail, not skip."""
    if not os.access(KHYVE, os.X_OK):
        raise RuntimeError("%s is not built (run make first)" % KHYVE)
    r = subprocess.run([KHYVE, "--probe-kvm"], capture_output=True,
                       text=True, timeout=60)
    if r.returncode == 0:
        return True, r.stdout.strip()
    if r.returncode == 4:
        return False, "no usable KVM here: " + r.stderr.strip()
    raise RuntimeError("khyve --probe-kvm failed with status %d: %s"
                       % (r.returncode, r.stderr.strip()))


KVM_OK, KVM_WHY = kvm_usable()
# A software backend (kvm_pvm) emulates guest kernel code at ~1 us per
# instruction: tests size kernel-side work for it, never skip it.
KVM_SOFTWARE = KVM_OK and "software" in KVM_WHY
needs_kvm = pytest.mark.skipif(not KVM_OK, reason=KVM_WHY or "no KVM")


VERDICT = re.compile(r"^KHYVE-GUEST done pass=(\d+) fail=(\d+)\s*$", re.M)
PASS_LINE = re.compile(r"^KHYVE-TEST (\S+) PASS\b", re.M)


def verdict(out, expect=None):
    """The test guest's verdict, judged strictly: exactly one "done" line,
    fail=0, no guest exception, and - for a guest that booted in this
    process (@expect: the test names it must pass, in any order) - exactly
    those PASS lines, as many as the verdict counts. A restored guest
    counts the passes of its whole life, so pass @expect=None there."""
    done = VERDICT.findall(out)
    assert len(done) == 1, "want one verdict line, got %r:\n%s" % (done, out)
    npass, nfail = int(done[0][0]), int(done[0][1])
    assert "KHYVE-GUEST exception" not in out, out
    assert nfail == 0 and " FAIL" not in out, out
    if expect is not None:
        got = PASS_LINE.findall(out)
        assert sorted(got) == sorted(expect), (got, expect, out)
        assert npass == len(expect), out
    return npass


@pytest.fixture
def rundir(tmp_path):
    d = tmp_path / "run"
    return str(d)


class Guest:
    """A khyve process with its console on a pipe."""

    def __init__(self, args, rundir, name="t"):
        self.name = name
        self.rundir = rundir
        self.proc = subprocess.Popen(
            [KHYVE, "--rundir", rundir] + args + [name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        self.out = b""
        os.set_blocking(self.proc.stdout.fileno(), False)

    def read(self):
        try:
            data = self.proc.stdout.read()
        except (BlockingIOError, ValueError):
            data = None
        if data:
            self.out += data
        return self.out.decode(errors="replace")

    def wait_for(self, text, timeout=60):
        end = time.time() + timeout
        while time.time() < end:
            if text in self.read():
                return True
            if self.proc.poll() is not None:
                self.read()
                return text in self.out.decode(errors="replace")
            time.sleep(0.02)
        return False

    def ctl(self, *args):
        return subprocess.run([KHYVECTL, "--rundir", self.rundir] + list(args),
                              capture_output=True, text=True, timeout=60)

    def finish(self, timeout=60):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                try:
                    self.proc.wait(15)
                except subprocess.TimeoutExpired:
                    pass
        self.read()
        return self.proc.returncode

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            # Never hang the suite on a process SIGKILL cannot end (seen
            # once on nested KVM: stuck inside the host kernel).
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            pass


@pytest.fixture
def guest_factory(rundir):
    made = []

    def make(args, name="t"):
        g = Guest(args, rundir, name)
        made.append(g)
        return g

    yield make
    for g in made:
        g.stop()


# ---- sanitizer reports fail the test that caused them ----
#
# A sanitized khyve or khyvectl (KHYVE_BUILD=build-san) that reports an
# error must fail the test even when its exit status looked right and
# whatever the test did with its stderr (many read it, some require it to
# be exactly one line). So every process started during a test writes its
# reports to files of its own (the sanitizers' log_path, appended to the
# options `make check` exports) and the test fails if any holds a report.
SAN_REPORT = re.compile(r"ERROR: (?:AddressSanitizer|LeakSanitizer|"
                        r"UndefinedBehaviorSanitizer)|runtime error:")


def sanitizer_reports(text):
    """The sanitizer report lines in @text (a stderr or a log file)."""
    return [l for l in text.splitlines() if SAN_REPORT.search(l)]


@pytest.fixture(autouse=True)
def no_sanitizer_reports(tmp_path_factory, monkeypatch):
    logs = tmp_path_factory.mktemp("sanitizer")
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        opts = os.environ.get(var, "")
        monkeypatch.setenv(var, (opts + ":" if opts else "") +
                           "log_path=" + str(logs / "report"))
    yield
    found = []
    for f in sorted(logs.iterdir()):
        text = f.read_text(errors="replace")
        if sanitizer_reports(text):
            found.append("%s:\n%s" % (f, text[:8000]))
    if found:
        pytest.fail("sanitizer report(s) from a process this test ran:\n"
                    + "\n".join(found), pytrace=False)
