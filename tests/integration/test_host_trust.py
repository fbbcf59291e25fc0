"""khyve against a hostile host side and a sloppy or hostile client (issue
13): the run directory and lock file it will not trust, a console socket it
will not take over, control requests it checks in full, idle connections
it closes. Needs /dev/kvm for the parts that start a guest."""
import json
import os
import socket
import subprocess
import time

from conftest import GUEST, KHYVE, needs_kvm


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=60,
                          **kw)


def khyve_argv(rundir, *extra, name="vm"):
    return [KHYVE, "--rundir", rundir, "-m", "64M", "-k", GUEST,
            "-a", "counter interval_ms=50", "-l", "com1,null"] + \
        list(extra) + [name]


def test_rundir_writable_by_others_is_refused(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    os.chmod(str(d), 0o777)
    r = run(khyve_argv(str(d)))
    assert r.returncode == 4, r.stderr
    assert str(d) in r.stderr and "writable by group or others" in r.stderr
    assert os.listdir(str(d)) == []


def test_planted_lock_symlink_is_not_followed(tmp_path):
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.symlink(str(victim), str(d / "vm.lock"))
    r = run(khyve_argv(str(d)))
    assert r.returncode == 4, r.stderr
    assert "symbolic link" in r.stderr, r.stderr
    assert victim.read_text() == "precious\n"


@needs_kvm
def test_console_socket_in_use_is_not_taken_over(tmp_path):
    path = str(tmp_path / "console.sock")
    other = socket.socket(socket.AF_UNIX)
    other.bind(path)
    other.listen(1)
    try:
        argv = khyve_argv(str(tmp_path / "run"))
        argv[argv.index("com1,null")] = "com1,socket:" + path
        r = run(argv)
        assert r.returncode == 4, r.stderr
        assert "console socket %s is in use" % path in r.stderr, r.stderr
        # Still the other process's socket, still answering.
        c = socket.socket(socket.AF_UNIX)
        c.connect(path)
        c.close()
    finally:
        other.close()


def request(f, req):
    f.write(json.dumps(req).encode() + b"\n")
    f.flush()
    return json.loads(f.readline())


@needs_kvm
def test_checkpoint_arguments_are_checked(tmp_path):
    rundir = str(tmp_path / "run")
    p = subprocess.Popen(khyve_argv(rundir), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        sock = os.path.join(rundir, "vm.sock")
        for _ in range(300):
            if os.path.exists(sock):
                break
            time.sleep(0.1)
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(60)
        s.connect(sock)
        f = s.makefile("rwb")
        assert "khyve" in json.loads(f.readline())
        snap = str(tmp_path / "s.snap")
        for args, key in (({"file": snap, "fsync": "no"}, "'fsync'"),
                          ({"file": snap, "live": 1}, "'live'"),
                          ({"file": snap, "compress": "zstd"},
                           "'compress'")):
            r = request(f, {"id": 1, "cmd": "checkpoint", "args": args})
            assert r["error"]["code"] == "bad_request", r
            assert key in r["error"]["message"], r
        r = request(f, {"id": 2, "cmd": "poweroff", "arg": {"force": True}})
        assert r["error"]["code"] == "bad_request", r
        assert not os.path.exists(snap)
        assert p.poll() is None
        # A well-formed one still works.
        r = request(f, {"id": 3, "cmd": "checkpoint",
                        "args": {"file": snap, "fsync": False,
                                 "live": False}})
        assert r.get("ok") is True, r
        assert os.path.exists(snap)
        s.close()
    finally:
        p.kill()
        p.wait(30)
