#!/bin/bash
# Fetch Debian's stock amd64 kernel (the image the linux-image-amd64
# metapackage currently points at) with apt-get download, and extract
# its /boot/vmlinuz-* into the cache, never into the host's /boot.
#
# Usage: guest/linux/fetch-stock.sh [OUTDIR]      (default: build/linux)
# Outputs: OUTDIR/vmlinuz-stock (bzImage), OUTDIR/config-stock,
#          OUTDIR/stock-version. Cache: $KHYVE_LINUX_CACHE or OUTDIR/cache.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$(realpath -m "${1:-$repo/build/linux}")
cache=$(realpath -m "${KHYVE_LINUX_CACHE:-$out/cache}")

msg() { echo "linux-stock: $*"; }
die() { echo "linux-stock: error: $*" >&2; exit 1; }

image_pkg() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}

pkg=$(image_pkg)
if [ -z "$pkg" ] && [ "$(id -u)" -eq 0 ]; then
	apt-get update >/dev/null
	pkg=$(image_pkg)
fi
[ -n "$pkg" ] || die "cannot resolve linux-image-amd64 (apt-get update?)"
ver=$(apt-cache policy "$pkg" | awk '/Candidate:/ { print $2 }')
dir=$cache/stock-$pkg-$ver

if [ -f "$dir/done" ]; then
	msg "up to date ($pkg $ver)"
else
	mkdir -p "$cache/debs"
	deb=$(ls "$cache/debs/${pkg}_${ver//:/%3a}_"*.deb 2>/dev/null | head -1 || true)
	if [ -z "$deb" ]; then
		msg "downloading $pkg $ver"
		(cd "$cache/debs" && apt-get download "$pkg=$ver") ||
			die "apt-get download $pkg=$ver failed"
		deb=$(ls "$cache/debs/${pkg}_${ver//:/%3a}_"*.deb | head -1 || true)
	fi
	rm -rf "$dir"
	mkdir -p "$dir/pkg"
	# Only ./boot: the modules tree is large and useless to the VMM.
	dpkg-deb --fsys-tarfile "$deb" |
		tar -C "$dir/pkg" -x --wildcards './boot/*'
	vmlinuz=$(ls "$dir"/pkg/boot/vmlinuz-* | head -1 || true)
	[ -f "$vmlinuz" ] || die "no /boot/vmlinuz-* in $deb"
	cp "$vmlinuz" "$dir/vmlinuz"
	cp "$dir"/pkg/boot/config-* "$dir/config"
	basename "$vmlinuz" | sed 's/^vmlinuz-//' >"$dir/version"
	rm -rf "$dir/pkg"
	touch "$dir/done"
fi

mkdir -p "$out"
cmp -s "$dir/vmlinuz" "$out/vmlinuz-stock" || cp "$dir/vmlinuz" "$out/vmlinuz-stock"
cp "$dir/config" "$out/config-stock"
cp "$dir/version" "$out/stock-version"
msg "$out/vmlinuz-stock is $pkg $ver ($(cat "$dir/version"))"
