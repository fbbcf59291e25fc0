"""Incremental checkpoints (issue 15 item 2): time and size after 1% and
10% of guest memory changed, against a full checkpoint of the same guest.

The fast test guest (512 MiB, BENCH_CHAIN_TOUCH_MB of it filled with
incompressible data first) runs the counter with a region of the given
share of its RAM and rewrites the whole region every tick. Per share:
a full checkpoint (the base), then, once the guest has rewritten its
region at least twice, an incremental one; both live (the default), in
tmpfs. Reported: the checkpoint reply's total_ms and paused_ms, the
files' size on disk (du: the state file plus the RAM file's blocks),
the pages the increment holds (changed_bytes), and the goal's ratio,
increment size / changed memory (the region). Then the increment is
restored (mapped and eager), to its first counter line.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from benchlib import ENV, ROOT, RUNDIR, Run, khyve_argv

KHYVE = os.path.join(ROOT, "build/khyve")
KHYVECTL = os.path.join(ROOT, "build/khyvectl")
MEM_MB = 512
TOUCH = int(os.environ.get("BENCH_CHAIN_TOUCH_MB", "400"))
SHARES = [float(x) for x in
          os.environ.get("BENCH_CHAIN_SHARES", "1,10").split(",") if x]
RUNS = int(os.environ.get("BENCH_CHAIN_RUNS", "3"))
DIR = os.environ.get("BENCH_CHAIN_DIR", "/tmp/khyve-bench-chain")
MARK = "KHYVE-COUNTER"


def log(msg):
    sys.stderr.write("chain bench: %s\n" % msg)
    sys.stderr.flush()


def du(*paths):
    return sum(os.stat(p).st_blocks * 512 for p in paths if os.path.exists(p))


def ctl(*args):
    p = subprocess.run([KHYVECTL, "--rundir", RUNDIR, "--json"] + list(args),
                       capture_output=True, text=True, timeout=600)
    if p.returncode:
        raise RuntimeError("khyvectl %s: %s" % (" ".join(args), p.stderr))
    return json.loads(p.stdout)


def ticks_after(r, n, more, timeout=120):
    """Wait until @r printed @more counter lines after its first @n."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if sum(MARK in l for _, l in r.lines[n:]) >= more:
            return
        r.wait_for("\0", 0.1)
    raise RuntimeError("no counter lines:\n" + r.text())


def restore_ms(state, extra):
    t0 = time.monotonic()
    r = Run([KHYVE, "--rundir", RUNDIR, "-r", state] + list(extra) +
            ["restored"])
    t = r.wait_for(MARK, 120)
    r.stop()
    if t is None:
        raise RuntimeError("restore: no counter line:\n" + r.text())
    return (time.monotonic() - t0) * 1000


def one(share):
    mem_kb = int(MEM_MB * 1024 * share / 100)
    pages = mem_kb // 4
    cmd = ("touch_mb=%d counter interval_ms=50 check_every=1000000 "
           "mem_kb=%d dirty_pages=%d" % (TOUCH, mem_kb, pages))
    shutil.rmtree(DIR, ignore_errors=True)
    os.makedirs(DIR)
    r = Run(khyve_argv("%dM" % MEM_MB, cmd, name="chain"))
    out = {"full_ms": [], "full_paused": [], "full_bytes": [], "inc_ms": [],
           "inc_paused": [], "inc_bytes": [], "changed": [], "map_ms": [],
           "eager_ms": []}
    try:
        if r.wait_for(MARK, 900) is None:
            raise RuntimeError("no counter line:\n" + r.text())
        for i in range(RUNS):
            base = os.path.join(DIR, "b%d" % i)
            inc = os.path.join(DIR, "i%d" % i)
            f = ctl("checkpoint", "chain", base)
            # Every page of the region rewritten at least twice since.
            ticks_after(r, len(r.lines), 3)
            k = ctl("checkpoint", "chain", inc, "--incremental")
            out["full_ms"].append(f["total_ms"])
            out["full_paused"].append(f["paused_ms"])
            out["full_bytes"].append(du(base, base + ".ram"))
            out["inc_ms"].append(k["total_ms"])
            out["inc_paused"].append(k["paused_ms"])
            out["inc_bytes"].append(du(inc, inc + ".ram"))
            out["changed"].append(k["changed_bytes"])
        ctl("poweroff", "chain", "--force")
        r.p.wait(60)
        last = os.path.join(DIR, "i%d" % (RUNS - 1))
        for i in range(RUNS):
            out["map_ms"].append(restore_ms(last, ()))
            out["eager_ms"].append(restore_ms(last, ("--eager",)))
    finally:
        r.stop()
    region = pages * 4096
    return {k: statistics.median(v) for k, v in out.items()}, region


def main():
    if not os.access(KHYVE, os.X_OK):
        sys.exit("build first (make)")
    os.makedirs(RUNDIR, exist_ok=True)
    print("\n### Incremental checkpoints (issue 15 item 2; %s)\n" % ENV)
    print("%d MiB guest, %d MiB touched, region rewritten every tick; "
          "medians of %d; live, tmpfs.\n" % (MEM_MB, TOUCH, RUNS))
    print("| changed | full: ms / paused / size | incremental: ms / paused "
          "/ size | held | size / changed | restore mapped / eager |")
    print("|---|---|---|---|---|---|")
    for share in SHARES:
        m, region = one(share)
        print("| %g%% (%.1f MiB) | %.0f ms / %.1f ms / %.1f MiB | %.0f ms / "
              "%.1f ms / %.2f MiB | %.2f MiB | %.3fx | %.0f / %.0f ms |" % (
                  share, region / 2**20, m["full_ms"], m["full_paused"],
                  m["full_bytes"] / 2**20, m["inc_ms"], m["inc_paused"],
                  m["inc_bytes"] / 2**20, m["changed"] / 2**20,
                  m["inc_bytes"] / region, m["map_ms"], m["eager_ms"]))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
