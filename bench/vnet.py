"""virtio-net guest-to-host throughput: the fast test guest's own polled
driver (tests=vnet vnet_bench_mb=M, tests/guests/virtio.c) sends M MiB of
1400-byte UDP payloads through khyve's virtio-net and through QEMU's
virtio-net-pci (user-space back-end, vhost off), each on a TAP in a
network namespace this script creates (10.0.2.1/24 on the TAP, the guest
10.0.2.15; nothing leaves the namespace). Reported: the guest's own rate
(its TSC, until the device gave every buffer back) and what a UDP socket
on the host side received (payload bytes over the kernel receive
timestamps of the first and last datagram), medians of BENCH_VNET_RUNS
(rows interleaved run by run).
Needs root and /dev/net/tun."""
import ctypes
import os
import re
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

from benchlib import ENV, Run, khyve_argv, qemu_argv

RUNS = int(os.environ.get("BENCH_VNET_RUNS", "3"))
MB = int(os.environ.get("BENCH_VNET_MB", "16"))
QDS = [int(q) for q in os.environ.get("BENCH_VNET_QD", "1,64").split(",")
       if q]
# Another khyve binary for the khyve row, and optionally a second one as
# an extra row (e.g. before and after a device change, same run).
KHYVE_BIN = os.environ.get("BENCH_VNET_KHYVE") or None
KHYVE_BASE = os.environ.get("BENCH_VNET_KHYVE_BASE") or None
MAC = "52:54:00:12:34:56"
HOST_IP, PORT = "10.0.2.1", 5555
LINE = re.compile(r"KHYVE-BENCH vnet tx bytes=(\d+) pkts=(\d+) us=(\d+) "
                  r"MBps=([\d.]+) pps=(\d+) qd=(\d+) status=(-?\d+)")
CLONE_NEWNET = 0x40000000
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)

_libc = ctypes.CDLL(None, use_errno=True)


class InNs:
    """Sockets made and processes started in the body live in @ns."""

    def __init__(self, ns):
        self.ns = ns

    def _setns(self, fd):
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, "setns: %s" % os.strerror(e))

    def __enter__(self):
        self.own = os.open("/proc/self/ns/net", os.O_RDONLY)
        fd = os.open("/run/netns/" + self.ns, os.O_RDONLY)
        try:
            self._setns(fd)
        finally:
            os.close(fd)

    def __exit__(self, *exc):
        try:
            self._setns(self.own)
        finally:
            os.close(self.own)


def ip(*args):
    subprocess.run(["ip"] + list(args), check=True, capture_output=True)


class Receiver(threading.Thread):
    """Counts KHYVBNCH datagrams and their kernel arrival times."""

    def __init__(self, sock):
        super().__init__(daemon=True)
        self.s = sock
        self.lock = threading.Lock()
        self.stop = False
        self.reset()

    def reset(self):
        with self.lock:
            self.pkts = self.bytes = 0
            self.t_first = self.t_last = None

    def run(self):
        self.s.settimeout(0.2)
        while not self.stop:
            try:
                d, anc, _, _ = self.s.recvmsg(2048, 64)
            except socket.timeout:
                continue
            if d[:8] != b"KHYVBNCH":
                continue
            ts = None
            for lvl, typ, data in anc:
                if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", data[:16])
                    ts = sec + nsec / 1e9
            with self.lock:
                self.pkts += 1
                self.bytes += len(d)
                if ts is not None:
                    if self.t_first is None:
                        self.t_first = ts
                    self.t_last = ts

    def result(self):
        with self.lock:
            span = (self.t_last - self.t_first) if self.t_first else 0
            return self.pkts, self.bytes, span


def once(argv, ns, rcv, npk):
    rcv.reset()
    with InNs(ns):
        r = Run(argv)
    try:
        ok = r.wait_for("KHYVE-GUEST done", 600)
        text = r.text()
        # Why it ended, for the failure message: None = still running.
        status = r.p.poll()
        secs = time.monotonic() - r.t0
    finally:
        r.stop()
    # Let the host side catch up with what is already queued for it.
    last, still = -1, 0
    for _ in range(200):
        pk, _, _ = rcv.result()
        if pk >= npk:
            break
        still = still + 1 if pk == last else 0
        if still >= 10:  # nothing more for a second: it was lost
            break
        last = pk
        time.sleep(0.1)
    m = LINE.search(text)
    if ok is None or not m or m.group(7) != "0" or \
            "vnet-bench PASS" not in text:
        sys.stderr.write("vnet bench run failed (%s, exit status %s after "
                         "%.1f s):\n%s\n" % (argv[0], status, secs, text))
        return None
    pk, by, span = rcv.result()
    host = by / span / 1e6 if span > 0 and pk > 1 else None
    return {"guest": float(m.group(4)), "pps": int(m.group(5)),
            "host": host, "recv": pk / int(m.group(2))}


RR = int(os.environ.get("BENCH_VNET_RR", "2000"))
GUEST_IP, GUEST_PORT = "10.0.2.15", 5556


def rr_once(argv, ns):
    """Host -> guest -> host: RR 1400-byte UDP datagrams to the guest's
    echo service, one at a time (each sent when the last came back).
    Round trips per second, or None."""
    with InNs(ns):
        r = Run(argv)
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if r.wait_for("KHYVE-VNET echo-ready", 600) is None:
            sys.stderr.write("vnet rr: no echo service (%s):\n%s\n"
                             % (argv[0], r.text()))
            return None
        c.bind((HOST_IP, 0))
        c.settimeout(5)
        msg = b"KHYVRR00" + bytes(1392)
        for i in range(20 + RR):  # the first 20 warm up (ARP and all)
            if i == 20:
                t0 = time.monotonic()
            c.sendto(msg, (GUEST_IP, GUEST_PORT))
            d, _ = c.recvfrom(2048)
            if d != msg:
                sys.stderr.write("vnet rr: reply differs\n")
                return None
        rate = RR / (time.monotonic() - t0)
        c.sendto(b"KHYVE-VNET-QUIT", (GUEST_IP, GUEST_PORT))
        return rate
    except (socket.timeout, OSError) as e:
        sys.stderr.write("vnet rr: %s (%s)\n" % (e, argv[0]))
        return None
    finally:
        c.close()
        r.stop()


def rr_all(ns, tap):
    """Round trips through the guest's echo service, rows interleaved."""
    cmd = "tests=vnet vnet_n=0 vnet_echo_ms=600000"
    kargv = khyve_argv("256M", cmd, [
        "-s", "3,virtio-net,%s,mac=%s" % (tap, MAC)],
        name="vnet%d" % os.getpid())
    if KHYVE_BIN:
        kargv[0] = KHYVE_BIN
    rows = []
    if KHYVE_BASE:
        rows.append(("khyve base", [KHYVE_BASE] + kargv[1:]))
    rows += [("khyve", kargv),
             ("khyve tx=vcpu",
              kargv[:-2] + [kargv[-2] + ",tx=vcpu"] + kargv[-1:]),
             ("qemu -M pc", qemu_argv("pc", "256M", cmd, [
                 "-netdev", "tap,id=n0,ifname=%s,script=no,downscript=no,"
                 "vhost=off" % tap,
                 "-device", "virtio-net-pci,netdev=n0,disable-legacy=on,"
                 "mac=%s" % MAC]))]
    print("== virtio-net: host -> guest -> host round trips, %d of 1400 "
          "bytes, one at a time, through the guest's echo (median of %d; "
          "%s) ==" % (RR, RUNS, ENV))
    res = {name: [] for name, _ in rows}
    for n in range(RUNS):
        for name, argv in rows:
            load = os.getloadavg()[0]
            v = rr_once(argv, ns)
            if v:
                res[name].append(v)
            print("  run %d %-18s: %s round trips/s (load %.1f)" % (
                n + 1, name, "%.0f" % v if v else "failed", load))
    med = {k: statistics.median(v) if v else None for k, v in res.items()}
    for name, _ in rows:
        print("%-18s %10s round trips/s" % (
            name, "%.0f" % med[name] if med[name] else "failed"))
    if med.get("khyve") and med.get("qemu -M pc"):
        print("khyve/qemu round trips: %.2fx"
              % (med["khyve"] / med["qemu -M pc"]))
    return 0 if all(med.values()) else 1


def main():
    sys.stdout.reconfigure(line_buffering=True)
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        print("== virtio-net: skipped (needs root and /dev/net/tun) ==")
        return 0
    ns, tap = "kvbench%d" % os.getpid(), "kvbtap0"
    ip("netns", "add", ns)
    try:
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "tuntap", "add", tap, "mode", "tap")
        ip("-n", ns, "addr", "add", HOST_IP + "/24", "dev", tap)
        ip("-n", ns, "link", "set", tap, "up")
        with InNs(ns):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 256 << 20)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        s.bind((HOST_IP, PORT))
        rcv = Receiver(s)
        rcv.start()
        rc = run_all(ns, tap, rcv) if QDS else 0
        if RR:
            rc |= rr_all(ns, tap)
        return rc
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def run_all(ns, tap, rcv):
    npk = ((MB << 20) + 1399) // 1400
    rows = []
    for qd in QDS:
        cmd = "tests=vnet vnet_n=0 vnet_bench_mb=%d vnet_qd=%d" % (MB, qd)
        # A name of our own: other benchmarks share the run directory.
        kargv = khyve_argv("256M", cmd, [
            "-s", "3,virtio-net,%s,mac=%s" % (tap, MAC)],
            name="vnet%d" % os.getpid())
        if KHYVE_BASE:
            rows.append(("khyve base", qd, [KHYVE_BASE] + kargv[1:]))
        if KHYVE_BIN:
            kargv[0] = KHYVE_BIN
        rows += [
            ("khyve", qd, kargv),
            # The transmit queue on the kicking vCPU's thread instead of
            # the iothread (the default).
            ("khyve tx=vcpu", qd,
             kargv[:-2] + [kargv[-2] + ",tx=vcpu"] + kargv[-1:]),
            ("qemu -M pc", qd, qemu_argv("pc", "256M", cmd, [
                "-netdev", "tap,id=n0,ifname=%s,script=no,downscript=no,"
                "vhost=off" % tap,
                "-device", "virtio-net-pci,netdev=n0,disable-legacy=on,"
                "mac=%s" % MAC])),
        ]
    print("== virtio-net: test guest driver, %d MiB of 1400-byte UDP "
          "payloads guest -> host TAP socket (median of %d; %s) =="
          % (MB, RUNS, ENV))
    print("%-18s %3s %14s %12s %14s %9s" % (
        "VMM", "qd", "guest MB/s", "guest pps", "host rx MB/s", "received"))
    failed = False
    res = {}
    # Rows take turns run by run, so a change in load on a shared machine
    # hits every VMM alike instead of whichever row ran at the time.
    results = {i: [] for i in range(len(rows))}
    for n in range(RUNS):
        for i, (name, qd, argv) in enumerate(rows):
            load = os.getloadavg()[0]
            r = once(argv, ns, rcv, npk)
            if r:
                results[i].append(r)
            # Every run with the load it ran under: on a shared machine
            # the spread says as much as the median.
            print("  run %d %-18s qd %2d: %s MB/s (load %.1f)" % (
                n + 1, name, qd, "%.1f" % r["guest"] if r else "failed",
                load))
    for i, (name, qd, argv) in enumerate(rows):
        runs = results[i]

        def med(key):
            v = [r[key] for r in runs if r[key] is not None]
            return statistics.median(v) if v else None
        g, pps, h, rc = med("guest"), med("pps"), med("host"), med("recv")
        failed |= not runs
        res[(name, qd)] = (g, h)
        print("%-18s %3d %14s %12s %14s %9s" % (
            name, qd, "%.1f" % g if g else "failed",
            "%d" % pps if pps else "failed",
            "%.1f" % h if h else "failed",
            "%.1f%%" % (100 * rc) if rc is not None else "failed"))
    for qd in QDS:
        k, q = res.get(("khyve", qd)), res.get(("qemu -M pc", qd))
        if k and q and k[0] and q[0]:
            print("khyve/qemu at qd %d: guest %.2fx, host rx %s" % (
                qd, k[0] / q[0], "%.2fx" % (k[1] / q[1])
                if k[1] and q[1] else "n/a"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
