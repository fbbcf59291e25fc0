"""A private network for guest tests: a network namespace made by the test,
a TAP device in it with the host side's address, optionally dnsmasq as
DHCP server, a UDP listener (netconsole's receiver) and TCP line servers
(the guest's pvmcheck and pvmload talk to them).

Only addresses inside the namespace are used (10.0.2.0/24); nothing
leaves it. Needs root and /dev/net/tun; `usable()` says why not.
"""
import os
import select
import subprocess
import sys
import time

HOST_IP = "10.0.2.1"
GUEST_IP = "10.0.2.15"
GUEST_MAC = "52:54:00:12:34:56"

# Receives UDP datagrams and appends each as one line to a file, so the
# test reads what arrived while the guest still runs.
_LISTENER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
with open(sys.argv[3], "ab", buffering=0) as f:
    print("listening", flush=True)
    while True:
        d, a = s.recvfrom(65536)
        f.write(d if d.endswith(b"\n") else d + b"\n")
"""

# A TCP line server: each line of a connection is answered with
# "ECHO N <the line reversed>", N counting that connection's lines from 1,
# so the guest can tell a live connection from a new one and a lost line.
# Logs "open C PEER", "line C N" and "close C N" (C numbers connections)
# to a file, one line each, for the test to read while the guest runs.
_ECHO_SERVER = r"""
import socket, sys, threading
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(16)
log = open(sys.argv[3], "a", buffering=1)
lock = threading.Lock()

def note(s):
    with lock:
        log.write(s + "\n")

def serve(c, conn, peer):
    note("open %d %s:%d" % (conn, peer[0], peer[1]))
    n, buf = 0, b""
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            buf += d
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                n += 1
                c.sendall(b"ECHO %d " % n + line[::-1] + b"\n")
                note("line %d %d" % (conn, n))
    except OSError as e:
        note("error %d %s" % (conn, e))
    note("close %d %d" % (conn, n))
    c.close()

print("listening", flush=True)
conn = 0
while True:
    c, peer = srv.accept()
    conn += 1
    threading.Thread(target=serve, args=(c, conn, peer), daemon=True).start()
"""


def usable():
    if os.geteuid() != 0:
        return False, "needs root (network namespace, TAP)"
    if not os.path.exists("/dev/net/tun"):
        return False, "no /dev/net/tun"
    if subprocess.run(["ip", "netns", "list"], capture_output=True,
                      timeout=60).returncode != 0:
        return False, "ip netns does not work here"
    return True, ""


def _ip(*args, check=True):
    r = subprocess.run(["ip"] + list(args), capture_output=True, text=True,
                       timeout=60)
    if check and r.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(args), r.stderr.strip()))
    return r


class NetLab:
    def __init__(self, workdir, tag):
        self.dir = workdir
        self.ns = "khyve-%s-%d" % (tag, os.getpid())
        self.tap = "ktap%d" % (os.getpid() % 10000)
        self.procs = []
        _ip("netns", "add", self.ns)
        try:
            self.run_ns(["ip", "link", "set", "lo", "up"])
            self.run_ns(["ip", "tuntap", "add", self.tap, "mode", "tap"])
            self.run_ns(["ip", "addr", "add", HOST_IP + "/24", "dev",
                         self.tap])
            self.run_ns(["ip", "link", "set", self.tap, "up"])
        except Exception:
            self.close()
            raise

    def ns_cmd(self, argv):
        return ["ip", "netns", "exec", self.ns] + list(argv)

    def run_ns(self, argv):
        r = subprocess.run(self.ns_cmd(argv), capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise RuntimeError("%s: %s" % (" ".join(argv), r.stderr.strip()))
        return r

    def start_dhcp(self, mac=GUEST_MAC, ip=GUEST_IP):
        """dnsmasq as DHCP server only (no DNS), leasing @ip to @mac."""
        self.leases = os.path.join(self.dir, "dnsmasq.leases")
        self.dhcp_log = os.path.join(self.dir, "dnsmasq.log")
        if os.path.exists(self.dhcp_log):
            os.unlink(self.dhcp_log)  # its start is looked for below
        p = subprocess.Popen(
            self.ns_cmd(["dnsmasq", "--no-daemon", "--conf-file=/dev/null",
                         "--port=0", "--bind-dynamic",
                         "--interface=" + self.tap,
                         "--dhcp-range=%s,%s,255.255.255.0,1h" % (ip, ip),
                         "--dhcp-host=%s,%s" % (mac, ip),
                         "--dhcp-leasefile=" + self.leases,
                         "--pid-file=", "--user=root", "--log-dhcp",
                         "--log-facility=" + self.dhcp_log]),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        self.procs.append(p)
        # Up when it logged its DHCP range (not after a sleep assumed
        # long enough); dead if it exited first.
        end = time.time() + 30
        while time.time() < end and p.poll() is None:
            try:
                if "DHCP, " in open(self.dhcp_log, errors="replace").read():
                    return
            except FileNotFoundError:
                pass
            time.sleep(0.05)
        if p.poll() is not None:
            raise RuntimeError("dnsmasq: " + p.stderr.read().decode())
        raise RuntimeError("dnsmasq did not start in 30 s")

    def start_echo_server(self, port, path):
        """The TCP line server (_ECHO_SERVER) on HOST_IP:@port, logging
        to @path. It lives as long as the namespace, across a guest's
        suspend and restore."""
        return self._start_listening(_ECHO_SERVER, port, path, "TCP server")

    def start_udp_listener(self, port, path):
        return self._start_listening(_LISTENER, port, path, "UDP listener")

    def _start_listening(self, script, port, path, what):
        p = subprocess.Popen(
            self.ns_cmd([sys.executable, "-c", script, HOST_IP, str(port),
                         path]),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        self.procs.append(p)
        # Bounded: a listener that never gets going fails the test here.
        line = b""
        if select.select([p.stdout], [], [], 30)[0]:
            line = p.stdout.readline()
        if b"listening" not in line:
            raise RuntimeError(what + ": " + p.stderr.read().decode())
        return p

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
        self.procs = []
        # Deleting the namespace removes the TAP device in it.
        _ip("netns", "del", self.ns, check=False)
