"""Exec-to-first-console-line for khyve and QEMU on the same guest, and
each VMM's RSS beyond guest memory."""
import os
import statistics
import sys

from benchlib import ENV, Run, khyve_argv, qemu_argv, rss_split

RUNS = int(os.environ.get("BENCH_RUNS", "7"))
MARK = "KHYVE-GUEST"
MEM = "256M"
GUEST_BYTES = 256 << 20


def once(argv):
    r = Run(argv)
    try:
        t = r.wait_for(MARK, 60)
        total, guest = rss_split(r.p.pid, GUEST_BYTES)
    finally:
        r.stop()
    return t, total, guest


def main():
    args = "tests=serial"
    rows = [
        ("khyve", khyve_argv(MEM, args)),
        ("qemu -M microvm", qemu_argv("microvm", MEM, args)),
        ("qemu -M pc", qemu_argv("pc", MEM, args)),
    ]
    res = {}
    print("== start-up: exec to the test guest's first console line "
          "(median of %d; %s) ==" % (RUNS, ENV))
    print("%-16s %12s %8s %14s %12s" % ("VMM", "first line", "runs ok",
                                         "RSS total", "RSS - guest"))
    for name, argv in rows:
        ts, tot, own = [], [], []
        for _ in range(RUNS):
            t, total, guest = once(argv)
            if t is not None:
                ts.append(t * 1000)
                tot.append(total)
                own.append(total - guest)
        ms = statistics.median(ts) if ts else None
        res[name] = ms
        print("%-16s %9s ms %4d/%-3d %10s MiB %8s MiB" % (
            name, "%.1f" % ms if ms else "failed", len(ts), RUNS,
            "%.1f" % (statistics.median(tot) / 2**20) if tot else "-",
            "%.1f" % (statistics.median(own) / 2**20) if own else "-"))
    if res.get("khyve") and res.get("qemu -M microvm"):
        print("khyve / qemu microvm: %.2fx" % (res["khyve"] /
                                               res["qemu -M microvm"]))
    return 0 if res.get("khyve") else 1


if __name__ == "__main__":
    sys.exit(main())
