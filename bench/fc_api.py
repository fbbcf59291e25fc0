"""Firecracker API (issue 17): PUT /snapshot/load with resume_vm to the
guest's first console line, against khyve's own `-r` on the same
snapshot.

The fast test guest (64 MiB, the counter printing every millisecond) is
started through the API, paused and saved with snapshot/create. Then
RUNS pairs, interleaved in ABBA order (so a drift of the host's load
favours neither path):

  r        exec of `khyve -r SNAP` to the first console line
  api      exec of `khyve --api-sock`, the socket's appearance, then
           PUT /snapshot/load {"resume_vm": true} to the first line
  request  the same run, from the request's first byte to the first line
           (what an orchestrator that starts khyve ahead of time waits)
  cpu      each run's CPU time of khyve's threads other than the vCPUs
           (/proc/PID/task/*/schedstat, read at the first line; for api
           also just before the request): the work each path does,
           which the host's load does not stretch as it stretches wall
           time

The first line is the same guest output on both paths (the same snapshot,
restored the same way: mapped), so the difference is what the API adds.
Reported per path: median, quartiles, minimum; for api - r (paired): the
median and a 95% confidence interval of it (order statistics). On a
loaded host the wall-clock difference drowns in noise, so khyve's own
measure is reported too: with -v it logs how long after the load request
arrived main took it over (the request checked, the memory file matched
against the state file, main woken); from there on the path is -r's.
`uptime` before and after. Usage: bench/run.sh fc_api or python3
bench/fc_api.py; BENCH_FC_RUNS (default 40).
"""
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time

from benchlib import ENV, GUEST, KHYVE, RUNDIR, Run

RUNS = int(os.environ.get("BENCH_FC_RUNS", "40"))
DIR = os.environ.get("BENCH_FC_DIR", "/tmp/khyve-bench-fc")


def log(msg):
    sys.stderr.write("fc_api bench: %s\n" % msg)
    sys.stderr.flush()


def request(sock, method, path, body):
    """One HTTP/1.1 request on the UNIX socket; (status, body bytes)."""
    data = json.dumps(body).encode()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock)
    s.sendall(b"%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
              b"application/json\r\nContent-Length: %d\r\n\r\n%s"
              % (method.encode(), path.encode(), len(data), data))
    resp = b""
    while b"\r\n\r\n" not in resp:
        d = s.recv(4096)
        if not d:
            break
        resp += d
    s.close()
    return int(resp.split()[1]), resp


def api_proc(sock, name):
    if os.path.exists(sock):
        os.unlink(sock)
    r = Run([KHYVE, "--rundir", RUNDIR, "--api-sock", sock, "--id", name])
    while not os.path.exists(sock):
        if r.p.poll() is not None:
            raise RuntimeError("khyve --api-sock exited")
        time.sleep(0.0002)
    return r


def make_snapshot():
    shutil.rmtree(DIR, ignore_errors=True)
    os.makedirs(DIR)
    sock = os.path.join(DIR, "make.sock")
    r = api_proc(sock, "fcbench-make")
    for m, p, b in [
            ("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64}),
            ("PUT", "/boot-source", {"kernel_image_path": GUEST,
                                     "boot_args": "counter interval_ms=1"}),
            ("PUT", "/actions", {"action_type": "InstanceStart"})]:
        st, resp = request(sock, m, p, b)
        assert st == 204, resp
    assert r.wait_for("KHYVE-COUNTER 200", 120) is not None, r.text()
    snap, mem = os.path.join(DIR, "snap"), os.path.join(DIR, "snap.mem")
    for m, p, b in [("PATCH", "/vm", {"state": "Paused"}),
                    ("PUT", "/snapshot/create",
                     {"snapshot_path": snap, "mem_file_path": mem})]:
        st, resp = request(sock, m, p, b)
        assert st == 204, resp
    r.stop()
    return snap, mem


def cpu_ns(pid):
    """CPU time of @pid's live threads but the vCPUs (ns)."""
    total = 0
    base = "/proc/%d/task" % pid
    for tid in os.listdir(base):
        try:
            with open("%s/%s/comm" % (base, tid)) as f:
                if f.read().startswith("vcpu"):
                    continue
            with open("%s/%s/schedstat" % (base, tid)) as f:
                total += int(f.read().split()[0])
        except OSError:
            pass  # the thread ended meanwhile
    return total


def first_line(r, timeout=60):
    """Seconds from r.t0 to the first console line."""
    t = r.wait_for("", timeout)
    if t is None:
        raise RuntimeError("no console line: %s" % r.text())
    return t


def run_r(snap, i):
    r = Run([KHYVE, "--rundir", RUNDIR, "-r", snap, "fcbench-r%d" % i])
    try:
        t = first_line(r)
        return t, cpu_ns(r.p.pid)
    finally:
        r.stop()


def run_api(snap, mem, i):
    sock = os.path.join(DIR, "load%d.sock" % i)
    r = api_proc(sock, "fcbench-api%d" % i)
    try:
        pre = cpu_ns(r.p.pid)
        t_req = time.monotonic() - r.t0
        st, resp = request(sock, "PUT", "/snapshot/load", {
            "snapshot_path": snap, "resume_vm": True,
            "mem_backend": {"backend_type": "File", "backend_path": mem}})
        assert st == 204, resp
        t = first_line(r)
        return t, t - t_req, cpu_ns(r.p.pid), pre
    finally:
        r.stop()


def handoffs(snap, mem):
    """khyve -v's "handed to main N ms after it arrived", RUNS loads."""
    vals = []
    for i in range(RUNS):
        sock = os.path.join(DIR, "h%d.sock" % i)
        p = subprocess.Popen([KHYVE, "--rundir", RUNDIR, "-v", "--api-sock",
                              sock, "--id", "fcbench-h%d" % i],
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        while not os.path.exists(sock):
            time.sleep(0.001)
        st, resp = request(sock, "PUT", "/snapshot/load", {
            "snapshot_path": snap, "resume_vm": True,
            "mem_backend": {"backend_type": "File", "backend_path": mem}})
        assert st == 204, resp
        p.kill()
        err = p.communicate(timeout=30)[1].decode()
        m = re.search(r"handed to main ([0-9.]+) ms", err)
        assert m, err
        vals.append(float(m.group(1)))
    return vals


def quartiles(v):
    q = statistics.quantiles(v, n=4)
    return q[0], statistics.median(v), q[2]


def median_ci(v):
    """The median of @v and a ~95% confidence interval of it: the order
    statistics n/2 -+ 0.98 sqrt(n) (distribution-free)."""
    v = sorted(v)
    n = len(v)
    k = max(0, int(n / 2 - 0.98 * n ** 0.5))
    return statistics.median(v), v[k], v[min(n - 1, n - 1 - k)]


def uptime():
    return subprocess.run(["uptime"], capture_output=True,
                          text=True).stdout.strip()


def main():
    os.makedirs(RUNDIR, exist_ok=True)
    up0 = uptime()
    snap, mem = make_snapshot()
    rs, apis, reqs, diffs, rcpu, acpu, cdiffs = [], [], [], [], [], [], []
    apre = []
    for i in range(RUNS):
        # ABBA: api first in pairs 0 and 3 of every 4, r first in 1, 2.
        if i % 4 in (0, 3):
            a, q, ac, ap = run_api(snap, mem, i)
            b, bc = run_r(snap, i)
        else:
            b, bc = run_r(snap, i)
            a, q, ac, ap = run_api(snap, mem, i)
        apre.append(ap / 1e9)
        rs.append(b)
        apis.append(a)
        reqs.append(q)
        diffs.append(a - b)
        rcpu.append(bc / 1e9)
        acpu.append(ac / 1e9)
        cdiffs.append((ac - bc) / 1e9)
    hand = handoffs(snap, mem)
    up1 = uptime()

    def row(name, v):
        lo, med, hi = quartiles(v)
        print("| %s | %.2f | %.2f-%.2f | %.2f |" % (
            name, med * 1000, lo * 1000, hi * 1000, min(v) * 1000))

    print("Firecracker API load vs khyve -r (%s, %d ABBA-interleaved pairs; "
          "64 MiB test guest, mapped restore)" % (ENV, RUNS))
    print("before: %s" % up0)
    print("after:  %s" % up1)
    print("| to the first console line | median ms | quartiles ms | min ms |")
    print("|---------------------------|----------:|-------------:|-------:|")
    row("khyve -r SNAP, from exec", rs)
    row("khyve --api-sock, from exec (socket, then snapshot/load)", apis)
    row("snapshot/load request to the first line", reqs)
    row("CPU of khyve's non-vCPU threads, -r", rcpu)
    row("CPU of khyve's non-vCPU threads, api", acpu)
    row("... of which before the request (start, HTTP server)", apre)
    for name, v in (("api - r, wall, paired", diffs),
                    ("api - r, CPU, paired", cdiffs)):
        med, lo, hi = median_ci(v)
        print("| %s: median, 95%% CI | %.3f | %.3f to %.3f | |"
              % (name, med * 1000, lo * 1000, hi * 1000))
    lo, med, hi = quartiles(hand)
    print("| the API's own part: request arrived to main's take-over "
          "(khyve -v, %d loads) | %.3f | %.3f-%.3f | %.3f |"
          % (len(hand), med, lo, hi, min(hand)))
    print("(API part max %.3f ms)" % max(hand))
    shutil.rmtree(DIR, ignore_errors=True)


if __name__ == "__main__":
    main()
