"""Exec-to-first-console-line for khyve and QEMU on the same guest."""
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
GUEST = os.path.join(ROOT, "build/guests/testguest.elf")
KHYVE = os.path.join(ROOT, "build/khyve")
RUNS = int(os.environ.get("BENCH_RUNS", "7"))
MARK = b"KHYVE-GUEST"


def first_line_ms(argv):
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL)
    buf = b""
    while MARK not in buf:
        b = p.stdout.read1(4096) if hasattr(p.stdout, "read1") else p.stdout.read(1)
        if not b:
            break
        buf += b
    dt = (time.monotonic() - t0) * 1000
    rss = 0
    try:
        with open("/proc/%d/status" % p.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
    except OSError:
        pass
    p.kill()
    p.wait()
    return (dt if MARK in buf else None), rss


def median(argv):
    vals, rss = [], []
    for _ in range(RUNS):
        v, r = first_line_ms(argv)
        if v is not None:
            vals.append(v)
            rss.append(r)
    return (statistics.median(vals) if vals else None,
            statistics.median(rss) if rss else None)


def main():
    args = "tests=serial"
    rows = [
        ("khyve", [KHYVE, "--rundir", "/tmp/khyve-bench", "-m", "256M", "-k",
                   GUEST, "-a", args, "-l", "com1,stdio", "bench"]),
        ("qemu -M microvm", ["qemu-system-x86_64", "-accel", "kvm", "-M", "microvm",
                             "-m", "256M", "-nographic", "-nodefaults",
                             "-serial", "stdio", "-kernel", GUEST, "-append", args]),
        ("qemu -M pc", ["qemu-system-x86_64", "-accel", "kvm", "-M", "pc", "-m",
                        "256M", "-nographic", "-nodefaults", "-serial", "stdio",
                        "-kernel", GUEST, "-append", args]),
    ]
    res = {}
    print("%-18s %12s %12s" % ("VMM", "first line", "RSS"))
    for name, argv in rows:
        ms, rss = median(argv)
        res[name] = ms
        print("%-18s %10s ms %9s MiB" % (
            name, "%.1f" % ms if ms else "failed",
            "%.1f" % (rss / 2**20) if rss else "-"))
    if res.get("khyve") and res.get("qemu -M microvm"):
        print("khyve / microvm: %.2fx" % (res["khyve"] / res["qemu -M microvm"]))


if __name__ == "__main__":
    sys.exit(main())
