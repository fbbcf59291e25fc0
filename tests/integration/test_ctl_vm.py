"""The control socket of a running VM under abuse: the guest keeps running.

Needs /dev/kvm (or tests/nested/run.sh)."""
import json
import os
import re
import select
import socket
import subprocess
import time

from conftest import GUEST, needs_kvm

pytestmark = needs_kvm


def counter(g):
    vals = [int(x) for x in re.findall(r"KHYVE-COUNTER (\d+)", g.read())]
    return vals[-1] if vals else -1


def sock_path(g):
    return os.path.join(g.rundir, g.name + ".sock")


def test_abuse_leaves_vm_running(guest_factory):
    g = guest_factory(["-m", "64M", "-k", GUEST, "-a", "counter interval_ms=50",
                       "-l", "com1,stdio"])
    assert g.wait_for("KHYVE-COUNTER 2", 60), g.read()
    path = sock_path(g)
    # Malformed JSON, an unknown command, then a valid one on one connection.
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    f = s.makefile("rwb")
    greeting = json.loads(f.readline())
    assert greeting["khyve"]["vm"] == "t"
    f.write(b"{not json\n")
    f.write(b'{"id": 1, "cmd": "frobnicate"}\n')
    f.write(b'{"id": 2, "cmd": "status"}\n')
    f.flush()
    r1, r2, r3 = (json.loads(f.readline()) for _ in range(3))
    assert r1["error"]["code"] == "parse_error"
    assert r2["error"]["code"] == "unknown_command" and r2["id"] == 1
    assert r3["ok"] and r3["result"]["state"] == "running" and r3["id"] == 2
    # Registers while running: a clear "pause first".
    f.write(b'{"id": 3, "cmd": "regs", "args": {"vcpu": 0}}\n')
    f.flush()
    r4 = json.loads(f.readline())
    assert r4["error"]["code"] == "invalid_state"
    assert "pause" in r4["error"]["message"]
    s.close()
    # A request over a megabyte is refused and its connection closed.
    big = socket.socket(socket.AF_UNIX)
    big.connect(path)
    big.recv(4096)
    try:
        big.sendall(b'{"cmd": "status", "pad": "' + b"x" * (2 << 20) + b'"}\n')
    except (BrokenPipeError, ConnectionResetError):
        pass
    big.close()
    # A client that disconnects mid-request.
    half = socket.socket(socket.AF_UNIX)
    half.connect(path)
    half.sendall(b'{"id": 9, "cmd": "sta')
    half.close()
    # 100 clients at once, each asking for status.
    clients = []
    for _ in range(100):
        c = socket.socket(socket.AF_UNIX)
        c.connect(path)
        clients.append(c)
    for c in clients:
        c.sendall(b'{"cmd": "status"}\n')
    ok = 0
    for c in clients:
        c.settimeout(60)
        fc = c.makefile("rb")
        fc.readline()  # greeting
        if json.loads(fc.readline()).get("ok"):
            ok += 1
        c.close()
    assert ok == 100
    # The guest never stopped.
    before = counter(g)
    assert g.wait_for("KHYVE-COUNTER %d" % (before + 3), 60), g.read()
    st = g.ctl("status", "t", "--json")
    assert st.returncode == 0 and json.loads(st.stdout)["state"] == "running"
    # A plain poweroff ends the VM with the powered-off status.
    assert g.ctl("poweroff", "t").returncode == 0
    assert g.finish() == 1
    assert not os.path.exists(path)  # socket removed on exit


def test_second_vm_with_same_name_refused(guest_factory):
    g = guest_factory(["-m", "64M", "-k", GUEST, "-a", "counter interval_ms=100",
                       "-l", "com1,stdio"], name="dup")
    assert g.wait_for("KHYVE-COUNTER 1", 60)
    from conftest import KHYVE
    r = subprocess.run([KHYVE, "--rundir", g.rundir, "-m", "64M", "-k", GUEST,
                        "-l", "com1,null", "dup"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 4
    assert "already running" in r.stderr
    assert g.proc.poll() is None
    assert os.path.exists(sock_path(g))


def thread_cpu_s(pid, tid):
    """User + system CPU seconds of one thread, from /proc."""
    with open("/proc/%d/task/%d/stat" % (pid, tid)) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_stdin_at_eof_leaves_main_loop_idle(rundir):
    """stdin from /dev/null (a service, a benchmark harness) is at EOF
    from the start; the main loop must stop polling it, not spin a CPU
    (it did: poll() returns at once on an fd at EOF, forever)."""
    from conftest import KHYVE
    p = subprocess.Popen(
        [KHYVE, "--rundir", rundir, "-m", "64M", "-k", GUEST, "-a",
         "counter interval_ms=100", "-l", "com1,stdio", "idle"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL)
    try:
        out = b""
        end = time.monotonic() + 60
        while b"KHYVE-COUNTER 2" not in out and time.monotonic() < end:
            # Never a blocking read: silence must end at the deadline.
            if select.select([p.stdout], [], [], 0.2)[0]:
                data = os.read(p.stdout.fileno(), 4096)
                if not data:
                    break
                out += data
        assert b"KHYVE-COUNTER 2" in out, out
        # The guest keeps printing: drain its output in the background
        # of the measurement so the pipe never fills.
        os.set_blocking(p.stdout.fileno(), False)
        t0 = thread_cpu_s(p.pid, p.pid)
        for _ in range(20):
            time.sleep(0.1)
            try:
                out += p.stdout.read() or b""
            except BlockingIOError:
                pass
        used = thread_cpu_s(p.pid, p.pid) - t0
        # A spinning loop takes ~2 s of CPU in these 2 s; an idle one a
        # few milliseconds per console line.
        assert used < 0.5, "main thread used %.2f s of CPU in 2 s" % used
        assert b"KHYVE-COUNTER" in out
    finally:
        p.kill()
        p.wait(15)
