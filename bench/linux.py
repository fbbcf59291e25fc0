"""Linux boot milestones, khyve against QEMU on the same kernel files in
the same run: seconds from exec of the VMM to console lines that mark
how far the kernel got. Every console line is timestamped when its
newline arrives on the VMM's stdout (the 8250 console, -l com1,stdio /
-serial stdio), relative to the VMM's exec.

Part "stock": Debian's stock kernel ($BENCH_LINUX_STOCK, default
build/nested/vmlinuz, fetched by tests/nested/run.sh), 2 vCPUs, 256 MiB,
"console=ttyS0 panic=-1", no root fs. Milestones "Linux version",
"Memory:", "smp: Brought up", the root-mount panic. khyve unpacking the
bzImage on the host (default) and with --no-unpack; QEMU -M microvm and
-M pc with the bzImage (with a vmlinux extracted from it, named so in the
table, only if QEMU cannot boot the bzImage).

Part "project": the project kernel (build/linux/vmlinux, PVH ELF, and
build/linux/rootfs.ext4 from guest/linux/build.sh; $KHYVE_LINUX_DIR),
root on virtio-blk (each boot gets a fresh copy of the image), khyve_test
counter for 3 s, then power off. Milestones "Memory:", "Run /sbin/init"
(or /init), the first "khyve_test: counter" line and the VMM's exit after
the kernel printed "reboot: Power down". QEMU -M pc and -M microvm,pcie=on
(the kernel has no virtio-mmio driver) with virtio-blk-pci.

In brackets: the kernel's own printk time of that line. Medians of
BENCH_LINUX_RUNS boots (default 3); a boot that dies or times out is
reported with the milestone it did not reach and left out of the median.
BENCH_LINUX_PARTS (stock,project), BENCH_LINUX_TIMEOUT (s per boot, 600).
"""
import lzma
import os
import re
import select
import shutil
import statistics
import subprocess
import sys
import time
import zlib

from benchlib import ENV, KHYVE, ROOT, RUNDIR

RUNS = int(os.environ.get("BENCH_LINUX_RUNS", "3"))
TIMEOUT = float(os.environ.get("BENCH_LINUX_TIMEOUT", "600"))
PARTS = os.environ.get("BENCH_LINUX_PARTS", "stock,project").split(",")
STOCK = os.environ.get("BENCH_LINUX_STOCK",
                       os.path.join(ROOT, "build/nested/vmlinuz"))
LINUX_DIR = os.environ.get("KHYVE_LINUX_DIR",
                           os.path.join(ROOT, "build/linux"))
MEM = "256M"
CPUS = "2"
PRINTK = re.compile(r"\[\s*(\d+\.\d+)\]")
POWER_DOWN = "reboot: Power down"
# The last milestone of the project kernel is the VMM's own exit.
EXIT = None
# Console lines worth a note next to a boot's times (the first of each).
NOTABLE = re.compile(r"XSAVE consistency problem|WARNING: CPU|BUG:|Oops|"
                     r"general protection|Kernel panic - not syncing|"
                     r"reboot: ")

STOCK_CMDLINE = "console=ttyS0 panic=-1"
STOCK_MARKS = [
    ("Linux version", re.compile(r"Linux version \d")),
    ("Memory:", re.compile(r"\] Memory: \d+K/")),
    ("smp: Brought up", re.compile(r"smp: Brought up \d+ node")),
    ("root-mount panic", re.compile(r"Kernel panic - not syncing: VFS: "
                                    r"Unable to mount root fs")),
]
PROJECT_CMDLINE = ("console=ttyS0 root=/dev/vda rw panic=-1 "
                   "khyve_test.counter=1 khyve_test.runtime=3 "
                   "khyve_test.poweroff=1")
PROJECT_MARKS = [
    ("Memory:", re.compile(r"\] Memory: \d+K/")),
    ("Run init", re.compile(r"Run /(sbin/)?init as init process")),
    ("first counter", re.compile(r"khyve_test: counter \d+")),
    ("powered off (VMM exit)", EXIT),
]


class Boot:
    """One VMM process; its stdout lines timed from exec."""

    def __init__(self, argv, errpath):
        self.argv = argv
        self.errpath = errpath
        with open(errpath, "wb") as err:
            self.t0 = time.monotonic()
            self.p = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                      stderr=err, stdin=subprocess.DEVNULL)
        self.lines = []  # (seconds since exec, text)
        self.exit_t = None

    def run(self, marks, timeout):
        """Until every milestone is seen, the VMM exits or @timeout.
        Returns ({milestone: (seconds, printk seconds or None)}, why it
        stopped: "ok", "exited N" or "timeout")."""
        got = {}
        buf = b""
        fd = self.p.stdout.fileno()
        end = self.t0 + timeout
        why = "timeout"
        while True:
            if all(name in got for name, _ in marks):
                why = "ok"
                break
            left = end - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not r:
                continue
            data = os.read(fd, 65536)
            now = time.monotonic() - self.t0
            if not data:
                # EOF: the VMM closed its stdout, i.e. exited.
                try:
                    rc = self.p.wait(30)
                except subprocess.TimeoutExpired:
                    rc = None
                self.exit_t = now
                if any(POWER_DOWN in l for _, l in self.lines):
                    for name, rx in marks:
                        if rx is EXIT:
                            got[name] = (now, None)
                why = "ok" if all(n in got for n, _ in marks) \
                    else "exited %s" % rc
                break
            buf += data.replace(b"\r", b"")
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                line = raw.decode(errors="replace")
                self.lines.append((now, line))
                for name, rx in marks:
                    if name not in got and rx is not EXIT and \
                            rx.search(line):
                        m = PRINTK.search(line)
                        got[name] = (now, float(m.group(1)) if m else None)
        self.stop()
        return got, why

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
        try:
            self.p.wait(30)
        except subprocess.TimeoutExpired:
            sys.stderr.write("bench: pid %d did not die after SIGKILL\n"
                             % self.p.pid)

    def notes(self):
        seen, out = set(), []
        for t, l in self.lines:
            m = NOTABLE.search(l)
            if m and m.group(0) not in seen:
                seen.add(m.group(0))
                out.append("%.1f s: %s" % (t, l.strip()[:100]))
        return out

    def tail(self, n=8):
        out = [l for _, l in self.lines[-n:]]
        try:
            with open(self.errpath, errors="replace") as f:
                err = f.read().strip().splitlines()[-n:]
        except OSError:
            err = []
        return out, err


def extract_vmlinux(bzimage, out):
    """The ELF inside a bzImage (xz or gzip payload), for a VMM that cannot
    take the bzImage itself."""
    with open(bzimage, "rb") as f:
        data = f.read()
    for magic in (b"\xfd7zXZ\x00", b"\x1f\x8b\x08"):
        off = data.find(magic)
        while off >= 0:
            try:
                if magic[0] == 0xfd:
                    elf = lzma.LZMADecompressor().decompress(data[off:])
                else:
                    elf = zlib.decompressobj(31).decompress(data[off:])
            except (lzma.LZMAError, zlib.error):
                elf = b""
            if elf[:4] == b"\x7fELF":
                with open(out, "wb") as f:
                    f.write(elf)
                return out
            off = data.find(magic, off + 1)
    return None


def khyve(name, kernel, cmdline, extra=()):
    return [KHYVE, "--rundir", RUNDIR, "-c", CPUS, "-m", MEM, "-k", kernel,
            "-a", cmdline, "-l", "com1,stdio"] + list(extra) + [name]


def qemu(machine, kernel, cmdline, extra=()):
    # -no-reboot: the stock kernel's panic=-1 reboot ends QEMU instead of
    # booting again; -nodefaults: no VGA/NIC the khyve machine lacks.
    return ["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-M",
            machine, "-smp", CPUS, "-m", MEM, "-nographic", "-nodefaults",
            "-no-reboot", "-serial", "stdio", "-kernel", kernel,
            "-append", cmdline] + list(extra)


def boot(label, argv, marks, disk=None):
    """One boot; @disk (src, copy) gets a fresh copy of the image first."""
    if disk:
        shutil.copyfile(disk[0], disk[1])
    b = Boot(argv, os.path.join(RUNDIR, "linux-vmm.err"))
    try:
        got, why = b.run(marks, TIMEOUT)
    finally:
        b.stop()
        if disk:
            os.unlink(disk[1])
    reached = [n for n, _ in marks if n in got]
    missing = [n for n, _ in marks if n not in got]
    desc = ", ".join("%s %.1f" % (n, got[n][0]) for n in reached)
    print("  %-34s %s%s" % (label, desc or "nothing", "" if why == "ok"
                             else "  <- %s" % why), flush=True)
    for n in b.notes():
        print("    console %s" % n)
    if missing:
        out, err = b.tail()
        where = ("after '%s'" % reached[-1]) if reached else "before any"
        how = ("timed out after %.0f s" % TIMEOUT) if why == "timeout" \
            else "VMM %s" % why
        print("    never reached '%s' (%s, %s milestone); last console "
              "lines:" % (missing[0], how, where))
        for l in out:
            print("      | %s" % l[:150])
        print("    VMM stderr: %r" % err[-3:], flush=True)
    return got, why


def table(title, marks, rows, results, pairs):
    names = [n for n, _ in marks]
    print()
    print("== %s (seconds from exec, [printk time]; median of %d; %s) =="
          % (title, RUNS, ENV))
    w = max([len(r[0]) for r in rows] +
            [len("%s / %s" % p) for p in pairs]) + 2
    print("%-*s" % (w, "VMM") + "".join("%-24s" % n for n in names))
    med = {}
    for label, _ in rows:
        cells = []
        for n in names:
            ts = [g[n][0] for g in results[label] if n in g]
            ks = [g[n][1] for g in results[label]
                  if n in g and g[n][1] is not None]
            if ts:
                med[label, n] = statistics.median(ts)
                c = "%.1f" % med[label, n]
                if ks:
                    c += " [%.1f]" % statistics.median(ks)
                if len(ts) < len(results[label]):
                    c += " (%d/%d)" % (len(ts), len(results[label]))
            else:
                c = "not reached"
            cells.append("%-24s" % c)
        print("%-*s" % (w, label) + "".join(cells))
    print("ratios khyve/QEMU per milestone:")
    for a, b in pairs:
        if a not in results or b not in results:
            continue
        r = []
        for n in names:
            if (a, n) in med and (b, n) in med and med[b, n] > 0:
                r.append("%-24s" % ("%.2fx" % (med[a, n] / med[b, n])))
            else:
                r.append("%-24s" % "-")
        print("%-*s" % (w, "%s / %s" % (a, b)) + "".join(r))
    return med


def run_part(title, marks, rows, pairs, disk_src=None):
    """@rows: [label, argv or argv builder(copy path), fallback or None];
    boots each row once per round so khyve and QEMU share the machine's
    state. A row whose VMM exits without printing a milestone switches to
    its fallback [label, argv] for good (the stock bzImage for QEMU)."""
    results = {}
    print("== %s: %d round(s), %s ==" % (title, RUNS, ENV), flush=True)
    for i in range(RUNS):
        print("round %d:" % (i + 1), flush=True)
        for row in rows:
            while True:
                label, argv = row[0], row[1]
                disk = None
                if disk_src:
                    copy = os.path.join(RUNDIR, "linux-root.img")
                    disk = (disk_src, copy)
                    argv = argv(copy)
                got, why = boot(label, argv, marks, disk)
                if not got and why.startswith("exited") and row[2] and \
                        label not in results:
                    fb = row[2]()
                    print("    %s: falling back to %s" % (label, fb[0]))
                    row[:] = [fb[0], fb[1], None]
                    continue
                results.setdefault(label, []).append(got)
                break
    labels = [r[0] for r in rows]
    pairs = [(a, b) for a, b in pairs if a in labels]
    pairs += [(a, b) for a in labels if a.startswith("khyve")
              for b in labels if not b.startswith("khyve")
              and (a, b) not in pairs]
    return table(title, marks, [(r[0], None) for r in rows], results,
                 pairs), results


def stock_part():
    if not os.path.isfile(STOCK):
        print("stock kernel: %s missing (tests/nested/run.sh fetches it); "
              "skipped" % STOCK)
        return None

    def extracted(m):
        def fb():
            vml = os.path.join(RUNDIR, "vmlinux")
            if not os.path.exists(vml) and not extract_vmlinux(STOCK, vml):
                return ["qemu -M %s (bzImage; no vmlinux found in it)" % m,
                        qemu(m, STOCK, STOCK_CMDLINE)]
            return ["qemu -M %s (vmlinux extracted)" % m,
                    qemu(m, vml, STOCK_CMDLINE)]
        return fb
    rows = [
        ["khyve (host unpack)", khyve("lx-stock", STOCK, STOCK_CMDLINE),
         None],
        ["khyve --no-unpack", khyve("lx-stock", STOCK, STOCK_CMDLINE,
                                    ["--no-unpack"]), None],
        ["qemu -M microvm (bzImage)", qemu("microvm", STOCK, STOCK_CMDLINE),
         extracted("microvm")],
        ["qemu -M pc (bzImage)", qemu("pc", STOCK, STOCK_CMDLINE),
         extracted("pc")],
    ]
    return run_part("Debian stock kernel %s, %s vCPUs, %s, '%s'"
                    % (os.path.basename(os.path.realpath(STOCK)), CPUS, MEM,
                       STOCK_CMDLINE), STOCK_MARKS, rows, [])


def project_part():
    vmlinux = os.path.join(LINUX_DIR, "vmlinux")
    rootfs = os.path.join(LINUX_DIR, "rootfs.ext4")
    if not (os.path.isfile(vmlinux) and os.path.isfile(rootfs)):
        print("project kernel: %s or %s missing (guest/linux/build.sh); "
              "skipped" % (vmlinux, rootfs))
        return None

    def blk(copy):
        return ["-drive", "file=%s,if=none,format=raw,id=d0" % copy,
                "-device", "virtio-blk-pci,drive=d0,disable-legacy=on"]
    rows = [
        ["khyve", lambda c: khyve("lx-proj", vmlinux, PROJECT_CMDLINE,
                                  ["-s", "2,virtio-blk,%s" % c]), None],
        ["qemu -M pc", lambda c: qemu("pc", vmlinux, PROJECT_CMDLINE,
                                      blk(c)), None],
        ["qemu -M microvm,pcie=on", lambda c: qemu(
            "microvm,pcie=on", vmlinux, PROJECT_CMDLINE, blk(c)), None],
    ]
    pairs = [("khyve", "qemu -M pc"), ("khyve", "qemu -M microvm,pcie=on")]
    return run_part("project kernel (PVH vmlinux, root on virtio-blk), %s "
                    "vCPUs, %s, '%s'" % (CPUS, MEM, PROJECT_CMDLINE),
                    PROJECT_MARKS, rows, pairs, rootfs)


def main():
    os.makedirs(RUNDIR, exist_ok=True)
    ok = True
    for part, fn in (("stock", stock_part), ("project", project_part)):
        if part not in PARTS:
            continue
        res = fn()
        if res is None:
            ok = False
            continue
        med, results = res
        # Fails only when khyve itself never got to its last milestone.
        last = (STOCK_MARKS if part == "stock" else PROJECT_MARKS)[-1][0]
        if not any(k[1] == last for k in med if k[0].startswith("khyve")):
            ok = False
        print(flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
