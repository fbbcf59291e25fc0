"""virtio-net under khyve on a TAP, driven by the fast test guest's own
polled driver (tests=vnet in tests/guests/virtio.c). Everything happens in
a network namespace the test creates: a TAP with 10.0.2.1/24 (the guest is
10.0.2.15), nothing else, no route out. The host side is plain sockets
opened inside that namespace: a UDP socket receives the guest's sequenced
burst (every frame must arrive once, intact), a packet socket on the TAP
shows the Ethernet source address (the mac= option), and UDP and ICMP
echo requests must come back from the guest.

Needs /dev/kvm, root and /dev/net/tun; skipped with the reason otherwise."""
import ctypes
import json
import os
import re
import socket
import struct
import subprocess
import time

import pytest

from conftest import GUEST, needs_kvm, verdict

SLOT = 3
MAC = "52:54:00:12:34:56"
TAP_MAC = "02:00:00:00:00:01"  # fixed, so a rebound TAP looks the same
HOST_IP, GUEST_IP = "10.0.2.1", "10.0.2.15"
HOST_PORT, GUEST_PORT = 5555, 5556
CLONE_NEWNET = 0x40000000
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def net_usable():
    if os.geteuid() != 0:
        return False, "needs root (network namespace, TAP)"
    if not os.path.exists("/dev/net/tun"):
        return False, "no /dev/net/tun"
    r = subprocess.run(["ip", "netns", "list"], capture_output=True,
                       timeout=60)
    if r.returncode != 0:
        return False, "ip netns does not work here"
    return True, ""


NET_OK, NET_WHY = net_usable()
pytestmark = [needs_kvm, pytest.mark.skipif(not NET_OK, reason=NET_WHY)]

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns: %s" % os.strerror(e))


class InNs:
    """Run the body (socket creation, process start) in namespace @ns:
    sockets keep the namespace they were made in, children inherit it."""

    def __init__(self, ns):
        self.ns = ns

    def __enter__(self):
        self.own = os.open("/proc/self/ns/net", os.O_RDONLY)
        fd = os.open("/run/netns/" + self.ns, os.O_RDONLY)
        try:
            _setns(fd)
        finally:
            os.close(fd)

    def __exit__(self, *exc):
        try:
            _setns(self.own)
        finally:
            os.close(self.own)


def ip(*args, check=True):
    r = subprocess.run(["ip"] + list(args), capture_output=True, text=True,
                       timeout=60)
    if check and r.returncode != 0:
        raise AssertionError("ip %s: %s" % (" ".join(args), r.stderr))
    return r


class Net:
    def __init__(self):
        self.ns = "kvnet%d" % os.getpid()
        self.n = 0
        ip("netns", "add", self.ns)
        try:
            ip("-n", self.ns, "link", "set", "lo", "up")
            self.tap = self.add_tap()
        except BaseException:
            self.close()
            raise

    def add_tap(self):
        """A new TAP holding the host address (the old one must be gone)."""
        self.n += 1
        tap = "kvtap%d" % self.n
        ip("-n", self.ns, "tuntap", "add", tap, "mode", "tap")
        ip("-n", self.ns, "link", "set", tap, "address", TAP_MAC)
        ip("-n", self.ns, "addr", "add", HOST_IP + "/24", "dev", tap)
        ip("-n", self.ns, "link", "set", tap, "up")
        return tap

    def del_tap(self, tap):
        ip("-n", self.ns, "link", "del", tap)

    def socket(self, *args):
        with InNs(self.ns):
            return socket.socket(*args)

    def udp(self, port=HOST_PORT):
        s = self.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # The burst must not be lost in a full socket buffer.
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        s.bind((HOST_IP, port))
        return s

    def close(self):
        ip("netns", "del", self.ns, check=False)


@pytest.fixture
def net():
    n = Net()
    yield n
    n.close()


def boot(guest_factory, net, cmdline, name="t", tap=None, opts=""):
    args = ["-m", "64M", "-k", GUEST, "-a", cmdline, "-l", "com1,stdio",
            "-s", "%d,virtio-net,%s,mac=%s%s" % (SLOT, tap or net.tap, MAC,
                                                 opts)]
    with InNs(net.ns):
        return guest_factory(args, name=name)


def stderr(g):
    return g.proc.stderr.read().decode() if g.proc.poll() is not None else ""


def filler(seq, n):
    return bytes((seq * 7 + i) & 0xff for i in range(24, n))


class Burst:
    """Collects KHYVNET1 datagrams: sequence numbers, repeats, damage."""

    def __init__(self, sock, n, length):
        self.s, self.n, self.len = sock, n, length
        self.seen = {}
        self.order = []
        self.bad = []

    def poll(self, timeout):
        self.s.settimeout(timeout)
        try:
            while True:
                d, a = self.s.recvfrom(4096)
                self.add(d, a)
                self.s.settimeout(0)
        except (socket.timeout, BlockingIOError):
            pass

    def add(self, d, a):
        if len(d) != self.len or d[:8] != b"KHYVNET1" or \
                a != (GUEST_IP, GUEST_PORT):
            self.bad.append((a, d[:32]))
            return
        seq, n = struct.unpack("<QQ", d[8:24])
        if n != self.n or seq >= n or d[24:] != filler(seq, self.len):
            self.bad.append((a, d[:32]))
            return
        self.seen[seq] = self.seen.get(seq, 0) + 1
        self.order.append(seq)

    def wait(self, count, g, timeout):
        end = time.time() + timeout
        while len(self.seen) < count and time.time() < end:
            self.poll(0.2)
            if g.proc.poll() is not None:
                self.poll(0.5)
                break
        return len(self.seen) >= count

    def check_complete(self):
        missing = [s for s in range(self.n) if s not in self.seen]
        dups = {s: c for s, c in self.seen.items() if c > 1}
        assert not self.bad, self.bad[:5]
        assert not missing, "missing %d: %s" % (len(missing), missing[:20])
        assert not dups, dups
        # One queue, served in order: the datagrams arrive in order too.
        assert self.order == sorted(self.order), self.order[:50]


def icmp_csum(b):
    if len(b) & 1:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def ping(net, ident, seq, payload, timeout=20):
    """One ICMP echo to the guest; True when the matching reply came."""
    s = net.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    try:
        hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        pkt = struct.pack("!BBHHH", 8, 0, icmp_csum(hdr + payload), ident,
                          seq) + payload
        s.sendto(pkt, (GUEST_IP, 0))
        end = time.time() + timeout
        while time.time() < end:
            s.settimeout(max(0.1, end - time.time()))
            try:
                d, a = s.recvfrom(4096)
            except socket.timeout:
                break
            ihl = (d[0] & 15) * 4
            t, _, _, i, q = struct.unpack("!BBHHH", d[ihl:ihl + 8])
            if a[0] == GUEST_IP and t == 0 and (i, q) == (ident, seq):
                assert d[ihl + 8:] == payload
                assert icmp_csum(d[ihl:]) == 0
                return True
        return False
    finally:
        s.close()


def frames_from(pk):
    """(source MAC, ethertype, IPv4 source) of the frames @pk has seen."""
    out = []
    pk.settimeout(0)
    try:
        while True:
            d = pk.recv(2048)
            src = ":".join("%02x" % b for b in d[6:12])
            et = struct.unpack("!H", d[12:14])[0]
            ip4 = socket.inet_ntoa(d[26:30]) if et == 0x800 else None
            out.append((src, et, ip4))
    except (BlockingIOError, socket.timeout):
        pass
    return out


def test_vnet_burst_mac_and_echo(guest_factory, net):
    n, length = 200, 200
    rx = net.udp()
    pk = net.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    pk.bind((net.tap, 0))
    pk.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
    g = boot(guest_factory, net, "tests=vnet vnet_n=%d vnet_len=%d "
             "vnet_echo_ms=120000" % (n, length))
    b = Burst(rx, n, length)
    assert b.wait(n, g, 120), (len(b.seen), g.read(), stderr(g))
    assert g.wait_for("KHYVE-VNET echo-ready", 60), (g.read(), stderr(g))
    b.poll(0.5)
    b.check_complete()
    out = g.read()
    assert ("KHYVE-INFO vnet pci=00:%02d.0 id=0x1041 mac=%s mac_feature=1 "
            "link=1" % (SLOT, MAC)) in out, out
    assert "KHYVE-TEST vnet PASS op=init mac=%s link=1" % MAC in out, out
    # The guest learned the TAP's address by ARP, not by broadcast.
    assert "KHYVE-TEST vnet PASS op=arp peer=%s" % TAP_MAC in out, out
    assert ("KHYVE-TEST vnet PASS op=tx sent=%d len=%d gap_us=0 bad=0 "
            "status=0" % (n, length)) in out, out
    # On the wire: IPv4 from the guest carries the mac= address.
    seen = frames_from(pk)
    ours = [f for f in seen if f[1] == 0x800 and f[2] == GUEST_IP]
    assert len(ours) >= n, seen[:10]
    assert {f[0] for f in ours} == {MAC}, {f[0] for f in ours}
    assert any(f[0] == MAC and f[1] == 0x806 for f in seen), seen[:10]

    # Echo: UDP datagrams come back to the sender, ICMP echo is answered.
    c = net.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.bind((HOST_IP, 0))
    c.settimeout(20)
    for i in range(5):
        msg = b"echo %d " % i + os.urandom(64 * i)
        c.sendto(msg, (GUEST_IP, GUEST_PORT))
        d, a = c.recvfrom(4096)
        assert (d, a) == (msg, (GUEST_IP, GUEST_PORT)), (d, a, g.read())
    assert ping(net, 0x4b48, 1, b"khyve ping payload " * 3), g.read()
    assert ping(net, 0x4b48, 2, os.urandom(1000)), g.read()
    # The host resolved the guest by ARP: the guest answered with mac=.
    neigh = ip("-n", net.ns, "neigh", "show", GUEST_IP).stdout
    assert MAC in neigh.lower(), neigh
    r = g.ctl("stats", "t", "--json")
    assert r.returncode == 0, r.stderr
    dev = json.loads(r.stdout)["devices"]["virtio-net@%d:0" % SLOT]
    assert dev["tx_errors"] == 0, dev
    assert dev["tx_packets"] >= n + 7 and dev["rx_packets"] >= 7, dev
    c.sendto(b"KHYVE-VNET-QUIT", (GUEST_IP, GUEST_PORT))
    assert c.recvfrom(4096)[0] == b"KHYVE-VNET-QUIT"
    assert g.wait_for("KHYVE-GUEST done", 60), g.read()
    assert g.finish() == 1, stderr(g)
    out = g.read()
    verdict(out)
    assert re.search(r"KHYVE-TEST vnet PASS op=echo quit=1 udp=6 icmp=2 "
                     r"arp_in=\d+ rx=\d+ rx_bad=0 other=\d+ status=0",
                     out), out
    assert "FAIL" not in out, out


def test_vnet_suspend_mid_tx_restore_on_new_tap(guest_factory, net,
                                                 tmp_path):
    """Suspended while it streams, restored onto another TAP (same host
    address): the sequence goes on where it stopped, nothing lost or
    sent twice."""
    n, length = 1500, 64
    snap = str(tmp_path / "vnet.snap")
    rx = net.udp()
    g = boot(guest_factory, net, "tests=vnet vnet_n=%d vnet_len=%d "
             "vnet_gap_us=5000" % (n, length))
    b = Burst(rx, n, length)
    assert b.wait(100, g, 120), (len(b.seen), g.read(), stderr(g))
    r = g.ctl("suspend", "t", snap)
    assert r.returncode == 0, r.stderr
    assert g.finish() == 5, stderr(g)
    b.poll(0.5)
    before = max(b.seen)
    assert before < n - 1, "stream ended before the suspend"
    assert "KHYVE-TEST vnet PASS op=tx" not in g.read()
    # Rebind: the old TAP goes away, a new one takes the host address.
    old = net.tap
    net.del_tap(old)
    net.tap = net.add_tap()
    assert net.tap != old
    with InNs(net.ns):
        r2 = guest_factory(["-r", snap, "-l", "com1,stdio", "-s",
                            "%d,virtio-net,%s,mac=%s" % (SLOT, net.tap, MAC)],
                           name="r")
    assert b.wait(n, r2, 180), (len(b.seen), r2.read(), stderr(r2))
    assert r2.wait_for("KHYVE-GUEST done", 60), r2.read()
    assert r2.finish() == 1, stderr(r2)
    b.poll(0.5)
    b.check_complete()
    out = r2.read()
    verdict(out)
    assert ("KHYVE-TEST vnet PASS op=tx sent=%d len=%d gap_us=5000 bad=0 "
            "status=0" % (n, length)) in out, out
    # The restored guest's progress lines go on from the saved count.
    sent = [int(x) for x in re.findall(r"KHYVE-VNET sent=(\d+)", out)]
    assert sent and sent[-1] == n and sent[0] > before - 100, (sent, before)


class Stream:
    """Counts the guest's KHYVBNCH datagrams (vnet_bench_mb) by sequence."""

    def __init__(self, sock):
        self.s = sock
        self.seen = {}
        self.order = []

    def poll(self, timeout):
        self.s.settimeout(timeout)
        try:
            while True:
                d = self.s.recv(4096)
                self.s.settimeout(0)
                if len(d) == 1400 and d[:8] == b"KHYVBNCH":
                    seq = struct.unpack("<Q", d[8:16])[0]
                    self.seen[seq] = self.seen.get(seq, 0) + 1
                    self.order.append(seq)
        except (socket.timeout, BlockingIOError):
            pass


@pytest.mark.parametrize("tx", ["vcpu", "iothread"])
def test_vnet_one_frame_per_kick_with_checkpoint(guest_factory, net,
                                                 tmp_path, tx):
    """A stream at one frame per kick (each frame sent when the last came
    back), live-checkpointed in the middle: every frame arrives once, in
    order, and the counters show how they went. tx=iothread (the
    default): the device polls the ring between frames, so some frames
    need no kick at all, and none needs more than one. tx=vcpu: sent on
    the kicking vCPU's thread, no iothread kick."""
    mb = 4
    npk = ((mb << 20) + 1399) // 1400
    rx = net.udp()
    opts = ",tx=vcpu" if tx == "vcpu" else ",poll_us=200"
    g = boot(guest_factory, net, "tests=vnet vnet_n=0 vnet_bench_mb=%d "
             "vnet_qd=1 vnet_echo_ms=120000" % mb, opts=opts)
    st = Stream(rx)
    end = time.time() + 120
    while len(st.seen) < 50 and time.time() < end and g.proc.poll() is None:
        st.poll(0.2)
    assert st.seen, (g.read(), stderr(g))
    r = g.ctl("checkpoint", "t", str(tmp_path / "mid.snap"))
    assert r.returncode == 0, r.stderr
    # Asked while the stream was still going.
    assert len(st.seen) < npk, len(st.seen)
    assert g.wait_for("KHYVE-BENCH vnet tx", 120), (g.read(), stderr(g))
    assert g.wait_for("KHYVE-VNET echo-ready", 60), (g.read(), stderr(g))
    end = time.time() + 30
    while len(st.seen) < npk and time.time() < end:
        st.poll(0.2)
    out = g.read()
    assert "KHYVE-TEST vnet-bench PASS pkts=%d status=0" % npk in out, out
    missing = [i for i in range(npk) if i not in st.seen]
    assert not missing, (len(missing), missing[:20])
    assert all(c == 1 for c in st.seen.values())
    assert st.order == sorted(st.order)
    r = g.ctl("stats", "t", "--json")
    assert r.returncode == 0, r.stderr
    dev = json.loads(r.stdout)["devices"]["virtio-net@%d:0" % SLOT]
    assert dev["tx_errors"] == 0, dev
    assert dev["tx_packets"] >= npk, dev
    # Each frame was kicked at most once (ARP and the like add a few).
    assert dev["tx_kicks"] <= dev["tx_packets"], dev
    if tx == "vcpu":
        # Kicks that found the queue busy (rx holds it) go to the
        # iothread; nearly all are sent inline.
        assert dev["tx_inline"] >= 0.9 * npk, dev
        assert dev["tx_polled"] == 0, dev
    else:
        assert dev["tx_inline"] == 0, dev
        assert dev["tx_polled"] > 0, dev
    c = net.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.sendto(b"KHYVE-VNET-QUIT", (GUEST_IP, GUEST_PORT))
    assert g.wait_for("KHYVE-GUEST done", 60), g.read()
    assert g.finish() == 1, stderr(g)
    verdict(g.read())
