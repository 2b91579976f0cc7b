#!/bin/bash
# Builds the VM's base image, the part that only changes with Debian's
# packages: the kernel and a minbase root file system with strongSwan and the
# packages of vm/packages, holding the modules of vm/modules and their
# dependencies, packed as a zstd-compressed cpio archive.
#
# Called by vm/build.sh (which caches the result; this file's content is part
# of the cache key):
#   base.sh WORKDIR
# with the environment: VMDIR (this directory), KDEB (the kernel package),
# KREL (its kernel release, e.g. 6.1.0-56-amd64), SUITE, MIRROR, DEBS
# (debootstrap's package cache). Leaves in WORKDIR: vmlinuz, base.cpio.zst,
# info (versions, for the VM's log).
set -euo pipefail
W=$1
: "${VMDIR:?}" "${KDEB:?}" "${KREL:?}" "${SUITE:?}" "${MIRROR:?}" "${DEBS:?}"
mkdir -p "$W" "$DEBS"
cd "$W"
export DEBIAN_FRONTEND=noninteractive LC_ALL=C
umask 022

step() { awk -v s="$1" -v t0="$2" -v t1="$(date +%s.%N)" 'BEGIN{printf "base: %-36s %5.1fs\n", s, t1-t0}'; }
now() { date +%s.%N; }

t=$(now)
rm -rf kern
dpkg-deb -x "$KDEB" kern
[ -f "kern/boot/vmlinuz-$KREL" ] || { echo "base: no kern/boot/vmlinuz-$KREL in $KDEB" >&2; exit 1; }
step "kernel unpacked" "$t"

t=$(now)
include=$(grep -v '^[[:space:]]*\(#\|$\)' "$VMDIR/packages" | awk '{print $1}' | paste -sd, -)
rm -rf rootfs
if ! debootstrap --variant=minbase --cache-dir="$DEBS" --include="$include" \
	"$SUITE" rootfs "$MIRROR" >debootstrap.log 2>&1; then
	echo "base: debootstrap failed; last lines of $W/debootstrap.log:" >&2
	tail -n 15 debootstrap.log >&2
	exit 1
fi
step "debootstrap ($SUITE)" "$t"

# The module closure, computed with the rootfs' own kmod against the full
# module tree, then only those modules are kept.
t=$(now)
mods=$(grep -v '^[[:space:]]*\(#\|$\)' "$VMDIR/modules" | awk '{print $1}')
mkdir -p rootfs/lib/modules
rm -rf "rootfs/lib/modules/$KREL"
cp -a "kern/lib/modules/$KREL" rootfs/lib/modules/
chroot rootfs depmod "$KREL"
: >modlist.txt
for m in $mods; do
	# a module built into the kernel has nothing to copy; a missing one is
	# reported by the VM when it fails to load it
	chroot rootfs modprobe -S "$KREL" --show-depends "$m" 2>/dev/null |
		awk '$1=="insmod"{print $2}' >>modlist.txt || true
done
sort -u -o modlist.txt modlist.txt
sed -i "s|.*/lib/modules/$KREL/||" modlist.txt
rm -rf "rootfs/lib/modules/$KREL"
mkdir -p "rootfs/lib/modules/$KREL"
(cd "kern/lib/modules/$KREL" && cp --parents $(cat "$W/modlist.txt") \
	modules.order modules.builtin modules.builtin.modinfo "$W/rootfs/lib/modules/$KREL/")
chroot rootfs depmod "$KREL"
cp "kern/boot/vmlinuz-$KREL" vmlinuz
cp "kern/boot/config-$KREL" kernel.config
step "modules ($(wc -l <modlist.txt) files)" "$t"

t=$(now)
rm -rf rootfs/usr/share/doc/* rootfs/usr/share/man/* rootfs/usr/share/locale/* \
	rootfs/usr/share/info/* rootfs/var/cache/apt/archives/*.deb rootfs/var/lib/apt/lists/* \
	rootfs/var/cache/debconf/*-old rootfs/var/log/*
# The kernel opens /dev/console before it runs /init; devtmpfs comes later.
[ -c rootfs/dev/console ] || mknod -m 600 rootfs/dev/console c 5 1
[ -c rootfs/dev/null ] || mknod -m 666 rootfs/dev/null c 1 3
{
	echo "kernel $KREL ($(basename "$KDEB"))"
	echo "suite $SUITE ($MIRROR)"
	chroot rootfs dpkg-query -W -f='${Package} ${Version}\n' strongswan-charon iproute2 | sed 's/^/package /'
} >info
(cd rootfs && find . -xdev | LC_ALL=C sort | cpio -o -H newc --quiet | zstd -q -3 -T0 >../base.cpio.zst)
step "packed ($(du -h base.cpio.zst | cut -f1), rootfs $(du -sh rootfs | cut -f1))" "$t"
rm -rf rootfs kern
