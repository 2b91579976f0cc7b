#!/bin/bash
# Builds the image of btnsd's kernel-ESP VM: a Debian kernel and an initramfs
# holding a Debian minbase root file system with strongSwan (vm/base.sh),
# btnsd and btnsctl from this checkout, the VM's init and the scenarios.
# vm/run.sh boots it.
#
#   vm/build.sh            (as root: debootstrap, chroot)
#
# Environment:
#   BTNSD_VM_CACHE   cache directory (default /var/cache/btnsd-vm): the kernel
#                    package, debootstrap's packages and the base image
#   BTNSD_VM_OUT     where the image goes (default $BTNSD_VM_CACHE/out)
#   BTNSD_VM_SUITE   Debian suite (default bookworm)
#   BTNSD_VM_MIRROR  Debian mirror (default http://deb.debian.org/debian)
#
# The base image is cached under a key over the suite, the mirror, the kernel
# package and version, vm/packages, vm/modules and vm/base.sh: a change of any
# rebuilds it. A cached run only builds the binaries and re-packs them with
# the init and the scenarios (a few seconds).
set -euo pipefail
VMDIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$VMDIR/.." && pwd)
CACHE=${BTNSD_VM_CACHE:-/var/cache/btnsd-vm}
OUT=${BTNSD_VM_OUT:-$CACHE/out}
SUITE=${BTNSD_VM_SUITE:-bookworm}
MIRROR=${BTNSD_VM_MIRROR:-http://deb.debian.org/debian}
export LC_ALL=C
umask 022

now() { date +%s.%N; }
since() { awk -v t0="$1" -v t1="$(now)" 'BEGIN{printf "%.1f", t1-t0}'; }
die() { echo "build: $*" >&2; exit 1; }
T0=$(now)

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, device nodes)"
missing=""
for tool in debootstrap cpio zstd dpkg-deb apt-get apt-cache flock; do
	command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if ! command -v go >/dev/null 2>&1; then
	[ -x /usr/local/go/bin/go ] && PATH=$PATH:/usr/local/go/bin || missing="$missing go"
fi
[ -z "$missing" ] || die "missing:$missing (scripts/setup.sh installs them)"
mkdir -p "$CACHE/kernel" "$CACHE/debs" "$OUT"

# The kernel: the package linux-image-amd64 depends on, as the host's apt
# knows it.
resolve_kernel() {
	KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
	KVERSION=$(apt-cache show "$KPKG" 2>/dev/null | awk '/^Version:/{print $2; exit}')
}
resolve_kernel || true
if [ -z "${KPKG:-}" ] || [ -z "${KVERSION:-}" ]; then
	apt-get update -qq >/dev/null
	resolve_kernel || true
fi
[ -n "${KPKG:-}" ] && [ -n "${KVERSION:-}" ] || die "cannot resolve the Debian kernel package (apt-cache depends linux-image-amd64)"
KREL=${KPKG#linux-image-}

KEY=$( {
	printf '%s\n' "suite=$SUITE" "mirror=$MIRROR" "kernel=$KPKG=$KVERSION"
	cat "$VMDIR/packages" "$VMDIR/modules" "$VMDIR/base.sh"
} | sha256sum | cut -c1-16)
BASE=$CACHE/base-$KEY

# btnsd and btnsctl, static, and the VM's own files: the overlay archive.
t=$(now)
stage=$OUT/overlay
rm -rf "$stage"
mkdir -p "$stage/usr/local/bin" "$stage/btnsd-vm/scenarios"
(cd "$REPO" && CGO_ENABLED=0 go build -o "$stage/usr/local/bin/" ./cmd/btnsd ./cmd/btnsctl) ||
	die "go build failed"
# vmapp: the latch scenarios' TCP server and client (vm/app).
(cd "$REPO" && CGO_ENABLED=0 go build -o "$stage/usr/local/bin/vmapp" ./vm/app) ||
	die "go build of vm/app failed"
# Features of this btnsd that scenarios depend on, one a line, in
# /btnsd-vm/features: kernel-spd when btnsd links the kernel SPD/SAD watch
# (package latchmon/xfrm). A scenario whose feature is missing says
# "skipped", never PASS.
features=""
if go tool nm "$stage/usr/local/bin/btnsd" 2>/dev/null | grep -q ' github.com/btnsd/btnsd/latchmon/xfrm\.'; then
	features="$features kernel-spd"
fi
printf '%s\n' $features >"$stage/btnsd-vm/features"
echo "build: btnsd features:${features:- none}"
bin_time=$(since "$t")
t=$(now)
install -m 755 "$VMDIR/init.sh" "$stage/init"
install -m 644 "$VMDIR/lib.sh" "$VMDIR/modules" "$stage/btnsd-vm/"
install -m 644 "$VMDIR"/scenarios/*.sh "$stage/btnsd-vm/scenarios/"
(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo unknown) >"$stage/btnsd-vm/commit"
(cd "$stage" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | zstd -q -1 -T0 >"$OUT/overlay.cpio.zst")
pack_time=$(since "$t")

# One build of the base at a time (a second build waits, then finds it).
exec 9>"$CACHE/.lock"
flock 9
if [ -f "$BASE/done" ]; then
	base_state="cached"
	echo "build: base image cached ($BASE)"
else
	base_state="cold"
	t=$(now)
	kdeb=$(ls "$CACHE/kernel/${KPKG}_${KVERSION//:/%3a}_"*.deb 2>/dev/null | head -n1 || true)
	if [ -z "$kdeb" ]; then
		echo "build: downloading $KPKG $KVERSION"
		(cd "$CACHE/kernel" && { apt-get download "$KPKG=$KVERSION" >/dev/null 2>&1 ||
			{ apt-get update -qq >/dev/null && apt-get download "$KPKG=$KVERSION" >/dev/null; }; }) ||
			die "apt-get download $KPKG=$KVERSION failed"
		kdeb=$(ls "$CACHE/kernel/${KPKG}_"*.deb | head -n1)
		echo "build: kernel package downloaded in $(since "$t")s"
	else
		echo "build: kernel package cached ($(basename "$kdeb"))"
	fi
	tmp=$CACHE/tmp-$KEY.$$
	rm -rf "$tmp"
	VMDIR=$VMDIR KDEB=$kdeb KREL=$KREL SUITE=$SUITE MIRROR=$MIRROR DEBS=$CACHE/debs \
		"$VMDIR/base.sh" "$tmp" || { rm -rf "$tmp"; die "base image failed"; }
	rm -rf "$BASE"
	mv "$tmp" "$BASE"
	touch "$BASE/done"
	echo "build: base image built in $(since "$t")s ($BASE)"
	# Keep this base and the one used before it; drop older ones.
	ls -1dt "$CACHE"/base-* 2>/dev/null | tail -n +3 | while read -r old; do rm -rf "$old"; done
fi
touch "$BASE"
# The kernel unpacks concatenated cpio archives in order, later files over
# earlier ones (as Debian's early-microcode initramfs does).
t=$(now)
cp "$BASE/vmlinuz" "$OUT/vmlinuz"
cp "$BASE/info" "$OUT/info"
cat "$BASE/base.cpio.zst" "$OUT/overlay.cpio.zst" >"$OUT/initrd.img"
flock -u 9
pack_time=$(awk -v a="$pack_time" -v b="$(since "$t")" 'BEGIN{printf "%.1f", a+b}')

printf 'build: base %s (key %s), binaries %ss, pack %ss, total %ss\n' \
	"$base_state" "$KEY" "$bin_time" "$pack_time" "$(since "$T0")"
echo "build: image $OUT/vmlinuz + $OUT/initrd.img ($(du -h "$OUT/initrd.img" | cut -f1)); boot it with vm/run.sh"
