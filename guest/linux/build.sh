#!/bin/bash
# Build khyve's test guest from Debian packages only:
#   OUTDIR/vmlinux            PVH-bootable ELF (tinyconfig + khyve.config)
#   OUTDIR/bzImage            same kernel, Linux boot protocol
#   OUTDIR/rootfs.ext4        busybox + /khyve test files + /khyve/sums
#   OUTDIR/rootfs.sums        /PATH SIZE CRC32 SHA256 of every file in it
#   OUTDIR/initramfs.cpio.gz  busybox + /init
#   OUTDIR/kernel.config      the kernel's final .config
#
# Usage: guest/linux/build.sh [OUTDIR]      (default: build/linux)
# Cache: $KHYVE_LINUX_CACHE (default: OUTDIR/cache). Kernel results are
# keyed by the linux-source version, the config fragment, the patches,
# khyve_test.c and the compiler; a second run builds nothing.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$(realpath -m "${1:-$repo/build/linux}")
cache=$(realpath -m "${KHYVE_LINUX_CACHE:-$out/cache}")
src_pkg=linux-source-6.1
jobs=$(nproc)

msg() { echo "linux-guest: $*"; }
die() { echo "linux-guest: error: $*" >&2; exit 1; }

# Debian packages the build needs; docs/linux-guest.md lists them too
# (libc6-dev: the rootfs's static pvmcheck and pvmload).
build_deps=(make gcc binutils bc bison flex libelf-dev perl patch xz-utils
	    e2fsprogs python3 libc6-dev)

ensure_deps() {
	local missing=() p
	for p in "${build_deps[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
			grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		die "missing packages: ${missing[*]} (apt-get install them)"
	fi
	msg "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" ||
		{ apt-get update && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y "${missing[@]}"; }
}

# Candidate version from the local package lists; refresh them once if
# the package is unknown. Falls back to a .deb already in the cache.
pkg_version() {
	local pkg=$1 v
	v=$(apt-cache policy "$pkg" 2>/dev/null |
		awk '/Candidate:/ { print $2 }')
	if [ -z "$v" ] || [ "$v" = "(none)" ]; then
		if [ "$(id -u)" -eq 0 ]; then
			apt-get update >/dev/null
			v=$(apt-cache policy "$pkg" |
				awk '/Candidate:/ { print $2 }')
		fi
	fi
	if [ -z "$v" ] || [ "$v" = "(none)" ]; then
		local deb
		deb=$(ls "$cache/debs/${pkg}_"*.deb 2>/dev/null | sort -V |
			tail -1 || true)
		[ -n "$deb" ] || die "package $pkg unknown to apt"
		v=$(dpkg-deb -f "$deb" Version)
	fi
	echo "$v"
}

# Prints the path of the cached .deb, downloading it if needed.
fetch_deb() {
	local pkg=$1 ver=$2 deb
	mkdir -p "$cache/debs"
	# apt-get download writes the epoch colon as %3a in file names.
	deb=$(ls "$cache/debs/${pkg}_${ver//:/%3a}_"*.deb 2>/dev/null | head -1 || true)
	if [ -z "$deb" ]; then
		msg "downloading $pkg $ver" >&2
		(cd "$cache/debs" && apt-get download "$pkg=$ver" >&2) ||
			die "apt-get download $pkg=$ver failed"
		deb=$(ls "$cache/debs/${pkg}_${ver//:/%3a}_"*.deb | head -1 || true)
	fi
	echo "$deb"
}

hash_of() { sha256sum | cut -c1-16; }

# Copies only when different, so OUTDIR mtimes stay put when up to date.
install_file() {
	cmp -s "$1" "$2" || cp "$1" "$2"
}

build_kernel() {
	local ver deb skey kkey tree kout
	ver=$(pkg_version "$src_pkg")
	skey=$( (echo "$ver"; cat "$here"/patches/*.patch) | hash_of)
	kkey=$( (echo "$ver"; gcc --version | head -1
		 cat "$here"/patches/*.patch "$here/khyve.config" \
		     "$here/khyve_test.c") | hash_of)
	kout=$cache/kernel-$kkey
	tree=$cache/src-$skey/linux

	if [ -f "$kout/done" ]; then
		msg "kernel up to date ($src_pkg $ver, key $kkey)"
	else
		if [ ! -f "$tree/.khyve-patched" ]; then
			deb=$(fetch_deb "$src_pkg" "$ver")
			msg "unpacking $(basename "$deb")"
			rm -rf "$cache/src-$skey"
			mkdir -p "$cache/src-$skey/pkg"
			dpkg-deb -x "$deb" "$cache/src-$skey/pkg"
			tar -C "$cache/src-$skey" -xaf \
				"$cache/src-$skey/pkg/usr/src/$src_pkg.tar.xz"
			rm -rf "$cache/src-$skey/pkg"
			mv "$cache/src-$skey/$src_pkg" "$tree"
			local p
			for p in "$here"/patches/*.patch; do
				msg "applying $(basename "$p")"
				patch -d "$tree" -p1 -s --no-backup-if-mismatch \
					<"$p" || die "patch $p failed"
			done
			touch "$tree/.khyve-patched"
		fi
		# Kept out of the patch so the module is edited as plain C.
		install_file "$here/khyve_test.c" "$tree/drivers/misc/khyve_test.c"

		msg "configuring (tinyconfig + khyve.config)"
		make -C "$tree" -s tinyconfig >/dev/null
		(cd "$tree" && scripts/kconfig/merge_config.sh -m .config \
			"$here/khyve.config" >/dev/null)
		make -C "$tree" -s olddefconfig
		# A silently dropped option (unmet dependency) is a bug here.
		local line bad=0
		while read -r line; do
			grep -qx "$line" "$tree/.config" ||
				{ echo "  not applied: $line" >&2; bad=1; }
		done < <(grep -E '^CONFIG_[A-Z0-9_]+=' "$here/khyve.config")
		[ $bad -eq 0 ] || die "khyve.config options were not applied"

		msg "building vmlinux bzImage with -j$jobs"
		local t0=$SECONDS
		make -C "$tree" -s -j"$jobs" vmlinux bzImage ||
			die "kernel build failed"
		msg "kernel built in $((SECONDS - t0)) s"

		mkdir -p "$kout"
		cp "$tree/vmlinux" "$tree/arch/x86/boot/bzImage" \
			"$tree/usr/gen_init_cpio" "$kout/"
		cp "$tree/.config" "$kout/kernel.config"
		echo "$ver" >"$kout/version"
		touch "$kout/done"
		# Old source trees are ~1.5 GB each; keep only the current one.
		local d
		for d in "$cache"/src-*; do
			[ "$d" = "$cache/src-$skey" ] || rm -rf "$d"
		done
	fi

	readelf -n "$kout/vmlinux" | grep -q "Xen.*0x00000012" ||
		die "vmlinux has no PVH (XEN_ELFNOTE_PHYS32_ENTRY) note"
	mkdir -p "$out"
	install_file "$kout/vmlinux" "$out/vmlinux"
	install_file "$kout/bzImage" "$out/bzImage"
	install_file "$kout/kernel.config" "$out/kernel.config"
	gen_init_cpio=$kout/gen_init_cpio
}

build_rootfs() {
	local ver deb rkey rout
	ver=$(pkg_version busybox-static)
	rkey=$( (echo "$ver"; gcc --version | head -1
		 cat "$here/make-rootfs.py" "$here/pvmcheck.c" \
		     "$here/pvmload.c") | hash_of)
	rout=$cache/rootfs-$rkey
	if [ -f "$rout/done" ]; then
		msg "rootfs up to date (busybox-static $ver, key $rkey)"
	else
		deb=$(fetch_deb busybox-static "$ver")
		rm -rf "$rout"
		mkdir -p "$rout/pkg"
		dpkg-deb -x "$deb" "$rout/pkg"
		msg "building rootfs.ext4 and initramfs.cpio.gz"
		python3 "$here/make-rootfs.py" --busybox "$rout/pkg/bin/busybox" \
			--gen-init-cpio "$gen_init_cpio" --out "$rout"
		rm -rf "$rout/pkg"
		touch "$rout/done"
	fi
	# Always copy the image: a guest may have written to OUTDIR's copy.
	install_file "$rout/rootfs.ext4" "$out/rootfs.ext4"
	install_file "$rout/rootfs.sums" "$out/rootfs.sums"
	install_file "$rout/initramfs.cpio.gz" "$out/initramfs.cpio.gz"
}

ensure_deps
mkdir -p "$cache" "$out"
build_kernel
build_rootfs
msg "outputs in $out: vmlinux bzImage rootfs.ext4 rootfs.sums" \
	"initramfs.cpio.gz kernel.config"
