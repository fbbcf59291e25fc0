#!/bin/bash
# Validate the guest built by build.sh under QEMU TCG (software
# emulation, no /dev/kvm needed). Exits 0 when every check passes.
#
# Stage 1: vmlinux via PVH, 2 vCPUs, rootfs.ext4 on virtio-blk (a copy),
#   virtio-net with DHCP (QEMU user net), virtio-rng, virtio-console,
#   khyve_test counter + memcheck + blk + hold_init + poweroff. Then
#   e2fsck -fn the image and read the guest's new file back with debugfs.
# Stage 2: bzImage + initramfs.cpio.gz; busybox /init prints its banner
#   and powers off (user space works under TCG).
# Stage 3 (CHECK_NETCONSOLE=1, default on): kernel log over netconsole
#   to a UDP listener on the host, through QEMU user net.
#
# Usage: guest/linux/check-qemu.sh [OUTDIR]   (default: build/linux)
# Env:   TIMEOUT (s per boot, default 600), MEM_MB (default 512),
#        CHECK_NETCONSOLE (default 1), KEEP=1 keeps the scratch dir.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$(realpath -m "${1:-$repo/build/linux}")
timeout_s=${TIMEOUT:-600}
mem_mb=${MEM_MB:-512}
qemu="qemu-system-x86_64"

die() { echo "check-qemu: FAIL: $*" >&2; exit 1; }
msg() { echo "check-qemu: $*"; }

command -v "$qemu" >/dev/null ||
	die "$qemu not found (apt-get install -y qemu-system-x86)"
for f in vmlinux bzImage rootfs.ext4 initramfs.cpio.gz; do
	[ -f "$out/$f" ] || die "$out/$f missing (run guest/linux/build.sh)"
done

tmp=$(mktemp -d /tmp/khyve-check-qemu.XXXXXX)
listener=
cleanup() {
	[ -z "$listener" ] || kill "$listener" 2>/dev/null || true
	if [ "${KEEP:-0}" = 1 ]; then
		msg "scratch dir kept: $tmp"
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT

# Boots QEMU with the given args, serial console to $tmp/$1.log; the
# guest must power itself off before TIMEOUT. Prints the wall time.
run_qemu() {
	local name=$1 t0 t1 rc=0
	shift
	t0=$(date +%s.%N)
	timeout "$timeout_s" "$qemu" -accel tcg -M pc -smp 2 -m "$mem_mb" \
		-nodefaults -display none -no-reboot \
		-serial "file:$tmp/$name.log" "$@" || rc=$?
	t1=$(date +%s.%N)
	[ $rc -eq 0 ] || {
		tail -n 30 "$tmp/$name.log" >&2
		die "$name: qemu exited with $rc (124 = timeout, no power-off)"
	}
	python3 -c "print('%.1f' % ($t1 - $t0))" >"$tmp/$name.wall"
}

# ---- stage 1 -----------------------------------------------------------
cp "$out/rootfs.ext4" "$tmp/disk.ext4"
cmdline="console=ttyS0 panic=-1 root=/dev/vda rw no_int3_selftest ip=dhcp"
cmdline+=" khyve_test.counter=1 khyve_test.mem=64 khyve_test.mem_interval=3"
cmdline+=" khyve_test.blk=1 khyve_test.runtime=10 khyve_test.poweroff=1"
cmdline+=" khyve_test.hold_init=1"
msg "stage 1: PVH vmlinux, virtio-blk rootfs, khyve_test (TCG)"
run_qemu pvh -kernel "$out/vmlinux" -append "$cmdline" \
	-drive "file=$tmp/disk.ext4,if=none,id=d,format=raw" \
	-device virtio-blk-pci,drive=d \
	-netdev user,id=n -device virtio-net-pci,netdev=n \
	-device virtio-rng-pci \
	-device virtio-serial-pci -chardev "file,id=vc,path=$tmp/hvc0.log" \
	-device virtconsole,chardev=vc

e2fsck -fn "$tmp/disk.ext4" >"$tmp/e2fsck.log" 2>&1 ||
	{ cat "$tmp/e2fsck.log" >&2; die "e2fsck -fn found errors"; }
msg "e2fsck -fn: clean"

python3 - "$tmp" "$out" <<'EOF'
import re, subprocess, sys, zlib

tmp, out = sys.argv[1], sys.argv[2]
log = open(tmp + "/pvh.log", errors="replace").read()
fails = []

def need(cond, what):
    print("  %-4s %s" % ("ok" if cond else "FAIL", what))
    if not cond:
        fails.append(what)

def ktime(pattern):
    m = re.search(r"\[\s*(\d+\.\d+)\] .*" + pattern, log)
    return float(m.group(1)) if m else None

need("khyve_test: hold_init: pid 1 stays in the kernel" in log,
     "boot reached init (pid 1 held in the kernel)")
need(re.search(r"smp: Brought up 1 node, 2 CPUs", log), "2 CPUs up")
m = re.search(r"Memory: (\d+)K/(\d+)K available", log)
need(m and int(m.group(2)) > 400 * 1024, "memory found (%s KiB)" %
     (m.group(2) if m else "?"))
need(re.search(r"virtio_blk virtio\d+: \[vda\]", log), "virtio-blk vda")
need(re.search(r"EXT4-fs \(vda\): mounted filesystem", log) and
     re.search(r"VFS: Mounted root \(ext4 filesystem\) on device", log) and
     not re.search(r"VFS: Mounted root \(ext4 filesystem\) readonly", log),
     "root ext4 mounted read-write")
need(re.search(r"IP-Config: Complete", log), "virtio-net DHCP (IP-Config)")
counters = [int(n) for n in re.findall(r"khyve_test: counter (\d+) ", log)]
need(len(counters) >= 5 and counters == list(range(len(counters))),
     "counter ran (%d lines, consecutive)" % len(counters))
ok = len(re.findall(r"khyve_test: memcheck ok \d+", log))
need(ok >= 2 and "memcheck BAD" not in log, "memcheck ok x%d, no BAD" % ok)
sums = open(out + "/rootfs.sums").read()
names = [l.split()[0][len("/khyve/"):] for l in sums.splitlines()
         if l.startswith("/khyve/") and not l.startswith("/khyve/sums ")]
bad = [n for n in names if "khyve_test: file %s ok" % n not in log]
need(names and not bad, "blk read %d files ok %s" % (len(names), bad or ""))
m = re.search(r"khyve_test: wrote /khyve/(guest-(\d+)\.bin) size (\d+) "
              r"crc32 ([0-9a-f]{8})", log)
need(m, "blk wrote a new file")
need("khyve_test: all tests done, 0 failures" in log, "0 failures")
need(re.search(r"reboot: Power down", log), "kernel_power_off")
if m:
    name, n, size, crc = m.group(1), int(m.group(2)), int(m.group(3)), \
        int(m.group(4), 16)
    dump = tmp + "/" + name
    subprocess.run(["debugfs", "-R", "dump /khyve/%s %s" % (name, dump),
                    tmp + "/disk.ext4"], check=True, capture_output=True)
    data = open(dump, "rb").read()
    # Same generator as guest_file_bytes() in khyve_test.c.
    def splitmix64(x):
        M = (1 << 64) - 1
        x = (x + 0x9e3779b97f4a7c15) & M
        x = ((x ^ (x >> 30)) * 0xbf58476d1ce4e5b9) & M
        x = ((x ^ (x >> 27)) * 0x94d049bb133111eb) & M
        return x ^ (x >> 31)
    seed = 0x6b68797665000000
    want = b"".join(splitmix64((seed + n + (o << 16)) & ((1 << 64) - 1))
                    .to_bytes(8, "little") for o in range(0, size, 8))[:size]
    need(len(data) == size and zlib.crc32(data) == crc,
         "debugfs read %s: size %d crc32 %08x matches guest" %
         (name, len(data), zlib.crc32(data)))
    need(data == want, "%s content matches the host's generator" % name)

t_init = ktime("khyve_test: hold_init")
t_mount = ktime("VFS: Mounted root")
t_off = ktime("reboot: Power down")
wall = open(tmp + "/pvh.wall").read().strip()
print("  timing (guest clock): root mounted %ss, init hold %ss, "
      "power off %ss; wall %ss" % (t_mount, t_init, t_off, wall))
if fails:
    sys.exit("check-qemu: FAIL: stage 1: " + "; ".join(fails))
EOF

# ---- stage 2 -----------------------------------------------------------
msg "stage 2: bzImage + initramfs, busybox /init"
run_qemu initramfs -kernel "$out/bzImage" -initrd "$out/initramfs.cpio.gz" \
	-append "console=ttyS0 panic=-1 no_int3_selftest khyve.init_poweroff"
log=$tmp/initramfs.log.txt
tr -d '\r' <"$tmp/initramfs.log" >"$log"
grep -q "Run /init as init process" "$log" || die "stage 2: init not run"
grep -q "^khyve initramfs$" "$log" || die "stage 2: no banner from /init"
grep -q "CPUs" "$log" || die "stage 2: /init did not report CPUs"
grep -q "reboot: Power down" "$log" || die "stage 2: no power off"
msg "  ok   /init ran: $(grep -m1 '^kernel ' "$log" | tr -s ' ')"
msg "  timing: $(grep -m1 'Run /init' "$log" | cut -d']' -f1 | tr -d '[ ')s" \
	"to /init (guest clock), wall $(cat "$tmp/initramfs.wall")s"

# ---- stage 3 -----------------------------------------------------------
if [ "${CHECK_NETCONSOLE:-1}" = 1 ]; then
	msg "stage 3: netconsole to a host UDP listener via QEMU user net"
	port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET,
socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	python3 - "$port" "$tmp/netconsole.log" <<'EOF' >/dev/null 2>&1 &
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.settimeout(1.0)
with open(sys.argv[2], "wb", buffering=0) as f:
    idle = 0
    while idle < 900:
        try:
            f.write(s.recv(65536))
            idle = 0
        except socket.timeout:
            idle += 1
EOF
	listener=$!
	# 10.0.2.2 is QEMU user net's alias for the host's loopback.
	nc="netconsole=6665@10.0.2.15/eth0,$port@10.0.2.2/"
	nc+=" ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off"
	# The initramfs only serves as a root fs here; pid 1 is held.
	run_qemu netcon -kernel "$out/vmlinux" \
		-initrd "$out/initramfs.cpio.gz" \
		-append "console=ttyS0 panic=-1 no_int3_selftest $nc khyve_test.counter=1 khyve_test.runtime=3 khyve_test.poweroff=1 khyve_test.hold_init=1" \
		-netdev user,id=n -device virtio-net-pci,netdev=n
	sleep 1
	kill "$listener" 2>/dev/null || true
	wait "$listener" 2>/dev/null || true
	listener=
	grep -q "khyve_test: counter 2 " "$tmp/netconsole.log" ||
		{ tail -n 20 "$tmp/netcon.log" >&2
		  die "stage 3: no khyve_test lines arrived over netconsole"; }
	msg "  ok   $(grep -c khyve_test "$tmp/netconsole.log") khyve_test" \
		"lines received over UDP (wall $(cat "$tmp/netcon.wall")s)"
fi

msg "PASS"
