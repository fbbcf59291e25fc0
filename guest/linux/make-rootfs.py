#!/usr/bin/env python3
"""Build the khyve test guest's rootfs.ext4 and initramfs.cpio.gz.

Needs no root: the ext4 image comes from `mkfs.ext4 -d DIR` and the cpio
archive (with its /dev/console node) from the kernel's gen_init_cpio.
Contents are deterministic (file data comes from SHAKE-256 of the names;
timestamps, UUID and hash seed are fixed); the initramfs is byte-for-byte
reproducible, the ext4 image is not quite (mke2fs still randomises some
inode fields).

Usage: make-rootfs.py --busybox BIN --gen-init-cpio TOOL --out DIR
Writes DIR/rootfs.ext4, DIR/rootfs.sums, DIR/initramfs.cpio.gz.
"""

import argparse
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zlib

# Fixed so two builds give byte-identical images.
EPOCH = 1700000000
FS_UUID = "6b687976-6500-4000-8000-000000000001"
HASH_SEED = "6b687976-6500-4000-8000-000000000002"
IMAGE_MB = 64

# Sizes straddle block, page and extent boundaries on purpose.
KHYVE_FILES = [
    ("empty.bin", 0),
    ("one.bin", 1),
    ("sector.bin", 511),
    ("page.bin", 4096),
    ("page-plus-one.bin", 4097),
    ("64k.bin", 65536),
    ("odd.bin", 1000003),
    ("4m.bin", 4 << 20),
    ("sub/dir/nested.bin", 12345),
]

INITTAB = """\
::sysinit:/bin/mount -t proc proc /proc
::sysinit:/bin/mount -t sysfs sysfs /sys
::sysinit:/bin/mount -o remount,rw /
::sysinit:/bin/echo "khyve rootfs"
::sysinit:/bin/pvmload spawn
::sysinit:/bin/pvmcheck
::once:/bin/pvmcheck end
::respawn:-/bin/sh
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/umount -a -r
"""

INIT_SCRIPT = """\
#!/bin/sh
# khyve initramfs /init (busybox): for hardware KVM / QEMU, where guest
# user space can run.
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "khyve initramfs"
echo "kernel $(uname -r), $(nproc) CPUs, $(grep MemTotal /proc/meminfo)"
# Lets check-qemu.sh prove that user space ran, then end the VM.
if grep -q khyve.init_poweroff /proc/cmdline; then
	echo "khyve initramfs: powering off"
	poweroff -f
fi
exec setsid cttyhack sh
"""


def file_content(name, size):
    """Random-looking but reproducible bytes for /khyve/NAME."""
    return hashlib.shake_256(("khyve:" + name).encode()).digest(size)


def crc32(data):
    return zlib.crc32(data) & 0xFFFFFFFF


def write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def busybox_applets(busybox):
    out = subprocess.run([busybox, "--list-full"], check=True,
                         capture_output=True, text=True).stdout
    return sorted(a for a in out.split() if a and a != "bin/busybox")


def stage_rootfs(root, busybox):
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys",
              "tmp", "root", "etc", "khyve"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    shutil.copyfile(busybox, os.path.join(root, "bin/busybox"))
    os.chmod(os.path.join(root, "bin/busybox"), 0o755)
    for applet in busybox_applets(busybox):
        link = os.path.join(root, applet)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if not os.path.lexists(link):
            os.symlink("/bin/busybox", link)
    write(os.path.join(root, "etc/inittab"), INITTAB.encode())
    # User-space checks of the system-call path and the snapshot workload
    # (pvmcheck.c and pvmload.c say what each does).
    here = os.path.dirname(os.path.abspath(__file__))
    for prog in ("pvmcheck", "pvmload"):
        subprocess.run(["gcc", "-static", "-O2", "-Wall", "-Wextra",
                        "-Werror", "-o", os.path.join(root, "bin", prog),
                        os.path.join(here, prog + ".c")], check=True)
    sums = []
    for name, size in KHYVE_FILES:
        data = file_content(name, size)
        write(os.path.join(root, "khyve", name), data)
        sums.append("%s %d %08x\n" % (name, size, crc32(data)))
    write(os.path.join(root, "khyve/sums"), "".join(sums).encode())


def all_files_sums(root):
    """One line per regular file: /PATH SIZE CRC32 SHA256."""
    lines = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            p = os.path.join(dirpath, fn)
            if os.path.islink(p):
                continue
            with open(p, "rb") as f:
                data = f.read()
            lines.append("/%s %d %08x %s\n" % (
                os.path.relpath(p, root), len(data), crc32(data),
                hashlib.sha256(data).hexdigest()))
    return "".join(lines)


def fix_times(root):
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            os.utime(os.path.join(dirpath, n), (EPOCH, EPOCH),
                     follow_symlinks=False)
    os.utime(root, (EPOCH, EPOCH))


def make_ext4(root, image):
    # Pre-sized file: keeps mke2fs from announcing that it creates one.
    with open(image, "wb") as f:
        f.truncate(IMAGE_MB << 20)
    env = dict(os.environ, E2FSPROGS_FAKE_TIME=str(EPOCH))
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "khyve-root",
                    "-U", FS_UUID, "-E", "hash_seed=" + HASH_SEED,
                    "-d", root, image],
                   check=True, env=env)
    subprocess.run(["e2fsck", "-fn", image], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_initramfs(tmp, busybox, gen_init_cpio, out):
    init = os.path.join(tmp, "init")
    write(init, INIT_SCRIPT.encode(), 0o755)
    # gen_init_cpio records a file's own mtime.
    os.utime(init, (EPOCH, EPOCH))
    spec = [
        "dir /bin 0755 0 0", "dir /sbin 0755 0 0", "dir /usr 0755 0 0",
        "dir /usr/bin 0755 0 0", "dir /usr/sbin 0755 0 0",
        "dir /dev 0755 0 0", "nod /dev/console 0600 0 0 c 5 1",
        "dir /proc 0755 0 0", "dir /sys 0755 0 0", "dir /tmp 1777 0 0",
        "dir /root 0700 0 0",
        "file /bin/busybox %s 0755 0 0" % busybox,
        "slink /bin/sh /bin/busybox 0777 0 0",
        "file /init %s 0755 0 0" % init,
    ]
    listfile = os.path.join(tmp, "initramfs.list")
    write(listfile, ("\n".join(spec) + "\n").encode())
    cpio = subprocess.run([gen_init_cpio, "-t", str(EPOCH), listfile],
                          check=True, capture_output=True).stdout
    # mtime=0 keeps the gzip header reproducible.
    with open(out, "wb") as f:
        with gzip.GzipFile(fileobj=f, mode="wb", compresslevel=9,
                           mtime=0, filename="") as gz:
            gz.write(cpio)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--busybox", required=True)
    ap.add_argument("--gen-init-cpio", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="khyve-rootfs.") as tmp:
        root = os.path.join(tmp, "root")
        stage_rootfs(root, args.busybox)
        fix_times(root)
        sums = all_files_sums(root)
        make_ext4(root, os.path.join(args.out, "rootfs.ext4"))
        write(os.path.join(args.out, "rootfs.sums"), sums.encode())
        make_initramfs(tmp, os.path.abspath(args.busybox),
                       args.gen_init_cpio,
                       os.path.join(args.out, "initramfs.cpio.gz"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
