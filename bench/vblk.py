"""virtio-blk throughput: the fast test guest's own polled driver
(tests/guests/virtio.c) against khyve's virtio-blk and QEMU's
virtio-blk-pci on the same raw image, same guest, same command line.
Sequential write and read MB/s (64 KiB requests) and 4 KiB random-read
IOPS, each at queue depth 1 and 16 (requests per kick), medians.
Runs are interleaved (one of each row, then again) so that drift of a
shared machine hits every row alike; the image is written in full first,
so no row pays for allocating it.

Rows: khyve with its defaults (aio=io_uring where the kernel has it),
khyve with each other back-end (aio=threads with the machine's default
pool, at least one worker; aio=sync: every request on the iothread),
QEMU with its defaults. Two sets (BENCH_VBLK_SETS, default both):
"cache": the image in the host page cache (BENCH_VBLK_IMG, /tmp);
"direct": the image on a real file system (BENCH_VBLK_DIRECT_IMG, default
under /var/tmp) opened with O_DIRECT on the host (khyve ",direct", QEMU
"cache=none"), so every request reaches the disk. (The test guest has no
page cache of its own: its driver is already "O_DIRECT" in the guest.)
BENCH_VBLK_WORKERS=1,2,8 adds rows "khyve workers=N" (aio=threads with N
workers, the "cache" set only: the measurement behind
virtio_blk_default_workers())."""
import os
import re
import statistics
import sys

from benchlib import ENV, Run, khyve_argv, qemu_argv

RUNS = int(os.environ.get("BENCH_VBLK_RUNS", "5"))
MB = int(os.environ.get("BENCH_VBLK_MB", "64"))
RAND_MS = int(os.environ.get("BENCH_VBLK_RAND_MS", "1000"))
IMG = os.environ.get("BENCH_VBLK_IMG", "/tmp/khyve-bench-vblk.img")
DIRECT_IMG = os.environ.get("BENCH_VBLK_DIRECT_IMG",
                            "/var/tmp/khyve-bench-vblk-direct.img")
SETS = os.environ.get("BENCH_VBLK_SETS", "cache,direct").split(",")
WORKERS = [int(w) for w in os.environ.get("BENCH_VBLK_WORKERS", "").split(",")
           if w]
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


def fill(img):
    with open(img, "wb") as f:
        chunk = b"\x5a" * (1 << 20)
        for _ in range(MB + 1):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
        # No page cache left behind: an O_DIRECT write over cached pages
        # must drop them first, which io_uring does not do without
        # blocking (it hands such writes to its workers, one at a time
        # per file) and a thread pool does in parallel: the "direct" set
        # would measure the fill's leftovers.
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def fs_of(path):
    """The file system type under @path (/proc/mounts, longest prefix)."""
    best, kind = "", "?"
    with open("/proc/mounts") as f:
        for line in f:
            dev, mnt, typ = line.split()[:3]
            if path.startswith(mnt) and len(mnt) > len(best):
                best, kind = mnt, typ
    return kind


def rows_for(kind, img, qd):
    cmd = ("tests=vblk vblk_bench_mb=%d vblk_qd=%d vblk_rand_ms=%d"
           % (MB, qd, RAND_MS))
    d = ",direct" if kind == "direct" else ""

    def k(opts):
        # A VM name of its own: other benchmarks' "bench" VMs share the
        # run directory.
        return khyve_argv("256M", cmd, ["-s", "2,virtio-blk,%s%s%s"
                                        % (img, d, opts)], name="bench-vblk")
    rows = [("khyve", qd, k("")),
            ("khyve aio=threads", qd, k(",aio=threads")),
            ("khyve aio=sync", qd, k(",aio=sync"))]
    if kind == "cache":
        rows += [("khyve workers=%d" % w, qd,
                  k(",aio=threads,workers=%d" % w)) for w in WORKERS]
    cache = ",cache=none" if kind == "direct" else ""
    rows.append(("qemu -M pc", qd, qemu_argv("pc", "256M", cmd, [
        "-drive", "file=%s,if=none,id=d0,format=raw%s" % (img, cache),
        "-device", "virtio-blk-pci,drive=d0,disable-legacy=on"])))
    return rows


def main():
    sets = []
    for kind in SETS:
        img = DIRECT_IMG if kind == "direct" else IMG
        fill(img)
        sets.append((kind, img))
    rows = []
    for kind, img in sets:
        for qd in (1, 16):
            rows += [(kind,) + r for r in rows_for(kind, img, qd)]
    print("== virtio-blk: test guest driver, %d MiB sequential in 64 KiB "
          "requests, 4 KiB random reads for %d ms (median of %d, rows "
          "interleaved; %s; load %s) ==" % (
              MB, RAND_MS, RUNS, ENV,
              " ".join("%.2f" % x for x in os.getloadavg())))
    for kind, img in sets:
        print("   set %s: %s on %s%s" % (
            kind, img, fs_of(img),
            ", O_DIRECT on the host (khyve direct, QEMU cache=none)"
            if kind == "direct" else ", host page cache"))
    print("%-6s %-20s %3s %14s %14s %14s" % (
        "set", "VMM", "qd", "seq write MB/s", "seq read MB/s",
        "4K rand IOPS"))
    failed = False
    results = {i: [] for i in range(len(rows))}
    for _ in range(RUNS):
        for i, (kind, name, qd, argv) in enumerate(rows):
            r = once(argv)
            if r:
                results[i].append(r)
    figs = {}
    for i, (kind, name, qd, argv) in enumerate(rows):
        runs = results[i]

        def med(key, idx):
            v = [r[key][idx] for r in runs if key in r]
            return statistics.median(v) if v else None
        w, rd, io = med("seq-write", 0), med("seq-read", 0), \
            med("rand-read-4k", 1)
        figs[(kind, name, qd)] = (w, rd, io)
        failed |= not runs
        print("%-6s %-20s %3d %14s %14s %14s" % (
            kind, name, qd, "%.1f" % w if w else "failed",
            "%.1f" % rd if rd else "failed", "%d" % io if io else "failed"))
    for (kind, name, qd), k in figs.items():
        q = figs.get((kind, "qemu -M pc", qd))
        if name.startswith("khyve") and k and q:
            print("%-6s %-20s/QEMU qd %2d: seq write %s, seq read %s, "
                  "4K IOPS %s" % (kind, name, qd, *(
                      "%.2fx" % (a / b) if a and b else "-"
                      for a, b in zip(k, q))))
    print("load after: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
    for _, img in sets:
        os.unlink(img)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
