#!/bin/sh
# Installs the Debian 12 packages khyve needs to build, test and run.
set -e
PKGS="build-essential clang libclang-rt-14-dev libjansson-dev libmicrohttpd-dev libseccomp-dev liburing-dev libxxhash-dev \
libzstd-dev liblzma-dev liblz4-dev zlib1g-dev libbz2-dev python3-pytest \
busybox-static socat e2fsprogs cpio bc bison flex libelf-dev libssl-dev \
xz-utils qemu-system-x86 iproute2 dnsmasq-base patch perl make gcc binutils python3 \
clang-format cppcheck git curl"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
