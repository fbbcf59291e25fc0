"""Snapshot save and restore (issue 6), khyve against QEMU migrate-to-file
in the same run, on the fast test guest with 1 GiB of RAM of which
touch_mb MiB hold incompressible data (tests/guests/README.md, touch_mb=).

Per amount of touched memory:
  save      khyve: the checkpoint command on the control socket (what
            `khyvectl --json checkpoint` sends; the reply's total_ms and
            paused_ms), both live (the default: RAM copied while the
            guest runs, then only pages written since with the guest
            paused) and stop-and-copy ("live": false, paused throughout);
            QEMU: QMP `migrate "exec:cat > FILE"` until
            query-migrate says completed (wall time; its own total-time
            and downtime), max-bandwidth raised so QEMU is not throttled
            to its default 128 MiB/s. Both guests keep running between
            saves (QEMU gets `cont` after each migration).
  size      du of the files (state + RAM file for khyve).
  restore   exec of `khyve -r FILE` / `qemu ... -incoming "exec:cat FILE"`
            to the guest's first counter line (its first console output).
            Both VMMs restore the guest's TSC, so the figure includes the
            guest's own wait for its next tick (up to interval_ms).
  clones    CLONES restores running at once: sum of PSS and of RSS
            (/proc/PID/smaps_rollup) and the host's MemAvailable drop.
"""
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

from benchlib import ENV, ROOT, RUNDIR, Run, khyve_argv, qemu_argv

KHYVE = os.path.join(ROOT, "build/khyve")
KHYVECTL = os.path.join(ROOT, "build/khyvectl")
MEM = "1G"
TOUCH = [int(x) for x in
         os.environ.get("BENCH_SNAP_TOUCH_MB", "800,100").split(",") if x]
RUNS = int(os.environ.get("BENCH_SNAP_RUNS", "3"))
CLONES = int(os.environ.get("BENCH_SNAP_CLONES", "5"))
INTERVAL = int(os.environ.get("BENCH_SNAP_INTERVAL_MS", "20"))
DIR = os.environ.get("BENCH_SNAP_DIR", "/tmp/khyve-bench-snap")
ACCEL = os.environ.get("BENCH_QEMU_ACCEL", "kvm")
MACHINE = os.environ.get("BENCH_QEMU_MACHINE", "microvm")
SKIP = os.environ.get("BENCH_SNAP_SKIP", "")  # "khyve" or "qemu"
MARK = "KHYVE-COUNTER"


def log(msg):
    sys.stderr.write("snapshot bench: %s\n" % msg)
    sys.stderr.flush()


def med(v):
    return statistics.median(v) if v else None


def du(*paths):
    return sum(os.stat(p).st_blocks * 512 for p in paths if os.path.exists(p))


def mem_used():
    """Host memory in use (MemTotal - MemAvailable), bytes."""
    kv = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            kv[k] = int(v.split()[0]) * 1024
    return kv["MemTotal"] - kv["MemAvailable"]


def rollup(pid):
    """(PSS, RSS) of @pid in bytes from /proc/PID/smaps_rollup."""
    pss = rss = 0
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
            elif line.startswith("Rss:"):
                rss = int(line.split()[1]) * 1024
    return pss, rss


def guest_cmdline(touch):
    return "touch_mb=%d counter interval_ms=%d" % (touch, INTERVAL)


def qemu_args(touch, extra=()):
    argv = qemu_argv(MACHINE, MEM, guest_cmdline(touch), extra)
    argv[argv.index("-accel") + 1] = ACCEL
    return argv


def boot(argv, what):
    """Start a guest and wait until it has touched its memory."""
    r = Run(argv)
    t = r.wait_for(MARK, 900)
    if t is None:
        r.stop()
        raise RuntimeError("%s: no counter line:\n%s" % (what, r.text()))
    for _, line in r.lines:
        if line.startswith("KHYVE-INFO touch"):
            log("%s: %s (%.1f s after exec)" % (what, line, t))
    return r


def wait_new(r, n, timeout):
    """True once @r printed a counter line after its first @n lines."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(MARK in line for _, line in r.lines[n:]):
            return True
        if r.p.poll() is not None:
            return False
        r.wait_for("\0", 0.2)  # just read for a while
    return False


def restores(argv_fn, what):
    """Exec to first counter line, RUNS times, each VMM fresh."""
    ts = []
    for i in range(RUNS):
        r = Run(argv_fn(i))
        try:
            t = r.wait_for(MARK, 300)
        finally:
            r.stop()
        if t is None:
            log("%s restore %d: no counter line: %s" % (what, i, r.text()))
            continue
        ts.append(t * 1000)
    return ts


def clones(argv_fn, what):
    """CLONES restores at once: (sum PSS, sum RSS, host delta) or None."""
    time.sleep(1)
    before = mem_used()
    runs = [Run(argv_fn(i)) for i in range(CLONES)]
    try:
        ok = [r.wait_for(MARK, 600) is not None for r in runs]
        if not all(ok):
            log("%s clones: %d of %d printed a counter line"
                % (what, sum(ok), CLONES))
            return None
        time.sleep(1)  # let them run a little: what they hold, not peaks
        pss = rss = 0
        for r in runs:
            p, s = rollup(r.p.pid)
            pss += p
            rss += s
        return pss, rss, mem_used() - before
    finally:
        for r in runs:
            r.stop()


# ---- khyve ----

def khyvectl(*args):
    p = subprocess.run([KHYVECTL, "--rundir", RUNDIR] + list(args),
                       capture_output=True, text=True, timeout=600)
    if p.returncode:
        raise RuntimeError("khyvectl %s: %s" % (" ".join(args), p.stderr))
    return p.stdout


def ctl_call(name, cmd, args, timeout=600):
    """One request on khyve's control socket (JSON lines, as khyvectl)."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(os.path.join(RUNDIR, name + ".sock"))
    f = s.makefile("rwb")
    try:
        f.readline()  # greeting
        f.write(json.dumps({"id": 1, "cmd": cmd, "args": args}).encode()
                + b"\n")
        f.flush()
        while True:
            line = f.readline()
            if not line:
                raise RuntimeError("%s: connection closed" % cmd)
            r = json.loads(line)
            if r.get("id") != 1 or "progress" in r:
                continue
            if "error" in r:
                raise RuntimeError("%s: %s" % (cmd, r["error"]))
            return r["result"]
    finally:
        f.close()
        s.close()


def bench_khyve(touch):
    state = os.path.join(DIR, "k.snap")
    res = {}
    src = boot(khyve_argv(MEM, guest_cmdline(touch), name="snapsrc"),
               "khyve")
    try:
        # stop-and-copy first, then live: the file left is a live one
        for mode, live in (("stop", False), ("live", True)):
            tot, paused, wall, final = [], [], [], []
            for _ in range(RUNS):
                n_before = len(src.lines)
                t0 = time.monotonic()
                rep = ctl_call("snapsrc", "checkpoint",
                               {"file": state, "live": live})
                wall.append((time.monotonic() - t0) * 1000)
                tot.append(rep["total_ms"])
                paused.append(rep["paused_ms"])
                final.append(rep.get("final_copy_bytes", 0))
                if live and not rep.get("live"):
                    log("khyve: live checkpoint fell back to stop-and-copy: "
                        "%s" % rep.get("not_live_reason"))
                log("khyve %s checkpoint: paused %.1f ms, re-hashed %d MiB, "
                    "phases %s; pre-copy rounds %d, committed %.1f ms after "
                    "the resume" % (
                    mode, rep["paused_ms"],
                    rep.get("final_hash_bytes", 0) >> 20, ", ".join(
                        "%s %.1f" % kv
                        for kv in rep.get("phases_ms", {}).items()),
                    rep.get("precopy_rounds", 0), rep.get("commit_ms", 0)))
                if not wait_new(src, n_before, 60):
                    raise RuntimeError("khyve guest stopped after checkpoint")
            res["save_" + mode] = med(tot)
            res["save_wall_" + mode] = med(wall)
            res["paused_" + mode] = med(paused)
            res["final_" + mode] = med(final)
            res["size_" + mode] = du(state, state + ".ram")
        res["save"], res["paused"] = res["save_live"], res["paused_live"]
        res["save_wall"], res["size"] = res["save_wall_live"], res["size_live"]
    finally:
        src.stop()

    def rargv(extra):
        return lambda i: [KHYVE, "--rundir", RUNDIR, "-r", state] + \
            list(extra) + ["snapr%d" % i]
    res["restore"] = med(restores(rargv([]), "khyve"))
    res["restore_eager"] = med(restores(rargv(["--eager"]), "khyve --eager"))
    res["clones"] = clones(rargv([]), "khyve")
    for p in (state, state + ".ram"):
        os.unlink(p)
    return res


# ---- QEMU ----

class Qmp:
    def __init__(self, path, timeout=60):
        end = time.monotonic() + timeout
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.monotonic() > end:
                    raise
                time.sleep(0.05)
        self.f = self.s.makefile("rwb")
        json.loads(self.f.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.f.write(json.dumps(msg).encode() + b"\n")
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "event" in r:
                continue
            if "error" in r:
                raise RuntimeError("QMP %s: %s" % (name, r["error"]))
            return r["return"]

    def close(self):
        self.f.close()
        self.s.close()


def bench_qemu(touch):
    path = os.path.join(DIR, "q.mig")
    sock = os.path.join(DIR, "qmp.sock")
    res = {}
    src = boot(qemu_args(touch, ["-qmp", "unix:%s,server=on,wait=off"
                                 % sock]), "qemu")
    try:
        q = Qmp(sock)
        q.cmd("migrate-set-parameters", **{"max-bandwidth": 64 << 30})
        wall, tot, down = [], [], []
        for _ in range(RUNS):
            t0 = time.monotonic()
            q.cmd("migrate", uri="exec:cat > %s" % path)
            while True:
                st = q.cmd("query-migrate")
                if st.get("status") in ("completed", "failed", "cancelled"):
                    break
                time.sleep(0.005)
            wall.append((time.monotonic() - t0) * 1000)
            if st["status"] != "completed":
                raise RuntimeError("QEMU migration %s" % st)
            tot.append(st.get("total-time", 0))
            down.append(st.get("downtime", 0))
            n_before = len(src.lines)
            q.cmd("cont")  # the source stays paused after a migration
            if not wait_new(src, n_before, 60):
                raise RuntimeError("QEMU guest did not go on after cont")
        q.close()
        res["save"] = med(wall)
        res["save_own"] = med(tot)
        res["paused"] = med(down)
        res["size"] = du(path)
    finally:
        src.stop()

    def rargv(i):
        return qemu_args(touch, ["-incoming", "exec:cat %s" % path])
    res["restore"] = med(restores(rargv, "qemu"))
    res["clones"] = clones(rargv, "qemu")
    os.unlink(path)
    return res


def fmt(v, unit, prec=1):
    return "failed" if v is None else "%.*f %s" % (prec, v, unit)


def ratio(a, b):
    return "-" if not a or not b else "%.2fx" % (a / b)


def table(touch, k, q):
    mib = 1 << 20
    print("== snapshot: 1 GiB guest, %d MiB touched (incompressible); "
          "median of %d; %d clones; %s ==" % (touch, RUNS, CLONES, ENV))
    print("%-34s %16s %16s %10s" % ("", "khyve", "qemu -M " + MACHINE,
                                    "khyve/qemu"))

    def row(name, kv, qv, unit, scale=1.0, qemu_na=False):
        kv = None if kv is None else kv / scale
        qv = None if qv is None else qv / scale
        qs = "-" if qemu_na else fmt(qv, unit)
        print("%-34s %16s %16s %10s" % (name, fmt(kv, unit), qs,
                                        ratio(kv, qv)))
    row("save (total), khyve live", k.get("save_live"), q.get("save"), "ms")
    row("guest paused, khyve live", k.get("paused_live"), q.get("paused"),
        "ms")
    row("save (total), khyve stop-and-copy", k.get("save_stop"),
        q.get("save"), "ms")
    row("guest paused, khyve stop-and-copy", k.get("paused_stop"),
        q.get("paused"), "ms")
    row("khyve live: copied while paused", k.get("final_live"), None, "MiB",
        mib, qemu_na=True)
    row("snapshot size on disk (du)", k.get("size"), q.get("size"), "MiB",
        mib)
    row("restore: exec to first output", k.get("restore"), q.get("restore"),
        "ms")
    row("restore --eager (khyve)", k.get("restore_eager"), None, "ms",
        qemu_na=True)
    kc, qc = k.get("clones"), q.get("clones")
    row("%d clones: sum of PSS" % CLONES, kc and kc[0], qc and qc[0], "MiB",
        mib)
    row("%d clones: sum of RSS" % CLONES, kc and kc[1], qc and qc[1], "MiB",
        mib)
    row("%d clones: host MemAvailable drop" % CLONES, kc and kc[2],
        qc and qc[2], "MiB", mib)
    if k.get("size"):
        print("khyve size / touched memory: %.2fx"
              % (k["size"] / (touch << 20)))
    for mode in ("stop", "live"):
        if k.get("save_" + mode) and k.get("size_" + mode):
            print("khyve %s: %.0f MiB/s of snapshot written over the whole "
                  "save" % (mode, (k["size_" + mode] / mib)
                            / (k["save_" + mode] / 1000)))
    if q.get("save_own") is not None:
        print("qemu's own query-migrate total-time %s, downtime %s; khyve "
              "checkpoint wall time incl. khyvectl %s"
              % (fmt(q.get("save_own"), "ms"), fmt(q.get("paused"), "ms"),
                 fmt(k.get("save_wall"), "ms")))
    sys.stdout.flush()


def pagecache_bw(mb=256):
    """MiB/s of 2 MiB writes from memory to a file in DIR, fsync included:
    the page-cache write bandwidth a save is measured against."""
    buf = os.urandom(2 << 20)
    path = os.path.join(DIR, "bw.tmp")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        t0 = time.monotonic()
        for _ in range(mb // 2):
            os.write(fd, buf)
        os.fsync(fd)
        return mb / (time.monotonic() - t0)
    finally:
        os.close(fd)
        os.unlink(path)


def main():
    os.makedirs(DIR, exist_ok=True)
    ok = True
    print("page-cache write bandwidth in %s (2 MiB writes + fsync): "
          "%.0f MiB/s" % (DIR, pagecache_bw()))
    for touch in TOUCH:
        k, q = {}, {}
        if SKIP != "khyve":
            try:
                k = bench_khyve(touch)
            except Exception as e:  # report, go on with QEMU
                log("khyve, %d MiB: %s" % (touch, e))
                ok = False
        if SKIP != "qemu":
            try:
                q = bench_qemu(touch)
            except Exception as e:
                log("qemu, %d MiB: %s" % (touch, e))
        table(touch, k, q)
    shutil.rmtree(DIR, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
