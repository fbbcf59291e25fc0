"""pytest plugin for runs inside the nested machine (tests/nested/run.sh
loads it into any pytest the command starts, through PYTEST_PLUGINS):
each test's start and end become a line on the console,

    @@nested-test start tests/integration/test_x.py::test_y
    @@nested-test end tests/integration/test_x.py::test_y

written straight to KHYVE_NESTED_TRACE (/dev/console there), past pytest's
output capture. The console is the one record that outlives a nested
kernel that panics or locks up, so run.sh can name the test that was
running when the machine died; it removes these lines from the output.
"""
import os

_fd = None


def _mark(what, nodeid):
    global _fd
    if _fd is None:
        path = os.environ.get("KHYVE_NESTED_TRACE")
        _fd = -1
        if path:
            try:
                _fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_APPEND)
            except OSError as e:
                print("nested_trace: cannot open %s: %s" % (path, e))
    if _fd < 0:
        return
    try:
        os.write(_fd, ("@@nested-test %s %s\n" % (what, nodeid)).encode())
    except OSError:
        pass


def pytest_runtest_logstart(nodeid, location):
    _mark("start", nodeid)


def pytest_runtest_logfinish(nodeid, location):
    _mark("end", nodeid)
