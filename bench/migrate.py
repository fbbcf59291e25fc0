"""Live migration (issue 15), khyve against QEMU's `migrate` on the same
fast test guest and the same link (TCP over loopback, one host), in the
same run.

Per guest size (BENCH_MIG_SIZES, "MEM:TOUCH_MB" pairs; default a 256 MiB
guest with 200 MiB of data and a 1 GiB guest with 800 MiB) and load:
  idle      the guest only prints its counter (interval_ms=20);
  dirty     it also rewrites 64 MiB per second across a 64 MiB region
            (dirty_pages=160 every 10 ms: 62.5 MiB/s).
khyve: `khyve --incoming tcp:127.0.0.1:PORT` and the migrate request on
the source's control socket (what `khyvectl --migrate` sends), defaults
(max_downtime_ms 300, no bandwidth limit); its reply's total_ms,
downtime_ms, bytes and rounds. QEMU: `-incoming tcp:127.0.0.1:PORT` and
QMP `migrate "tcp:127.0.0.1:PORT"` with max-bandwidth raised from its
default 128 MiB/s so the link is the limit for both (downtime-limit left
at its default 300 ms, like khyve's); query-migrate's total-time,
downtime, ram transferred and dirty-sync count. Both must show the guest
going on at the destination (a new counter line) or the run fails.

Post-copy rows (BENCH_MIG_MODES, default "pre,post"): one full pass while
the guest runs, then the switch-over and the rest pulled by the
destination. khyve: the migrate request with postcopy true and
postcopy_after 1 (`khyvectl --migrate --postcopy`); its total_ms runs to
the last page, downtime_ms to GO, and the reply's on_demand_pages (pages
the destination asked for on a fault) is printed. QEMU: the postcopy-ram
capability on both sides (the destination through its own QMP socket
before the source connects), `migrate`, then `migrate-start-postcopy`
once query-migrate's dirty-sync-count shows the first pass done; its
total-time, downtime and postcopy-requests, and whether it switched to
post-copy at all (it completes in pre-copy when the rest fits its
downtime limit by then). Mode "post0" (in BENCH_MIG_MODES): post-copy at
once, no full pass first - khyve's postcopy_after 0, QEMU's
migrate-start-postcopy right after migrate.
"""
import json
import os
import statistics
import subprocess
import sys
import time

from benchlib import ENV, RUNDIR, Run, khyve_argv, qemu_argv
from snapshot import Qmp, ctl_call

KHYVE = os.path.join(os.path.dirname(__file__), "..", "build", "khyve")
SIZES = [tuple(x.split(":")) for x in os.environ.get(
    "BENCH_MIG_SIZES", "256M:200,1G:800").split(",") if x]
RUNS = int(os.environ.get("BENCH_MIG_RUNS", "3"))
ACCEL = os.environ.get("BENCH_QEMU_ACCEL", "kvm")
MACHINE = os.environ.get("BENCH_QEMU_MACHINE", "microvm")
SKIP = os.environ.get("BENCH_MIG_SKIP", "")  # "khyve" or "qemu"
MODE_NAMES = {"pre": "pre-copy", "post": "post-copy after 1 pass",
              "post0": "post-copy at once"}
MODES = [m for m in os.environ.get("BENCH_MIG_MODES", "pre,post").split(",")
         if m]
MARK = "KHYVE-COUNTER"
LOADS = {"idle": "counter interval_ms=20",
         "dirty": "counter interval_ms=10 check_every=1000000 "
                  "mem_kb=65536 dirty_pages=160"}
PORT = 7400


def log(msg):
    sys.stderr.write("migrate bench: %s\n" % msg)
    sys.stderr.flush()


def med(v):
    return statistics.median(v) if v else None


def cmdline(touch, load):
    return "touch_mb=%s %s" % (touch, LOADS[load])


def boot(argv, what):
    r = Run(argv)
    if r.wait_for(MARK, 900) is None:
        r.stop()
        raise RuntimeError("%s: no counter line:\n%s" % (what, r.text()))
    return r


def goes_on(dst, what):
    """The destination printed a counter line of its own."""
    if dst.wait_for(MARK, 120) is None:
        raise RuntimeError("%s: no counter line at the destination:\n%s"
                           % (what, dst.text()))


def khyve_once(mem, touch, load, i, mode="pre"):
    global PORT
    PORT += 1
    src = boot(khyve_argv(mem, cmdline(touch, load), name="migsrc"),
               "khyve source")
    dst = Run([KHYVE, "--rundir", RUNDIR, "--incoming",
               "tcp:127.0.0.1:%d" % PORT, "migdst"])
    try:
        time.sleep(2.5)  # the listener up, the dirtying guest at pace
        args = {"to": "tcp:127.0.0.1:%d" % PORT}
        if mode in ("post", "post0"):
            args.update(postcopy=True,
                        postcopy_after=1 if mode == "post" else 0)
        res = ctl_call("migsrc", "migrate", args)
        if src.p.wait(60) != 6:
            raise RuntimeError("khyve source did not exit with 6")
        goes_on(dst, "khyve")
        return res
    finally:
        src.stop()
        dst.stop()


def qemu_postcopy_caps(q, dsock):
    """postcopy-ram on both sides (the destination's before it listens
    for the source's stream)."""
    cap = [{"capability": "postcopy-ram", "state": True}]
    d = Qmp(dsock)
    d.cmd("migrate-set-capabilities", capabilities=cap)
    d.close()
    q.cmd("migrate-set-capabilities", capabilities=cap)


def qemu_once(mem, touch, load, i, mode="pre"):
    global PORT
    PORT += 1
    sock = "/tmp/khyve-bench-migq.sock"
    dsock = "/tmp/khyve-bench-migqd.sock"
    argv = qemu_argv(MACHINE, mem, cmdline(touch, load))
    argv[argv.index("-accel") + 1] = ACCEL
    src = boot(argv + ["-qmp", "unix:%s,server=on,wait=off" % sock],
               "qemu source")
    dst = Run(argv + ["-incoming", "defer", "-qmp",
                      "unix:%s,server=on,wait=off" % dsock])
    try:
        q = Qmp(sock)
        q.cmd("migrate-set-parameters", **{"max-bandwidth": 64 << 30})
        if mode in ("post", "post0"):
            qemu_postcopy_caps(q, dsock)
        d = Qmp(dsock)
        d.cmd("migrate-incoming", uri="tcp:127.0.0.1:%d" % PORT)
        d.close()
        time.sleep(2.5)
        q.cmd("migrate", uri="tcp:127.0.0.1:%d" % PORT)
        if mode == "post0":
            q.cmd("migrate-start-postcopy")  # at its first chance
        started = mode != "post"
        went_post = False
        while True:
            st = q.cmd("query-migrate")
            went_post = went_post or st.get("status") == "postcopy-active"
            if st.get("status") in ("completed", "failed", "cancelled"):
                break
            if not started and \
                    st.get("ram", {}).get("dirty-sync-count", 0) >= 2:
                q.cmd("migrate-start-postcopy")
                started = True
            time.sleep(0.005)
        q.close()
        if st["status"] != "completed":
            raise RuntimeError("QEMU migration %s" % st)
        goes_on(dst, "qemu")
        ram = st.get("ram", {})
        return {"total_ms": st.get("total-time"),
                "downtime_ms": st.get("downtime"),
                "bytes": ram.get("transferred"),
                "rounds": ram.get("dirty-sync-count"),
                "on_demand_pages": ram.get("postcopy-requests"),
                # post-copy asked for, but did QEMU switch to it? (It
                # completes in pre-copy when the rest fits its downtime.)
                "went_post": went_post}
    finally:
        src.stop()
        dst.stop()


KEYS = ("total_ms", "downtime_ms", "bytes", "rounds", "on_demand_pages",
        "went_post")


def series(fn, mem, touch, load, what, mode):
    out = []
    for i in range(RUNS):
        r = fn(mem, touch, load, i, mode)
        if what == "khyve" and mode != "pre":
            r["went_post"] = r.get("postcopy", False)
        log("%s %s %s %s-copy: %s" % (what, mem, load, mode, json.dumps(
            {k: r.get(k) for k in KEYS})))
        out.append(r)
    res = {k: med([r[k] for r in out if r.get(k) is not None])
           for k in KEYS if k != "went_post"}
    res["went_post"] = sum(1 for r in out if r.get("went_post"))
    return res


def fmt(v, unit, prec=1):
    return "-" if v is None else "%.*f %s" % (prec, v, unit)


def main():
    os.makedirs(RUNDIR, exist_ok=True)
    rows = []
    for mem, touch in SIZES:
        for load in ("idle", "dirty"):
            for mode in MODES:
                # Interleaved: each khyve series next to QEMU's.
                k = None if SKIP == "khyve" else series(
                    khyve_once, mem, touch, load, "khyve", mode)
                q = None if SKIP == "qemu" else series(
                    qemu_once, mem, touch, load, "qemu", mode)
                rows.append((mem, touch, load, mode, k, q))
    print("### Live migration over TCP loopback (%s), median of %d"
          % (ENV, RUNS))
    print()
    print("| guest | load | mode | VMM | total | downtime | sent | rounds "
          "| pages on a fault |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    for mem, touch, load, mode, k, q in rows:
        for name, r in (("khyve", k), ("QEMU", q)):
            if r is None:
                continue
            print("| %s, %s MiB data | %s | %s | %s | %s | %s | %s | %s "
                  "| %s |" % (
                      mem, touch, load, MODE_NAMES[mode], name,
                      fmt(r["total_ms"], "ms"),
                      fmt(r["downtime_ms"], "ms", 2),
                      fmt(r["bytes"] and r["bytes"] / 2**20, "MiB"),
                      fmt(r["rounds"], "", 0),
                      "-" if mode == "pre" else
                      "%s (post-copy in %d of %d)" % (
                          fmt(r.get("on_demand_pages"), "", 0),
                          r["went_post"], RUNS)))


if __name__ == "__main__":
    main()
