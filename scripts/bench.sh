#!/bin/sh
# Runs btnsd's benchmarks and prints their figures. Run as root (several
# start real charons in network namespaces), after scripts/setup.sh.
# Targets (see README, "Benchmarks"):
#   LoadConns        vici/swanctl                <= 1.05
#   FullSync         btnsd/swanctl               <= 1.1
#   AddKey           load-conn/key = 1, median   < 100 ms
#   key store        lookups O(1); btnsctl key list of 10,000 keys < 0.5 s
#   latch machine    >= 100,000 SA events/s on one core, < 1 KiB per latch
#   socket dump      50,000 sockets in < 200 ms
#   BreakToReset     printed: event-to-reset, initiate-to-break, break-to-app (median, worst)
set -eu
cd "$(dirname "$0")/.."
[ -x /usr/local/go/bin/go ] && PATH=$PATH:/usr/local/go/bin
bench() { # package, pattern, benchtime, extra flags
	echo "== $1 $2"
	go test -run '^$' -bench "$2" -benchtime "$3" ${4:-} "$1" 2>&1 | grep -E '^(Benchmark|ok|FAIL|---)' || true
}
bench ./integration/ LoadConns 5x
bench ./integration/ BreakToReset 5x
bench ./daemon/ FullSync 3x
bench ./daemon/ AddKey 20x
bench ./fingerprints/ . 1s -benchmem
bench ./cmd/btnsctl/cli/ KeyList 5x
bench ./latchmon/latch/ . 1s "-cpu 1 -benchmem"
bench ./latchmon/sockets/ Dump 10x
