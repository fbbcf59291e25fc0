"""Shared helpers of the benchmark scripts: run a VMM on the fast test
guest, time console lines, read its memory use."""
import os
import select
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
GUEST = os.path.join(ROOT, "build/guests/testguest.elf")
KHYVE = os.path.join(ROOT, "build/khyve")
RUNDIR = "/tmp/khyve-bench"
# Where the figures come from: bench/run.sh sets it when it had to use
# tests/nested/run.sh (KVM nested under QEMU TCG, not hardware).
ENV = os.environ.get("KHYVE_BENCH_ENV", "host KVM")


def khyve_argv(mem, cmdline, extra=(), name="bench"):
    return [KHYVE, "--rundir", RUNDIR, "-m", mem, "-k", GUEST, "-a", cmdline,
            "-l", "com1,stdio"] + list(extra) + [name]


def qemu_argv(machine, mem, cmdline, extra=()):
    return ["qemu-system-x86_64", "-accel", "kvm", "-M", machine, "-m", mem,
            "-nographic", "-nodefaults", "-serial", "stdio",
            "-kernel", GUEST, "-append", cmdline] + list(extra)


def rss_split(pid, guest_bytes):
    """(total RSS, RSS of mappings at least as large as guest RAM)."""
    total = guest = 0
    size = 0
    try:
        with open("/proc/%d/smaps" % pid) as f:
            for line in f:
                if line.startswith("Size:"):
                    size = int(line.split()[1]) * 1024
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1]) * 1024
                    total += rss
                    if size >= guest_bytes:
                        guest += rss
    except OSError:
        pass
    return total, guest


class Run:
    """A VMM process whose stdout (the guest console) is timed by line."""

    def __init__(self, argv):
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL,
                                  stdin=subprocess.DEVNULL)
        self.buf = b""
        self.lines = []  # (seconds since exec, text)

    def wait_for(self, mark, timeout):
        """Seconds from exec to the first line containing @mark, or None."""
        end = time.monotonic() + timeout
        while True:
            for t, line in self.lines:
                if mark in line:
                    return t
            left = end - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.p.stdout], [], [], min(left, 0.5))
            if not r:
                continue
            data = os.read(self.p.stdout.fileno(), 65536)
            now = time.monotonic() - self.t0
            if not data:
                return None
            self.buf += data
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                self.lines.append((now, line.decode(errors="replace")))

    def text(self):
        return "\n".join(l for _, l in self.lines)

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
        try:
            self.p.wait(30)
        except subprocess.TimeoutExpired:
            # Seen once on nested KVM: a VMM that SIGKILL cannot end.
            sys.stderr.write("bench: pid %d did not die after SIGKILL\n"
                             % self.p.pid)
