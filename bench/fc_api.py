"""Firecracker API (issue 17): PUT /snapshot/load with resume_vm to the
guest's first console line, against khyve's own `-r` on the same
snapshot.

The fast test guest (64 MiB, the counter printing every millisecond) is
started through the API, paused and saved with snapshot/create. Then,
RUNS times each, interleaved:

  r        exec of `khyve -r SNAP` to the first console line
  api      exec of `khyve --api-sock`, the socket's appearance, then
           PUT /snapshot/load {"resume_vm": true} to the first line
  request  the same run, from the request's first byte to the first line
           (what an orchestrator that starts khyve ahead of time waits)

The first line is the same guest output on both paths (the same snapshot,
restored the same way: mapped), so the difference is what the API adds.
Reported: medians and the median of api - r. On a loaded host that
difference drowns in noise, so khyve's own measure is reported too:
with -v it logs how long after the load request arrived main took it
over (the request checked, the memory file matched against the state
file, main woken); from there on the path is -r's. Usage: bench/run.sh fc_api
or python3 bench/fc_api.py; BENCH_FC_RUNS (default 15).
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

RUNS = int(os.environ.get("BENCH_FC_RUNS", "15"))
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


def first_line(r, timeout=60):
    """Seconds from r.t0 to the first console line."""
    t = r.wait_for("", timeout)
    if t is None:
        raise RuntimeError("no console line: %s" % r.text())
    return t


def run_r(snap, i):
    r = Run([KHYVE, "--rundir", RUNDIR, "-r", snap, "fcbench-r%d" % i])
    try:
        return first_line(r)
    finally:
        r.stop()


def run_api(snap, mem, i):
    sock = os.path.join(DIR, "load%d.sock" % i)
    r = api_proc(sock, "fcbench-api%d" % i)
    try:
        t_req = time.monotonic() - r.t0
        st, resp = request(sock, "PUT", "/snapshot/load", {
            "snapshot_path": snap, "resume_vm": True,
            "mem_backend": {"backend_type": "File", "backend_path": mem}})
        assert st == 204, resp
        t = first_line(r)
        return t, t - t_req
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


def main():
    os.makedirs(RUNDIR, exist_ok=True)
    snap, mem = make_snapshot()
    rs, apis, reqs, diffs = [], [], [], []
    for i in range(RUNS):
        a, q = run_api(snap, mem, i)
        b = run_r(snap, i)
        rs.append(b)
        apis.append(a)
        reqs.append(q)
        diffs.append(a - b)
    hand = handoffs(snap, mem)
    ms = lambda v: "%.2f" % (statistics.median(v) * 1000)
    print("Firecracker API load vs khyve -r (%s, %d runs each, medians, "
          "ms; 64 MiB test guest, mapped restore)" % (ENV, RUNS))
    print("| path | to the first console line |")
    print("|------|------------------------:|")
    print("| khyve -r SNAP, from exec | %s |" % ms(rs))
    print("| khyve --api-sock, from exec (socket, then snapshot/load) | %s |"
          % ms(apis))
    print("| snapshot/load request to the first line | %s |" % ms(reqs))
    print("| api - r (paired runs) | %s |" % ms(diffs))
    print("| the API's own part: request arrived to main's take-over (khyve "
          "-v) | %.3f |" % statistics.median(hand))
    print("(min: -r %.2f, api %.2f, request %.2f, API part %.3f; max API "
          "part %.3f)" % (min(rs) * 1000, min(apis) * 1000, min(reqs) * 1000,
                          min(hand), max(hand)))
    shutil.rmtree(DIR, ignore_errors=True)


if __name__ == "__main__":
    main()
