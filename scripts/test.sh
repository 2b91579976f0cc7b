#!/bin/sh
# The project's test command (README, and .ci/run calls exactly this).
# Run as root on Debian 12: installs what is missing (scripts/setup.sh), then
# runs every test, including the integration tests that start real charon
# instances in network namespaces. BTNSD_INTEGRATION=1 makes an integration
# test that cannot run fail instead of skipping.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
[ -x /usr/local/go/bin/go ] && PATH=$PATH:/usr/local/go/bin

echo "== gofmt and go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "not gofmt-formatted: $unformatted" >&2
	exit 1
fi
go vet ./...

echo "== go test (unit and integration)"
export BTNSD_INTEGRATION=1
# The VM step runs alone afterwards: a 2-CPU emulated VM beside the other
# packages' tests would eat the cores their timing checks measure.
go test -count=1 -timeout 40m -skip '^TestKernelESPInVM$' "$@" ./...

echo "== the VM step: kernel ESP, transport mode (vm/README.md)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
rc=0
go test -count=1 -timeout 20m -run '^TestKernelESPInVM$' -v ./integration/ >"$log" 2>&1 || rc=$?
grep -E '^(=== RUN|--- |PASS|FAIL|ok)|vm_test.go:|VMTEST' "$log" || true
if [ "$rc" != 0 ]; then
	tail -n 60 "$log"
	echo "the VM step failed (exit $rc)" >&2
	exit 1
fi
