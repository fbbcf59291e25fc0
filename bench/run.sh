#!/bin/sh
# khyve vs QEMU (-accel kvm) on the same fast test guest:
#   bench/startup.py  exec to first console line, RSS beyond guest memory
#   bench/vblk.py     virtio-blk MB/s and 4 KiB random-read IOPS
#   bench/snapshot.py save, pause, size, restore and clone memory against
#                     QEMU migrate to a file / -incoming (issue 6)
#   bench/chain.py    incremental checkpoints after 1% and 10% of memory
#                     changed, against a full one (issue 15; only when
#                     named)
#   bench/migrate.py  live migration over TCP loopback, 256 MiB and 1 GiB
#                     guests idle and rewriting 62.5 MiB/s, against QEMU
#                     migrate (issue 15; only when named)
#   bench/vnet.py     virtio-net guest-to-host UDP MB/s on a TAP in a
#                     network namespace (needs root and /dev/net/tun)
#   bench/fc_api.py   Firecracker API snapshot/load with resume_vm to the
#                     first console line, against khyve -r (issue 17;
#                     only when named)
#   bench/linux.py    Linux boot milestones, Debian's and the project's
#                     kernel, to user space, and checkpoint/restore of Linux
#                     with user space running (issues 3, 19; slow: only
#                     when named, not by default)
# Usage: bench/run.sh [startup|vblk|snapshot|chain|migrate|vnet|linux|fc_api]...
#        (default: startup vblk snapshot vnet)
# Where /dev/kvm is missing, the whole run happens inside
# tests/nested/run.sh (kvm_amd in a QEMU TCG machine) and every table says
# so: those figures are nested-KVM-under-TCG, 10-50x slower than hardware;
# only the khyve/QEMU ratios mean something.
set -e
export PYTHONDONTWRITEBYTECODE=1
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- startup vblk snapshot vnet
mem=${KHYVE_NESTED_MEM:-7G}
for b in "$@"; do
	# 1 GiB guests, their snapshots in tmpfs and 5 QEMU clones of one
	case $b in snapshot|migrate) mem=${KHYVE_NESTED_MEM:-10G};; esac
	case $b in startup|vblk|snapshot|chain|migrate|vnet|linux|fc_api) ;; *) echo "bench: unknown benchmark $b" >&2; exit 2;; esac
done
# The project's one KVM probe; it also tells a software backend (kvm_pvm),
# which every table then names.
[ -x build/khyve ] || make -s build/khyve
if probe=$(build/khyve --probe-kvm 2>/dev/null); then
	case $probe in
	*software*) export KHYVE_BENCH_ENV=${KHYVE_BENCH_ENV:-kvm_pvm (software KVM)} ;;
	*) export KHYVE_BENCH_ENV=${KHYVE_BENCH_ENV:-hardware KVM} ;;
	esac
	rc=0
	for b in "$@"; do
		/usr/bin/python3 "bench/$b.py" || rc=1
	done
	exit $rc
fi
if [ -n "${KHYVE_BENCH_IN_NESTED:-}" ]; then
	echo "bench: /dev/kvm is not usable even inside the nested machine" >&2
	exit 2
fi
echo "bench: no /dev/kvm here; running inside tests/nested/run.sh (nested KVM under QEMU TCG)" >&2
export KHYVE_NESTED_MEM="$mem"
exec tests/nested/run.sh /usr/bin/env KHYVE_BENCH_IN_NESTED=1 \
	KHYVE_BENCH_ENV="nested-KVM-under-TCG" BENCH_RUNS="${BENCH_RUNS:-7}" \
	BENCH_LINUX_RUNS="${BENCH_LINUX_RUNS:-1}" BENCH_LINUX_TIMEOUT="${BENCH_LINUX_TIMEOUT:-400}" \
	BENCH_VBLK_RUNS="${BENCH_VBLK_RUNS:-3}" BENCH_VBLK_MB="${BENCH_VBLK_MB:-64}" \
	BENCH_VBLK_RAND_MS="${BENCH_VBLK_RAND_MS:-1000}" \
	BENCH_SNAP_RUNS="${BENCH_SNAP_RUNS:-3}" BENCH_SNAP_CLONES="${BENCH_SNAP_CLONES:-5}" \
	BENCH_SNAP_TOUCH_MB="${BENCH_SNAP_TOUCH_MB:-800,100}" \
	BENCH_MIG_RUNS="${BENCH_MIG_RUNS:-3}" \
	BENCH_VNET_RUNS="${BENCH_VNET_RUNS:-3}" BENCH_VNET_MB="${BENCH_VNET_MB:-16}" \
	BENCH_VNET_QD="${BENCH_VNET_QD:-1,64}" BENCH_VNET_KHYVE="${BENCH_VNET_KHYVE:-}" \
	BENCH_VNET_KHYVE_BASE="${BENCH_VNET_KHYVE_BASE:-}" \
	/bin/sh bench/run.sh "$@"
