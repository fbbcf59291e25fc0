"""Firecracker's REST API on `khyve --api-sock` (issue 17), judged by what
the guest reports and by Firecracker's published API description.

The fast test guest's counter mode (test_snapshot.py) prints
`KHYVE-COUNTER n` every 50 ms; its state lives in guest RAM, so a guest
restored through snapshot/load must go on from the saved n. Requests go
over the UNIX socket with curl (the getting-started sequence, as an
orchestrator's operator would type it) or Python's http.client. Needs
/dev/kvm."""
import http.client
import json
import os
import re
import socket
import subprocess
import threading
import time

import pytest

from conftest import GUEST, KHYVE, KHYVECTL, ROOT, Guest, needs_kvm
from test_snapshot import (COUNTER, check_continues, last_tick, ticks,
                           wait_tick)

EXCERPT = os.path.join(os.path.dirname(__file__), "fc_openapi_excerpt.json")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class FcKhyve(Guest):
    """`khyve --api-sock SOCK --id NAME`, console on a pipe."""

    def __init__(self, rundir, sock, name, env=None):
        self.name = name
        self.rundir = rundir
        self.sock = sock
        self.proc = subprocess.Popen(
            [KHYVE, "--rundir", rundir, "--api-sock", sock, "--id", name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(os.environ, **env) if env else None)
        self.out = b""
        os.set_blocking(self.proc.stdout.fileno(), False)
        end = time.time() + 30
        while not os.path.exists(sock) and time.time() < end:
            assert self.proc.poll() is None, self.proc.stderr.read()
            time.sleep(0.01)
        assert os.path.exists(sock)

    def req(self, method, path, body=None, raw=None):
        """(status, decoded JSON body or None)."""
        c = UnixHTTPConnection(self.sock)
        data = raw if raw is not None else (
            None if body is None else json.dumps(body))
        c.request(method, path, body=data,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        text = r.read()
        c.close()
        return r.status, (json.loads(text) if text else None)

    def ok(self, method, path, body=None):
        st, b = self.req(method, path, body)
        assert st == 204, (method, path, st, b)

    def fault(self, method, path, body=None, raw=None, names=()):
        """A 400 with a fault_message naming each of @names."""
        st, b = self.req(method, path, body, raw)
        assert st == 400, (method, path, body, st, b)
        assert set(b) == {"fault_message"}, b
        for n in names:
            assert n in b["fault_message"], (n, b)
        return b["fault_message"]

    def state(self):
        st, b = self.req("GET", "/")
        assert st == 200, b
        return b["state"]


@pytest.fixture
def fc(rundir, tmp_path):
    made = []

    def make(name="fc", env=None):
        g = FcKhyve(rundir, str(tmp_path / (name + ".sock")), name, env)
        made.append(g)
        return g

    yield make
    for g in made:
        g.stop()


def curl(sock, method, path, body=None):
    """curl --unix-socket, as in Firecracker's getting-started guide."""
    cmd = ["curl", "-s", "-S", "--unix-socket", sock, "-i", "-X", method,
           "http://localhost" + path, "-H", "Accept: application/json",
           "-H", "Content-Type: application/json"]
    if body is not None:
        cmd += ["-d", json.dumps(body)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split()[1]), r.stdout


def get(g, path):
    st, b = g.req("GET", path)
    assert st == 200, (path, st, b)
    return b


def configure(g, mem=64, cpus=1, boot_args=COUNTER):
    g.ok("PUT", "/machine-config", {"vcpu_count": cpus, "mem_size_mib": mem})
    g.ok("PUT", "/boot-source", {"kernel_image_path": GUEST,
                                 "boot_args": boot_args})


def start_counter(g):
    configure(g)
    g.ok("PUT", "/actions", {"action_type": "InstanceStart"})
    assert wait_tick(g, 3), g.read()


def pause(g):
    """Pause through the API: (lowest, highest) tick the snapshot may hold
    (a line cut by the pause finishes only in the restored copy)."""
    lo = last_tick(g)
    g.ok("PATCH", "/vm", {"state": "Paused"})
    assert g.state() == "Paused"
    return lo, last_tick(g)


def create(g, tmp_path, name, kind="Full"):
    snap, mem = str(tmp_path / name), str(tmp_path / (name + ".mem"))
    g.ok("PUT", "/snapshot/create", {"snapshot_type": kind,
                                     "snapshot_path": snap,
                                     "mem_file_path": mem})
    return snap, mem


def load(g, snap, mem, resume=True):
    g.ok("PUT", "/snapshot/load", {
        "snapshot_path": snap, "resume_vm": resume,
        "mem_backend": {"backend_type": "File", "backend_path": mem}})


# ---- the getting-started sequence, with curl ----

@needs_kvm
def test_getting_started_curl_boots_the_test_guest(fc, tmp_path):
    g = fc("gs")
    disk = tmp_path / "rootfs.ext4"
    disk.write_bytes(b"\0" * (1 << 20))
    seq = [
        ("PUT", "/boot-source", {"kernel_image_path": GUEST,
                                 "boot_args": COUNTER + " pci=off"}),
        ("PUT", "/drives/rootfs", {"drive_id": "rootfs",
                                   "path_on_host": str(disk),
                                   "is_root_device": True,
                                   "is_read_only": False}),
        ("PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 64}),
        ("PUT", "/entropy", {}),
        ("PUT", "/actions", {"action_type": "InstanceStart"}),
    ]
    for m, p, b in seq:
        st, out = curl(g.sock, m, p, b)
        assert st == 204, out
    assert wait_tick(g, 3), g.read()
    st, out = curl(g.sock, "GET", "/")
    info = json.loads(out[out.index("{"):])
    assert st == 200 and info["state"] == "Running" and info["id"] == "gs"
    # What the API built is what the command line would have: the root
    # drive first, the entropy device, Firecracker's root= added and its
    # pci=off dropped (khyve's devices are PCI).
    s = json.loads(g.ctl("status", "gs", "--json").stdout)
    assert s["vcpus"] == 2 and s["memory"] == 64 << 20, s
    devs = [(d["slot"], d["emulation"], d["conf"]) for d in s["devices"]]
    assert (1, "virtio-blk", str(disk)) in devs, devs
    assert (2, "virtio-rng", "") in devs, devs
    st, out = curl(g.sock, "GET", "/machine-config")
    mc = json.loads(out[out.index("{"):])
    assert (mc["vcpu_count"], mc["mem_size_mib"]) == (2, 64), mc
    n = last_tick(g)
    assert wait_tick(g, n + 3), g.read()
    # with seccomp on, every thread is filtered, libmicrohttpd's (the
    # control role, from its first request) too
    if os.environ.get("KHYVE_SECCOMP", "kill") != "off":
        for t in os.listdir("/proc/%d/task" % g.proc.pid):
            with open("/proc/%d/task/%s/status" % (g.proc.pid, t)) as f:
                assert "\nSeccomp:\t2\n" in f.read(), t


@needs_kvm
def test_getting_started_curl_boots_linux(fc, tmp_path):
    """Debian's stock kernel through the guide's calls, judged by what it
    prints early (its emulated init is slow on kvm_pvm): it runs, under
    KVM, with the command line the docs describe - Firecracker's boot
    arguments without pci=off, and the root= Firecracker adds."""
    from test_linux import stock_kernel
    kernel, why = stock_kernel()
    if not kernel:
        pytest.skip(why)
    g = fc("linux")
    disk = tmp_path / "rootfs.ext4"
    disk.write_bytes(b"\0" * (1 << 20))
    # earlyprintk: on kvm_pvm the emulated early boot takes minutes
    # before the serial driver would flush the log (measured: the first
    # line ~3 min after the start on a loaded host).
    args = "console=ttyS0 earlyprintk=serial,ttyS0 reboot=k panic=1 pci=off"
    for m, p, b in [
            ("PUT", "/boot-source", {"kernel_image_path": kernel,
                                     "boot_args": args}),
            ("PUT", "/drives/rootfs", {"drive_id": "rootfs",
                                       "path_on_host": str(disk),
                                       "is_root_device": True,
                                       "is_read_only": True}),
            ("PUT", "/machine-config", {"vcpu_count": 1,
                                        "mem_size_mib": 256}),
            ("PUT", "/actions", {"action_type": "InstanceStart"})]:
        st, out = curl(g.sock, m, p, b)
        assert st == 204, out
    from test_linux import BOOT_TIMEOUT
    assert g.wait_for("Hypervisor detected: KVM", BOOT_TIMEOUT), \
        g.read()[-3000:]
    out = g.read()
    assert re.search(r"Linux version 6\.\d+", out), out[-3000:]
    cmd = re.search(r"Command line: ([^\n]*)", out)
    assert cmd, out[-3000:]
    words = cmd.group(1).split()
    assert "pci=off" not in words, cmd.group(0)
    # (khyve's CPU policy may add its words after them on kvm_pvm)
    i = words.index("root=/dev/vda")
    assert words[i + 1] == "ro" and i > words.index("panic=1"), cmd.group(0)
    assert "console=ttyS0" in words and "panic=1" in words, cmd.group(0)
    assert g.state() == "Running"


def test_command_line_and_signal_before_boot(rundir, tmp_path):
    """--api-sock takes no machine options, --id needs it; a signal before
    any start ends khyve with status 1 and removes its socket."""
    sock = str(tmp_path / "s.sock")
    for args, msg in [
            (["--api-sock", sock, "-k", GUEST], "come through the API"),
            (["--api-sock", sock, "-c", "2"], "come through the API"),
            (["--api-sock", sock, "vmname"], "--id"),
            (["--id", "x", "-k", GUEST, "vm"], "--id needs --api-sock"),
            (["--api-sock", sock, "--id", ".bad"], "--id .bad")]:
        r = subprocess.run([KHYVE, "--rundir", rundir] + args,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 4 and msg in r.stderr, (args, r.stderr)
        assert len(r.stderr.splitlines()) == 1, r.stderr
    (tmp_path / "file").write_text("x")
    r = subprocess.run([KHYVE, "--rundir", rundir, "--api-sock",
                        str(tmp_path / "file")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 4 and "not a socket" in r.stderr, r.stderr
    g = FcKhyve(rundir, sock, "sig")
    assert g.state() == "Not started"
    g.proc.terminate()
    assert g.proc.wait(60) == 1
    assert not os.path.exists(sock)


# ---- snapshots ----

@needs_kvm
def test_pause_create_then_fresh_khyve_loads_and_continues(fc, tmp_path,
                                                          guest_factory):
    g = fc("orig")
    start_counter(g)
    lo, hi = pause(g)
    snap, mem = create(g, tmp_path, "snap")
    # The pair khyvectl writes: verify and info read it.
    r = subprocess.run([KHYVECTL, "snapshot", "verify", snap],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    g.ok("PATCH", "/vm", {"state": "Resumed"})
    assert wait_tick(g, hi + 3), g.read()
    g.stop()

    c = fc("clone")
    assert c.state() == "Not started"
    load(c, snap, mem)
    assert c.state() == "Running"
    check_continues(c, lo, upto=hi)
    c.stop()

    # ... and khyve -r restores the same pair.
    r = guest_factory(["-r", snap], name="viar")
    check_continues(r, lo, upto=hi)


@needs_kvm
def test_load_paused_then_resume(fc, tmp_path):
    g = fc("orig")
    start_counter(g)
    lo, hi = pause(g)
    snap, mem = create(g, tmp_path, "snap")
    g.stop()
    c = fc("clone")
    # The older form: mem_file_path, resume_vm left out (false).
    c.ok("PUT", "/snapshot/load", {"snapshot_path": snap,
                                   "mem_file_path": mem})
    assert c.state() == "Paused"
    c.fault("PUT", "/actions", {"action_type": "InstanceStart"})
    c.ok("PATCH", "/vm", {"state": "Resumed"})
    assert c.state() == "Running"
    check_continues(c, lo, upto=hi)


@needs_kvm
def test_diff_after_full_restores_the_same_state(fc, tmp_path):
    g = fc("orig")
    start_counter(g)
    pause(g)
    create(g, tmp_path, "full")
    g.ok("PATCH", "/vm", {"state": "Resumed"})
    assert wait_tick(g, last_tick(g) + 4), g.read()
    lo, hi = pause(g)
    diff = create(g, tmp_path, "diff", "Diff")
    # The same paused point, saved whole: the reference.
    ref = create(g, tmp_path, "ref")
    g.stop()
    info = subprocess.run([KHYVECTL, "snapshot", "info", "--json", diff[0]],
                          capture_output=True, text=True, timeout=60)
    assert info.returncode == 0, info.stderr
    assert "full" in info.stdout, info.stdout  # names its parent
    firsts = []
    for name, (snap, mem) in (("fromdiff", diff), ("fromref", ref)):
        c = fc(name)
        load(c, snap, mem)
        check_continues(c, lo, upto=hi)
        firsts.append(ticks(c.read())[:3])
        c.stop()
    assert firsts[0] == firsts[1], firsts


@needs_kvm
def test_live_snapshot_extension(fc, tmp_path):
    g = fc("orig")
    start_counter(g)
    snap, mem = str(tmp_path / "live"), str(tmp_path / "live.mem")
    body = {"snapshot_path": snap, "mem_file_path": mem}
    g.fault("PUT", "/snapshot/create", body, names=("pause",))
    assert not os.path.exists(snap)
    lo = last_tick(g)
    g.ok("PUT", "/snapshot/create", dict(body, khyve_live=True))
    assert g.state() == "Running"
    hi = last_tick(g)
    assert wait_tick(g, hi + 3), g.read()
    g.stop()
    c = fc("clone")
    load(c, snap, mem)
    check_continues(c, lo, upto=hi + 1)


@needs_kvm
def test_logger_and_metrics(fc, tmp_path):
    g = fc("lm")
    log, met = tmp_path / "khyve.log", tmp_path / "metrics.json"
    g.ok("PUT", "/logger", {"log_path": str(log), "level": "debug",
                            "show_level": True, "show_log_origin": False})
    g.fault("PUT", "/logger", {"level": "Loud"}, names=("Loud",))
    g.fault("PUT", "/actions", {"action_type": "FlushMetrics"},
            names=("metrics",))
    g.ok("PUT", "/metrics", {"metrics_path": str(met)})
    g.fault("PUT", "/metrics", {"metrics_path": str(met)},
            names=("Reinitialization",))
    g.ok("PUT", "/actions", {"action_type": "FlushMetrics"})
    start_counter(g)
    g.ok("PATCH", "/vm", {"state": "Paused"})
    g.ok("PATCH", "/vm", {"state": "Resumed"})
    g.ok("PUT", "/actions", {"action_type": "FlushMetrics"})
    g.fault("PUT", "/metrics", {"metrics_path": str(met)},
            names=("after starting",))
    lines = [json.loads(l) for l in met.read_text().splitlines()]
    assert len(lines) == 2, lines
    assert lines[0]["khyve"] == {"state": "not started"}, lines[0]
    st = lines[1]["khyve"]["stats"]
    assert lines[1]["khyve"]["state"] == "started"
    assert st["vcpus"][0]["exits_total"] > 0, st
    assert lines[0]["utc_timestamp_ms"] <= lines[1]["utc_timestamp_ms"]
    assert abs(lines[1]["utc_timestamp_ms"] / 1000 - time.time()) < 600
    # khyve's own log lines went to log_path at debug level (the pause).
    text = log.read_text()
    assert "khyve: debug: paused in" in text, text
    assert g.proc.poll() is None


# ---- SendCtrlAltDel: the keys on the i8042, the guest's own reaction ----

SET1 = [0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d]
SET2 = [0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14]


@needs_kvm
@pytest.mark.parametrize("xlate,codes", [(1, SET1), (0, SET2)],
                         ids=["translated", "set2"])
def test_send_ctrl_alt_del_resets_the_guest(fc, xlate, codes):
    """The guest's "kbd" mode reads the i8042 as a driver does and prints
    every byte with the 8259's IRQ 1 bit; on Ctrl+Alt+Del it resets
    through the i8042 (Linux's reboot=k), and khyve exits 0 as Firecracker
    does when its guest resets. Translated (the power-on command byte):
    set 1 codes; translation off: the keyboard's set 2."""
    g = fc("cad%d" % xlate)
    g.fault("PUT", "/actions", {"action_type": "SendCtrlAltDel"},
            names=("SendCtrlAltDel", "before starting"))
    configure(g, boot_args="kbd kbd_xlate=%d" % xlate)
    g.ok("PUT", "/actions", {"action_type": "InstanceStart"})
    assert g.wait_for("KHYVE-KBD ready set=%d irq1=0" % (2 - xlate), 60), \
        g.read()
    if xlate:
        # Paused, the keys wait in the controller until the guest runs.
        g.ok("PATCH", "/vm", {"state": "Paused"})
        g.ok("PUT", "/actions", {"action_type": "SendCtrlAltDel"})
        time.sleep(0.2)
        assert g.proc.poll() is None and "byte=" not in g.read(), g.read()
        g.ok("PATCH", "/vm", {"state": "Resumed"})
    else:
        g.ok("PUT", "/actions", {"action_type": "SendCtrlAltDel"})
    assert g.proc.wait(60) == 0, g.read()
    out = g.read()
    got = [(int(b, 16), int(i)) for b, i in
           re.findall(r"KHYVE-KBD byte=0x([0-9a-f]+) irq1=(\d)", out)]
    # Reset at Delete's make code: the bytes up to it, each with IRQ 1.
    want = codes[:codes.index(0x53 if xlate else 0x71) + 1]
    assert got == [(c, 1) for c in want], out
    assert "KHYVE-KBD ctrl-alt-del: reset" in out, out
    assert "still running" not in out, out


# ---- GET /vm/config, /version; the PATCH endpoints; metrics ----

@needs_kvm
def test_vm_config_version_and_patches(fc, tmp_path):
    g = fc("cfg")
    with open(EXCERPT) as f:
        version = json.load(f)["source"]["version"]
    assert get(g, "/version") == {"firecracker_version": version}
    assert get(g, "/vm/config") == {
        "machine-config": {"vcpu_count": 1, "mem_size_mib": 128,
                           "smt": False, "track_dirty_pages": False,
                           "huge_pages": "None"},
        "drives": [], "network-interfaces": []}
    disk = tmp_path / "root.img"
    disk.write_bytes(b"\0" * (1 << 20))
    log, met = str(tmp_path / "log"), str(tmp_path / "metrics")
    logger = {"log_path": log, "level": "Info", "show_level": True}
    g.ok("PUT", "/logger", logger)
    g.ok("PUT", "/metrics", {"metrics_path": met})
    g.ok("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64})
    # PATCH: pre-boot, only the fields given change.
    g.ok("PATCH", "/machine-config", {"vcpu_count": 2})
    g.fault("PATCH", "/machine-config", {"vcpu_count": "2"},
            names=("`vcpu_count`", "integer"))
    g.fault("PATCH", "/machine-config", {"smt": True}, names=("smt",))
    g.fault("PATCH", "/machine-config", {"mem_size_mib": 1},
            names=("mem_size_mib",))
    assert get(g, "/machine-config")["vcpu_count"] == 2
    g.ok("PATCH", "/machine-config", {"mem_size_mib": 48})
    g.ok("PUT", "/boot-source", {"kernel_image_path": GUEST,
                                 "boot_args": COUNTER})
    drive = {"drive_id": "rootfs", "path_on_host": str(disk),
             "is_root_device": True, "is_read_only": False,
             "partuuid": "0eaa91a0-01", "cache_type": "Writeback",
             "io_engine": "Sync"}
    g.ok("PUT", "/drives/rootfs", drive)
    g.ok("PUT", "/entropy", {})
    # Post-boot only.
    g.fault("PATCH", "/drives/rootfs", {"drive_id": "rootfs"},
            names=("before starting",))
    g.fault("PATCH", "/network-interfaces/n", {"iface_id": "n"},
            names=("before starting",))
    want = {
        "machine-config": {"vcpu_count": 2, "mem_size_mib": 48,
                           "smt": False, "track_dirty_pages": False,
                           "huge_pages": "None"},
        "boot-source": {"kernel_image_path": GUEST, "boot_args": COUNTER},
        "drives": [drive], "network-interfaces": [], "entropy": {},
        "logger": logger, "metrics": {"metrics_path": met}}
    assert get(g, "/vm/config") == want
    g.ok("PUT", "/actions", {"action_type": "InstanceStart"})
    assert wait_tick(g, 2), g.read()
    s = json.loads(g.ctl("status", "cfg", "--json").stdout)
    assert s["vcpus"] == 2 and s["memory"] == 48 << 20, s
    assert get(g, "/vm/config") == want
    g.fault("PATCH", "/machine-config", {"vcpu_count": 1},
            names=("after starting",))
    # PATCH /drives: no change asked is no change; a new backing file and
    # rate limiters are refused by name; an unknown drive is named.
    g.ok("PATCH", "/drives/rootfs", {"drive_id": "rootfs"})
    for body, name in [
            ({"path_on_host": str(disk)}, "path_on_host"),
            ({"rate_limiter": {}}, "rate_limiter")]:
        msg = g.fault("PATCH", "/drives/rootfs",
                      dict(body, drive_id="rootfs"), names=(name,))
        assert "not supported" in msg, msg
    g.fault("PATCH", "/drives/other", {"drive_id": "other"},
            names=("no drive `other`",))
    g.fault("PATCH", "/drives/rootfs", {"drive_id": "x"},
            names=("does not match",))
    g.fault("PATCH", "/drives/rootfs", {"drive_id": "rootfs",
                                        "is_read_only": True},
            names=("unknown field `is_read_only`",))
    msg = g.fault("PATCH", "/network-interfaces/n",
                  {"iface_id": "n", "tx_rate_limiter": {}},
                  names=("tx_rate_limiter",))
    assert "not supported" in msg, msg
    g.fault("PATCH", "/network-interfaces/n", {"iface_id": "n"},
            names=("no network interface `n`",))
    assert get(g, "/vm/config") == want
    n = last_tick(g)
    assert wait_tick(g, n + 2), g.read()


@needs_kvm
def test_metrics_periodic_and_in_firecrackers_layout(fc, tmp_path):
    """KHYVE_FC_METRICS_PERIOD_MS shortens Firecracker's 60 s period. The
    guest reads and writes its root drive and reads the entropy device
    (tests=vblk,vrng): their counters come out under Firecracker's names,
    per drive too; the request counters are the increase since the
    previous line, as Firecracker's are."""
    g = fc("met", env={"KHYVE_FC_METRICS_PERIOD_MS": "300"})
    met = tmp_path / "metrics"
    disk = tmp_path / "root.img"
    disk.write_bytes(b"\0" * (1 << 20))
    g.ok("PUT", "/metrics", {"metrics_path": str(met)})
    g.ok("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64})
    g.ok("PUT", "/boot-source", {"kernel_image_path": GUEST,
                                 "boot_args": "tests=vblk,vrng " + COUNTER})
    g.ok("PUT", "/drives/rootfs", {"drive_id": "rootfs",
                                   "path_on_host": str(disk),
                                   "is_root_device": True})
    g.fault("PUT", "/drives/bad", {"drive_id": "bad"}, names=("missing",))
    g.ok("PUT", "/entropy", {})
    g.ok("PUT", "/actions", {"action_type": "InstanceStart"})
    assert wait_tick(g, 3), g.read()
    assert "KHYVE-TEST vblk PASS" in g.read(), g.read()
    assert "KHYVE-TEST vrng PASS" in g.read(), g.read()
    g.ok("PATCH", "/vm", {"state": "Paused"})
    g.ok("PATCH", "/vm", {"state": "Resumed"})
    get(g, "/")
    g.ok("PUT", "/actions", {"action_type": "FlushMetrics"})
    # The line FlushMetrics wrote (the last that counts an action), then
    # at least one periodic line more.
    def read_lines():
        lines = [json.loads(l) for l in met.read_text().splitlines()]
        acts = [i for i, l in enumerate(lines)
                if l["put_api_requests"]["actions_count"]]
        return lines, (acts[-1] if acts else len(lines))
    t0 = time.time()
    lines, flush = read_lines()
    while time.time() < t0 + 30 and (len(lines) < 4 or
                                     flush >= len(lines) - 1):
        time.sleep(0.1)
        lines, flush = read_lines()
    assert len(lines) >= 4 and flush < len(lines) - 1, lines
    stamps = [l["utc_timestamp_ms"] for l in lines]
    assert stamps == sorted(stamps), stamps
    # The counters, summed over the lines: every request counted once.
    def total(group, key):
        return sum(l[group][key] for l in lines)
    assert total("put_api_requests", "drive_count") == 2
    assert total("put_api_requests", "drive_fails") == 1
    assert total("put_api_requests", "actions_count") == 2
    assert total("put_api_requests", "actions_fails") == 0
    assert total("put_api_requests", "metrics_count") == 1
    assert total("put_api_requests", "machine_cfg_count") == 1
    assert total("get_api_requests", "instance_info_count") == 1
    # Deltas: the FlushMetrics line has the requests before it; the
    # periodic line after it only what came since (none).
    assert lines[-1]["put_api_requests"]["actions_count"] == 0
    assert lines[flush]["latencies_us"]["pause_vm"] > 0, lines[flush]
    assert lines[flush]["latencies_us"]["resume_vm"] > 0, lines[flush]
    # Device counters under Firecracker's names (the guest's own I/O).
    for group in ("block", "block_rootfs"):
        assert total(group, "read_bytes") > 0, lines
        assert total(group, "write_bytes") > 0, lines
    assert total("block", "read_bytes") == total("block_rootfs",
                                                 "read_bytes")
    assert total("entropy", "entropy_bytes") > 0, lines
    st = lines[-1]["khyve"]["stats"]
    assert st["vcpus"][0]["exits_total"] > 0, st
    assert g.proc.poll() is None


# ---- a migration and an API snapshot exclude each other ----

def khyvectl_migrate(g, to):
    return subprocess.Popen([KHYVECTL, "--rundir", g.rundir, "--json",
                             "--vm=" + g.name, "--migrate=" + to],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@needs_kvm
def test_migration_and_api_snapshot_exclude_each_other(fc, tmp_path):
    """While `khyvectl migrate` runs (here: its destination accepted and
    never answers the HELLO), PUT /snapshot/create gets a 400 naming the
    migration; while an API snapshot is being saved, a migration is
    refused naming it. Each works once the other is over."""
    g = fc("mx")
    configure(g, mem=256, boot_args="touch_mb=200 " + COUNTER)
    g.ok("PUT", "/actions", {"action_type": "InstanceStart"})
    assert wait_tick(g, 2), g.read()
    dst = str(tmp_path / "dst.sock")
    lsn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsn.bind(dst)
    lsn.listen(1)
    lsn.settimeout(60)
    mig = khyvectl_migrate(g, "unix:" + dst)
    conn, _ = lsn.accept()  # the migration runs: it waits for our reply
    snap = {"snapshot_path": str(tmp_path / "s"),
            "mem_file_path": str(tmp_path / "s.mem"), "khyve_live": True}
    g.fault("PUT", "/snapshot/create", snap, names=("migration",))
    assert not os.path.exists(snap["snapshot_path"])
    conn.close()  # the destination goes away: the migration fails
    out, err = mig.communicate(timeout=120)
    assert mig.returncode != 0, (out, err)
    assert g.state() == "Running"
    # The reverse: a migration asked while the API saves (the guest's
    # 200 MiB take a while to write; asked until one lands inside).
    g.ok("PATCH", "/vm", {"state": "Paused"})
    seen = None
    for attempt in range(5):
        res = {}
        t = threading.Thread(target=lambda: res.update(
            r=g.req("PUT", "/snapshot/create", snap)))
        t.start()
        while t.is_alive() and not seen:
            p = khyvectl_migrate(g, "unix:" + str(tmp_path / "none.sock"))
            out, err = p.communicate(timeout=120)
            if "being saved" in out + err:
                seen = out + err
        t.join()
        st, b = res["r"]
        if st == 204 and seen:
            break
        # (a migration taken in the moment before the save began, and
        # failed at once on its missing destination, refuses the save)
        assert st == 204 or "migration" in b["fault_message"], b
    assert seen and "no migration until it ends" in seen, seen
    g.ok("PATCH", "/vm", {"state": "Resumed"})
    n = last_tick(g)
    assert wait_tick(g, n + 2), g.read()
    r = subprocess.run([KHYVECTL, "snapshot", "verify",
                        snap["snapshot_path"]],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


# ---- bad input: Firecracker's 400 and a fault_message, the VM runs on ----

def raw_exchange(sock, data, shut=False, timeout=30):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock)
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # answered (and closed) before the whole request was read
    if shut:
        s.shutdown(socket.SHUT_WR)
    s.settimeout(timeout)
    out = b""
    try:
        while b"\r\n\r\n" not in out or not out.rstrip().endswith(b"}"):
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                break
            if not d:
                break
            out += d
    finally:
        s.close()
    return out


def fault_of(resp):
    head, _, body = resp.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), resp
    return json.loads(body)["fault_message"]


def bad_requests(g, m, p, valid):
    """Malformed bodies for @m @p, whose body @valid it accepts (its first
    field is required)."""
    f, v = next(iter(valid.items()))
    g.fault(m, p, raw=json.dumps(valid)[:-1] + ",", names=("malformed JSON",))
    g.fault(m, p, raw="", names=("body",))
    g.fault(m, p, raw="[1]", names=("object",))
    g.fault(m, p, dict(valid, foo=1), names=("unknown field `foo`",))
    g.fault(m, p, dict(valid, **{f: [v]}), names=("`%s`" % f, "expected"))
    g.fault(m, p, {k: x for k, x in valid.items() if k != f},
            names=("missing", f))
    g.fault(m, p, raw='{"%s":%s,%s' % (f, json.dumps(v),
                                       json.dumps(valid)[1:]),
            names=("duplicate",))
    g.fault("GET", "/nosuch", names=("Invalid request method and/or path",))
    g.fault("DELETE", "/", names=("Invalid request method and/or path",))
    g.fault("PUT", "/actions", {"action_type": "Reboot"},
            names=("Reboot",))
    # A declared length over 1 MiB is answered from the headers (as curl
    # waits for with "Expect: 100-continue"); the body is not sent, since
    # the server closes at once and a client still sending would see a
    # reset.
    resp = raw_exchange(g.sock, b"%s %s HTTP/1.1\r\nHost: x\r\n" % (
                            m.encode(), p.encode()) +
                        b"Content-Length: %d\r\n\r\n" % ((1 << 20) + 1))
    assert "larger than the limit" in fault_of(resp)
    chunked = (b"%s %s HTTP/1.1\r\nHost: x\r\n" % (m.encode(), p.encode()) +
               b"Transfer-Encoding: chunked\r\n\r\n" +
               (b"100000\r\n" + b" " * 0x100000 + b"\r\n") * 2 +
               b"0\r\n\r\n")
    assert "larger than the limit" in fault_of(raw_exchange(g.sock, chunked))
    # What khyve does not do yet is refused by name, never a silent 204
    # (the pre-boot endpoints' fields: while they are pre-boot).
    pre = m == "PUT"
    for m, p, b, name in [
            ("PUT", "/balloon", {"amount_mib": 1, "deflate_on_oom": True},
             "/balloon"),
            ("PUT", "/vsock", {"guest_cid": 3, "uds_path": "/x"}, "/vsock"),
            ("PUT", "/mmds", {}, "/mmds"),
            ("PUT", "/mmds/config", {"network_interfaces": []},
             "/mmds/config"),
            ("PUT", "/logger", {"module": "x"}, "module"),
            ("PUT", "/drives/d", {"drive_id": "d", "is_root_device": False,
                                  "path_on_host": "/x",
                                  "rate_limiter": {}}, "rate_limiter"),
            ("PUT", "/network-interfaces/n",
             {"iface_id": "n", "host_dev_name": "tap0",
              "rx_rate_limiter": {}}, "rx_rate_limiter"),
            ("PUT", "/entropy", {"rate_limiter": {}}, "rate_limiter"),
            ("PUT", "/snapshot/load",
             {"snapshot_path": "/x", "mem_backend": {
                 "backend_type": "Uffd", "backend_path": "/x"}}, "Uffd")]:
        if not pre and (name.endswith("rate_limiter") or
                        name in ("Uffd", "module")):
            continue
        msg = g.fault(m, p, b, names=(name,))
        assert "not supported" in msg, msg


@needs_kvm
def test_bad_input_gets_400_and_the_vm_runs_on(fc, tmp_path):
    g = fc("bad")
    # Pre-boot: the post-boot-only calls, and what needs a boot first.
    g.fault("PATCH", "/vm", {"state": "Paused"}, names=("before starting",))
    g.fault("PUT", "/snapshot/create", {"snapshot_path": "/x",
                                        "mem_file_path": "/y"},
            names=("before starting",))
    g.fault("PUT", "/actions", {"action_type": "InstanceStart"},
            names=("boot-source",))
    bad_requests(g, "PUT", "/machine-config",
                 {"vcpu_count": 1, "mem_size_mib": 64})
    g.fault("PUT", "/machine-config", {"vcpu_count": 99, "mem_size_mib": 64},
            names=("vcpu_count",))
    # A missing kernel is a 400, and the API stays pre-boot for a retry.
    g.ok("PUT", "/boot-source", {"kernel_image_path": "/nonexistent"})
    g.fault("PUT", "/actions", {"action_type": "InstanceStart"},
            names=("/nonexistent",))
    assert g.state() == "Not started"
    # Boot-specific resources configured: no snapshot/load.
    g.fault("PUT", "/snapshot/load", {"snapshot_path": "/x",
                                      "mem_file_path": "/y"},
            names=("after configuring",))
    start_counter(g)
    # A slow client and a half-closed one hold nobody up.
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    slow.connect(g.sock)
    slow.sendall(b"PUT /vm HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n"
                 b"\r\n{\"sta")
    half = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    half.connect(g.sock)
    half.sendall(b"PUT /vm HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n"
                 b"\r\n{\"sta")
    half.shutdown(socket.SHUT_WR)
    # A complete request, then half-closed: answered.
    r = raw_exchange(g.sock, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", shut=True)
    assert r.startswith(b"HTTP/1.1 200") and b'"Running"' in r, r
    # Post-boot: the pre-boot-only calls and a second InstanceStart.
    after = ("after starting",)
    g.fault("PUT", "/boot-source", {"kernel_image_path": GUEST},
            names=after)
    g.fault("PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64},
            names=after)
    g.fault("PUT", "/drives/d", {"drive_id": "d", "is_root_device": False,
                                 "path_on_host": "/x"}, names=after)
    g.fault("PUT", "/snapshot/load", {"snapshot_path": "/x",
                                      "mem_file_path": "/y"}, names=after)
    g.fault("PUT", "/actions", {"action_type": "InstanceStart"},
            names=("already running",))
    g.fault("PATCH", "/vm", {"state": "Stopped"}, names=("Stopped",))
    g.fault("PATCH", "/vm", {"state": 1}, names=("state", "string"))
    bad_requests(g, "PATCH", "/vm", {"state": "Resumed"})
    # The memory file must be beside the state file it belongs to.
    g.ok("PATCH", "/vm", {"state": "Paused"})
    other = tmp_path / "elsewhere"
    other.mkdir()
    g.fault("PUT", "/snapshot/create",
            {"snapshot_path": str(tmp_path / "s"),
             "mem_file_path": str(other / "s.mem")},
            names=("directory",))
    g.ok("PATCH", "/vm", {"state": "Resumed"})
    # The slow client is dropped after its timeout (10 s): a recv returns
    # the end of the stream, the server did not hang on it.
    slow.settimeout(60)
    assert slow.recv(100) == b""
    slow.close()
    # The one half-closed in the middle of its request cannot complete
    # it: disconnected without an answer.
    half.settimeout(60)
    assert half.recv(100) == b""
    half.close()
    assert g.state() == "Running"
    n = last_tick(g)
    assert wait_tick(g, n + 3), g.read()
    assert g.proc.poll() is None


@needs_kvm
def test_load_refuses_a_memory_file_that_is_not_the_snapshots(fc, tmp_path):
    g = fc("orig")
    start_counter(g)
    pause(g)
    snap, mem = create(g, tmp_path, "snap")
    snap2, mem2 = create(g, tmp_path, "snap2")
    g.stop()
    c = fc("clone")
    c.fault("PUT", "/snapshot/load", {"snapshot_path": snap,
                                      "mem_file_path": mem2},
            names=(mem2, "snap.mem"))
    c.fault("PUT", "/snapshot/load", {"snapshot_path": snap,
                                      "mem_file_path": mem,
                                      "mem_backend": {"backend_type": "File",
                                                      "backend_path": mem}},
            names=("exactly one",))
    c.fault("PUT", "/snapshot/load", {"snapshot_path": snap},
            names=("exactly one",))
    assert c.state() == "Not started"
    load(c, snap, mem)
    assert wait_tick(c, last_tick(c) + 2), c.read()


# ---- Firecracker's OpenAPI description against khyve's bodies ----

# A body each request schema accepts the fields of (values of the right
# type; khyve may still refuse them for what they say, never as unknown).
VALID = {
    "MachineConfiguration": {"vcpu_count": 1, "mem_size_mib": 64},
    "BootSource": {"kernel_image_path": GUEST},
    "Drive": {"drive_id": "d", "is_root_device": False,
              "path_on_host": "/nonexistent"},
    "NetworkInterface": {"iface_id": "n", "host_dev_name": "tap0"},
    "EntropyDevice": {},
    "InstanceActionInfo": {"action_type": "FlushMetrics"},
    "SnapshotLoadParams": {"snapshot_path": "/nonexistent",
                           "mem_file_path": "/nonexistent"},
    "Vm": {"state": "Resumed"},
    "SnapshotCreateParams": {"snapshot_path": "/nonexistent/s",
                             "mem_file_path": "/nonexistent/m"},
    "Logger": {},
    "Metrics": {"metrics_path": "/nonexistent/m"},
}
ENDPOINT = {
    "MachineConfiguration": ("PUT", "/machine-config"),
    "BootSource": ("PUT", "/boot-source"),
    "Drive": ("PUT", "/drives/d"),
    "NetworkInterface": ("PUT", "/network-interfaces/n"),
    "EntropyDevice": ("PUT", "/entropy"),
    "InstanceActionInfo": ("PUT", "/actions"),
    "SnapshotLoadParams": ("PUT", "/snapshot/load"),
    "Vm": ("PATCH", "/vm"),
    "SnapshotCreateParams": ("PUT", "/snapshot/create"),
    "Logger": ("PUT", "/logger"),
    "Metrics": ("PUT", "/metrics"),
}
POST_BOOT = ("Vm", "SnapshotCreateParams")
# PATCH /drives, /network-interfaces (post-boot; the drive "d" exists)
PARTIAL = {
    "PartialDrive": ("PATCH", "/drives/d", {"drive_id": "d"}),
    "PartialNetworkInterface": ("PATCH", "/network-interfaces/n",
                                {"iface_id": "n"}),
}
WRONG = {"string": 1, "integer": "1", "boolean": "true", "object": [],
         "array": {}}
RIGHT = {"string": "x", "integer": 1, "boolean": False, "object": {},
         "array": []}


def check_schema(g, name, schema, right=None, where=None, required=True):
    """@right: a value of the right type for a field that names a file;
    @where: (method, path, valid body) if not ENDPOINT's and VALID's."""
    m, p, valid = where or ENDPOINT[name] + (VALID[name],)
    props = schema["properties"]
    for f in schema.get("required", []) if required else []:
        body = {k: v for k, v in valid.items() if k != f}
        msg = g.fault(m, p, body, names=("`%s`" % f,))
        assert "missing" in msg or "exactly one" in msg, (name, f, msg)
    for f, t in props.items():
        g.fault(m, p, dict(valid, **{f: WRONG[t]}), names=("`%s`" % f,))
        st, b = g.req(m, p, dict(valid, **{f: (right or {}).get(
            f, RIGHT[t])}))
        assert st in (204, 400), (name, f, st, b)
        if st == 400:
            assert "unknown field" not in b["fault_message"], (name, f, b)
    g.fault(m, p, dict(valid, no_such_field=1),
            names=("unknown field `no_such_field`",))


def check_response(defs, name, body):
    """@body has @name's required fields and only its fields, each of its
    type."""
    d = defs[name]
    for f in d.get("required", []):
        assert f in body, (name, f, body)
    for f, v in body.items():
        assert f in d["properties"], (name, f)
        want = RIGHT[d["properties"][f]]
        assert type(v) is type(want), (name, f, v)


def check_full_config(defs, body):
    """GET /vm/config against FullVmConfiguration: its keys, and each
    value against the definition it refers to."""
    props = defs["FullVmConfiguration"]["properties"]
    for k, v in body.items():
        assert k in props, k
        ref = props[k]
        if "array_of" in ref:
            assert isinstance(v, list), (k, v)
            for item in v:
                check_response(defs, ref["array_of"], item)
        else:
            check_response(defs, ref["$ref"], v)


@needs_kvm
def test_bodies_match_firecrackers_openapi(fc, tmp_path):
    with open(EXCERPT) as f:
        spec = json.load(f)
    assert spec["source"]["version"], spec["source"]
    defs = spec["definitions"]
    g = fc("spec")
    # Responses: the fields, their types and the required ones.
    for path, name in (("/", "InstanceInfo"),
                       ("/machine-config", "MachineConfiguration")):
        st, b = g.req("GET", path)
        assert st == 200, b
        for f in defs[name].get("required", []):
            assert f in b, (name, f, b)
        for f, v in b.items():
            assert f in defs[name]["properties"], (name, f)
            want = RIGHT[defs[name]["properties"][f]]
            assert type(v) is type(want), (name, f, v)
    check_response(defs, "FirecrackerVersion", get(g, "/version"))
    st, b = g.req("GET", "/nosuch")
    assert set(b) == set(defs["Error"]["properties"]), b
    # Requests, pre-boot ones on a fresh instance (each probe leaves at
    # most a pre-boot setting behind), then the post-boot ones.
    files = {"log_path": str(tmp_path / "log"),
             "metrics_path": str(tmp_path / "metrics")}
    for name in ENDPOINT:
        if name not in POST_BOOT:
            check_schema(g, name, defs[name], files)
    # PATCH /machine-config takes MachineConfiguration, every field
    # optional (Firecracker: "a subset").
    check_schema(g, "MachineConfiguration", defs["MachineConfiguration"],
                 where=("PATCH", "/machine-config", {}), required=False)
    check_full_config(defs, get(g, "/vm/config"))
    # MemoryBackend, inside a load's body.
    mb = defs["MemoryBackend"]
    full = {"backend_type": "File", "backend_path": "/nonexistent"}
    for f in mb["required"]:
        part = {k: v for k, v in full.items() if k != f}
        g.fault("PUT", "/snapshot/load", {"snapshot_path": "/nonexistent",
                                          "mem_backend": part},
                names=("missing field `%s`" % f,))
    for f, t in mb["properties"].items():
        g.fault("PUT", "/snapshot/load", {
            "snapshot_path": "/nonexistent",
            "mem_backend": dict(full, **{f: WRONG[t]})}, names=("`%s`" % f,))
    g.stop()
    g = fc("spec2")
    disk = tmp_path / "d.img"
    disk.write_bytes(b"\0" * (1 << 20))
    g.ok("PUT", "/drives/d", {"drive_id": "d", "path_on_host": str(disk),
                              "is_root_device": False})
    g.ok("PUT", "/entropy", {})
    g.ok("PUT", "/logger", {"level": "Info"})
    g.ok("PUT", "/metrics", {"metrics_path": files["metrics_path"] + "2"})
    start_counter(g)
    for name in POST_BOOT:
        check_schema(g, name, defs[name])
    for name, where in PARTIAL.items():
        check_schema(g, name, defs[name], where=where)
    full = get(g, "/vm/config")
    assert {"boot-source", "drives", "entropy", "logger", "metrics",
            "machine-config"} <= set(full), full
    check_full_config(defs, full)
    assert g.state() == "Running"
    n = last_tick(g)
    assert wait_tick(g, n + 2), g.read()
