"""virtio-blk throughput: the fast test guest's own polled driver
(tests/guests/virtio.c) against khyve's virtio-blk and QEMU's
virtio-blk-pci on the same raw image, same guest, same command line.
Sequential write and read MB/s (64 KiB requests) and 4 KiB random-read
IOPS, each at queue depth 1 and 16 (requests per kick), medians.
Runs are interleaved (one of each row, then again) so that drift of a
shared machine hits every row alike; the image is written in full first,
so no row pays for allocating it. "khyve workers=0" is khyve with every
request on its iothread, one after the other (what it did before the
worker pool), for comparison."""
import os
import re
import statistics
import sys

from benchlib import ENV, Run, khyve_argv, qemu_argv

RUNS = int(os.environ.get("BENCH_VBLK_RUNS", "3"))
MB = int(os.environ.get("BENCH_VBLK_MB", "64"))
RAND_MS = int(os.environ.get("BENCH_VBLK_RAND_MS", "1000"))
IMG = os.environ.get("BENCH_VBLK_IMG", "/tmp/khyve-bench-vblk.img")
LINE = re.compile(r"KHYVE-BENCH vblk (\S+) bytes=(\d+) ios=(\d+) us=(\d+) "
                  r"MBps=([\d.]+) iops=(\d+) status=(-?\d+)")


def once(argv):
    r = Run(argv)
    try:
        ok = r.wait_for("KHYVE-GUEST done", 300)
        text = r.text()
    finally:
        r.stop()
    res = {}
    for m in LINE.finditer(text):
        if m.group(7) == "0":
            res[m.group(1)] = (float(m.group(5)), int(m.group(6)))
    if ok is None or "vblk-bench PASS" not in text:
        sys.stderr.write("vblk bench run failed:\n%s\n" % text)
        return None
    return res


def main():
    with open(IMG, "wb") as f:
        chunk = b"\x5a" * (1 << 20)
        for _ in range(MB + 1):
            f.write(chunk)
    rows = []
    for qd in (1, 16):
        cmd = ("tests=vblk vblk_bench_mb=%d vblk_qd=%d vblk_rand_ms=%d"
               % (MB, qd, RAND_MS))
        rows += [
            ("khyve", qd, khyve_argv("256M", cmd,
                                      ["-s", "2,virtio-blk,%s" % IMG])),
            ("khyve workers=0", qd, khyve_argv(
                "256M", cmd, ["-s", "2,virtio-blk,%s,workers=0" % IMG])),
            ("qemu -M pc", qd, qemu_argv("pc", "256M", cmd, [
                "-drive", "file=%s,if=none,id=d0,format=raw" % IMG,
                "-device", "virtio-blk-pci,drive=d0,disable-legacy=on"])),
        ]
    print("== virtio-blk: test guest driver, %d MiB sequential in 64 KiB "
          "requests, 4 KiB random reads for %d ms (median of %d; %s) =="
          % (MB, RAND_MS, RUNS, ENV))
    print("%-16s %3s %14s %14s %14s" % ("VMM", "qd", "seq write MB/s",
                                        "seq read MB/s", "4K rand IOPS"))
    failed = False
    results = {i: [] for i in range(len(rows))}
    for _ in range(RUNS):
        for i, (name, qd, argv) in enumerate(rows):
            r = once(argv)
            if r:
                results[i].append(r)
    figs = {}
    for i, (name, qd, argv) in enumerate(rows):
        runs = results[i]

        def med(key, idx):
            v = [r[key][idx] for r in runs if key in r]
            return statistics.median(v) if v else None
        w, rd, io = med("seq-write", 0), med("seq-read", 0), \
            med("rand-read-4k", 1)
        figs[(name, qd)] = (w, rd, io)
        failed |= not runs
        print("%-16s %3d %14s %14s %14s" % (
            name, qd, "%.1f" % w if w else "failed",
            "%.1f" % rd if rd else "failed", "%d" % io if io else "failed"))
    for qd in (1, 16):
        k, q = figs.get(("khyve", qd)), figs.get(("qemu -M pc", qd))
        if k and q:
            print("khyve/QEMU qd %2d: seq write %s, seq read %s, "
                  "4K IOPS %s" % (qd, *("%.2fx" % (a / b) if a and b
                                         else "-" for a, b in zip(k, q))))
    os.unlink(IMG)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
