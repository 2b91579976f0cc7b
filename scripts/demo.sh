#!/bin/sh
# The newcomer's demo: three hosts a, b and an attacker c, each with
# strongSwan's charon and btnsd, in network namespaces on this machine.
# b brings up a BTNS SA with a, opens a TCP connection that btnsd latches,
# then c takes b's address and brings up its own SA: the latch breaks, an
# alert is raised and the connection is reset. Run as root on Debian 12;
# it installs what is missing first (scripts/setup.sh).
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null
[ -x /usr/local/go/bin/go ] && PATH=$PATH:/usr/local/go/bin
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/" ./cmd/btnsd ./cmd/btnsctl
go build -o "$bin/demo" ./integration/demo
"$bin/demo" -bin "$bin"
