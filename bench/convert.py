"""`khyvectl snapshot convert` (issue 15 item 3): sizes and times of a
1 GiB guest holding 800 MiB, pair -> stream -> pair, and restores of
both forms.

The fast test guest (1 GiB) fills BENCH_CONV_TOUCH_MB (800) MiB with
`touch_mb`, compressible (`touch_zip`: one pattern byte in eight) or not
(the incompressible pattern), then counts. It is checkpointed (mapped
pair, in /dev/shm), powered off, and per run: the pair converted to a
stream and the stream back to a pair (wall time of khyvectl), the RAM
files compared byte for byte, and each form restored to its first
counter line. For reference, `zstd -1` of the RAM file on the same host
(the general tool, level 1 like the stream's records). There is no QEMU
counterpart to an offline conversion: QEMU's nearest is `migrate
"exec:zstd > FILE"` from a running guest, not measured here.
"""
import filecmp
import os
import shutil
import statistics
import subprocess
import sys
import time

from benchlib import GUEST, KHYVE, ROOT, RUNDIR, Run, khyve_argv

KHYVECTL = os.path.join(ROOT, "build/khyvectl")
TOUCH = int(os.environ.get("BENCH_CONV_TOUCH_MB", "800"))
RUNS = int(os.environ.get("BENCH_CONV_RUNS", "3"))
DIR = os.environ.get("BENCH_CONV_DIR", "/dev/shm/khyve-bench-convert")


def log(msg):
    sys.stderr.write("convert bench: %s\n" % msg)
    sys.stderr.flush()


def du(*paths):
    return sum(os.stat(p).st_blocks * 512 for p in paths)


def timed(argv):
    t = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL,
                   timeout=900)
    return time.monotonic() - t


def save(kind):
    cmd = "counter interval_ms=50 touch_mb=%d%s" % (
        TOUCH, " touch_zip" if kind == "zip" else "")
    r = Run(khyve_argv("1G", cmd))
    if r.wait_for("KHYVE-COUNTER", 600) is None:
        raise RuntimeError("guest did not count")
    snap = os.path.join(DIR, kind)
    subprocess.run([KHYVECTL, "--rundir", RUNDIR, "checkpoint", "bench",
                    snap], check=True, stdout=subprocess.DEVNULL,
                   timeout=600)
    subprocess.run([KHYVECTL, "--rundir", RUNDIR, "poweroff", "bench",
                    "--force"], stdout=subprocess.DEVNULL, timeout=60)
    r.p.wait(60)
    return snap


def restore_ms(snap):
    r = Run([KHYVE, "--rundir", RUNDIR, "-r", snap, "back"])
    t = r.wait_for("KHYVE-COUNTER", 600)
    r.p.kill()
    r.p.wait(60)
    return None if t is None else t * 1000


def one(kind, snap):
    stream = snap + ".khs"
    back = snap + "-back"
    for p in (stream, back, back + ".ram"):
        if os.path.exists(p):
            os.unlink(p)
    to_s = timed([KHYVECTL, "snapshot", "convert", snap, stream])
    to_p = timed([KHYVECTL, "snapshot", "convert", stream, back])
    same = filecmp.cmp(snap + ".ram", back + ".ram", shallow=False)
    t = time.monotonic()
    z = subprocess.run(["zstd", "-1", "-c", "-q", snap + ".ram"],
                       stdout=subprocess.PIPE, check=True).stdout
    zs = time.monotonic() - t
    return {"ram_file": du(snap + ".ram"), "state": du(snap),
            "stream": os.path.getsize(stream), "to_stream_s": to_s,
            "to_pair_s": to_p, "identical": same, "zstd": len(z),
            "zstd_s": zs, "restore_pair_ms": restore_ms(snap),
            "restore_stream_ms": restore_ms(stream)}


def main():
    shutil.rmtree(DIR, ignore_errors=True)
    os.makedirs(DIR)
    print("load average before: %s" % open("/proc/loadavg").read().strip())
    for kind in ("zip", "random"):
        snap = save(kind)
        res = [one(kind, snap) for _ in range(RUNS)]
        med = {k: statistics.median(r[k] for r in res)
               for k in res[0] if k != "identical"}
        print("%s: RAM file data %.1f MiB, stream %.1f MiB (%.2fx), "
              "zstd -1 of the RAM file %.1f MiB in %.2f s; pair->stream "
              "%.2f s, stream->pair %.2f s; RAM files identical: %s; "
              "restore to first counter line: pair %.1f ms, stream %.1f ms"
              % (kind, med["ram_file"] / 2**20, med["stream"] / 2**20,
                 med["ram_file"] / med["stream"], med["zstd"] / 2**20,
                 med["zstd_s"], med["to_stream_s"], med["to_pair_s"],
                 all(r["identical"] for r in res), med["restore_pair_ms"],
                 med["restore_stream_ms"]))
        for r in res:
            print("  run: %s" % ", ".join(
                "%s=%s" % (k, ("%.3f" % v) if isinstance(v, float) else v)
                for k, v in r.items()))
        sys.stdout.flush()
    print("load average after: %s" % open("/proc/loadavg").read().strip())
    shutil.rmtree(DIR, ignore_errors=True)


if __name__ == "__main__":
    main()
