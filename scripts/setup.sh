#!/bin/sh
# Installs what btnsd's build, tests and demo need on a Debian 12 machine:
# strongSwan from Debian's packages (charon, swanctl, pki, the plugins the
# lab loads, kernel-libipsec), the network tools the lab drives, and the Go
# modules. Safe to run again; it installs only what is missing.
set -eu
cd "$(dirname "$0")/.."

pkgs="strongswan-charon strongswan-swanctl strongswan-pki libstrongswan-standard-plugins
libstrongswan-extra-plugins libcharon-extra-plugins iproute2 iputils-ping netcat-openbsd
procps kmod qemu-system-x86 debootstrap cpio zstd"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "setup: missing Debian packages:$missing; run as root" >&2
		exit 1
	fi
	echo "setup: installing$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# apt starts nothing here (no systemd), and the lab runs its own charons.
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if ! command -v go >/dev/null 2>&1; then
	[ -x /usr/local/go/bin/go ] && PATH=$PATH:/usr/local/go/bin
fi
go mod download
echo "setup: ok ($(/usr/lib/ipsec/charon --version 2>/dev/null || swanctl --version | head -1), $(go version))"
