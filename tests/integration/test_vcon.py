"""virtio-console under khyve, driven by the fast test guest's own polled
driver (tests=vcon in tests/guests/virtio.c): the guest says hello on the
port, the host sends a line through the listening UNIX socket, the guest
sends it back upper-cased and reports on COM1. Judged by the bytes that
come out of the socket and by the guest's own report.

Needs /dev/kvm; skipped (with the reason) where it is absent."""
import json
import os
import socket
import time

from conftest import GUEST, needs_kvm, verdict

pytestmark = needs_kvm

SLOT = 4


def boot(guest_factory, backend, name="t", opts=""):
    conf = "%d,virtio-console,%s%s" % (SLOT, backend, opts)
    return guest_factory(["-m", "64M", "-k", GUEST, "-a", "tests=vcon",
                          "-l", "com1,stdio", "-s", conf], name=name)


def connect(path, g, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                s.settimeout(60)
                return s
            except OSError:
                s.close()
        assert g.proc.poll() is None, (g.read(),
                                       g.proc.stderr.read().decode())
        time.sleep(0.02)
    raise AssertionError("no console socket at %s" % path)


def readline(s):
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(256)
        if not d:
            break
        buf += d
    return buf


def stderr(g):
    return g.proc.stderr.read().decode() if g.proc.poll() is not None else ""


def test_vcon_socket_both_ways(guest_factory, tmp_path):
    sock = str(tmp_path / "vcon.sock")
    g = boot(guest_factory, "unix=" + sock, opts=",cols=100,rows=40")
    s = connect(sock, g)
    # The guest's line arrives whether it was sent before or after we
    # connected (held for the first client).
    hello = b"KHYVE-VCON hello cols=100 rows=40\n"
    assert readline(s) == hello, (g.read(), stderr(g))
    st = json.loads(g.ctl("stats", "t", "--json").stdout)
    dev = st["devices"]["virtio-console@%d:0" % SLOT]
    assert dev["tx_bytes"] == len(hello) and dev["dropped"] == 0, dev
    assert dev["clients"] == 1, dev
    s.sendall(b"ping from Host 1234\n")
    assert readline(s) == b"KHYVE-VCON echo PING FROM HOST 1234\n", \
        (g.read(), stderr(g))
    assert g.wait_for("KHYVE-GUEST done", 60), g.read()
    assert g.finish() == 1, stderr(g)
    out = g.read()
    verdict(out)
    assert "KHYVE-INFO vcon pci=00:%02d.0 id=0x1043 cols=100 rows=40" % SLOT \
        in out, out
    # 19 characters; the guest saw all 20 bytes including the newline.
    assert "KHYVE-TEST vcon PASS pci=00:%02d.0 line=19 got=20 status=0" % SLOT \
        in out, out
    assert "FAIL" not in out, out
    s.close()


def test_vcon_suspend_restore_rebinds_socket(guest_factory, tmp_path):
    """Suspended while its receive buffers wait for the host; restored
    with the port on another socket, the guest gets the line there."""
    sock1, sock2 = str(tmp_path / "a.sock"), str(tmp_path / "b.sock")
    snap = str(tmp_path / "vcon.snap")
    g = boot(guest_factory, "unix=" + sock1)
    s = connect(sock1, g)
    assert readline(s) == b"KHYVE-VCON hello cols=0 rows=0\n", \
        (g.read(), stderr(g))
    r = g.ctl("suspend", "t", snap)
    assert r.returncode == 0, r.stderr
    assert g.finish() == 5, stderr(g)
    s.close()
    assert "KHYVE-TEST vcon" not in g.read()
    assert not os.path.exists(sock1)  # removed on exit

    r2 = guest_factory(["-r", snap, "-l", "com1,stdio",
                        "-s", "%d,virtio-console,unix=%s" % (SLOT, sock2)],
                       name="r")
    s2 = connect(sock2, r2)
    s2.sendall(b"after restore\n")
    assert readline(s2) == b"KHYVE-VCON echo AFTER RESTORE\n", \
        (r2.read(), stderr(r2))
    assert r2.wait_for("KHYVE-GUEST done", 60), r2.read()
    assert r2.finish() == 1, stderr(r2)
    out = r2.read()
    verdict(out)
    assert "KHYVE-TEST vcon PASS pci=00:%02d.0 line=13 got=14 status=0" \
        % SLOT in out, out
    s2.close()
