#!/bin/bash
# Boots the image vm/build.sh made under QEMU (software emulation: KVM is not
# available on these machines) and reports the scenarios' results.
#
#   vm/run.sh [WORD...]   run only the scenarios whose name contains a WORD
#
# Environment:
#   BTNSD_VM_CACHE, BTNSD_VM_OUT   as for vm/build.sh (the image is read from
#                                  $BTNSD_VM_OUT, default $BTNSD_VM_CACHE/out)
#   BTNSD_VM_TIMEOUT               the whole VM run, seconds (default 480)
#   BTNSD_VM_SCENARIO_TIMEOUT      one scenario inside the VM (default 180)
#
# Prints the VM's VMINFO and VMTEST lines as they come, and for a failed
# scenario the evidence the VM printed (its output, charon and btnsd log
# tails). Exit 0 only when the VM reported PASS for every scenario it
# planned and RESULT: PASS, a scenario that skipped itself (its btnsd
# feature missing) excepted: it is named "NOT RUN", never counted as passed. The whole console log stays in
# $BTNSD_VM_OUT/console.log.
set -uo pipefail
CACHE=${BTNSD_VM_CACHE:-/var/cache/btnsd-vm}
OUT=${BTNSD_VM_OUT:-$CACHE/out}
TIMEOUT=${BTNSD_VM_TIMEOUT:-480}
STIMEOUT=${BTNSD_VM_SCENARIO_TIMEOUT:-180}
LOG=$OUT/console.log
# clean: the console without carriage returns and terminal escapes.
clean() { sed -u -e 's/\r$//' -e 's/\x1b\[[0-9;?]*[a-zA-Z]//g' -e 's/\x1bc//g'; }
die() { echo "run: FAIL: $*" >&2; exit 1; }

command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing (scripts/setup.sh installs qemu-system-x86)"
[ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initrd.img" ] || die "no image in $OUT: run vm/build.sh first"

append="console=ttyS0 panic=-1 quiet vmtest.timeout=$STIMEOUT"
if [ $# -gt 0 ]; then
	only=$(IFS=,; echo "$*")
	append="$append vmtest.only=$only"
fi

[ -f "$OUT/info" ] && sed 's/^/run: image: /' "$OUT/info"
start=$(date +%s.%N)
# -nographic: the serial console on stdio, into the log. stdin from
# /dev/null: under timeout QEMU is not in the terminal's foreground group.
timeout -k 10 "$TIMEOUT" qemu-system-x86_64 -accel tcg -m 1024 -smp 2 -nographic -no-reboot -nic none \
	-kernel "$OUT/vmlinuz" -initrd "$OUT/initrd.img" -append "$append" \
	</dev/null >"$LOG" 2>&1 &
qpid=$!
# Follow the console while QEMU runs.
tail -n +1 -F --pid=$qpid "$LOG" 2>/dev/null | clean | grep -a --line-buffered -E '^VM(INFO|TEST) ' &
tpid=$!
wait $qpid
qrc=$?
wait $tpid 2>/dev/null
took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')

lines=$(clean <"$LOG" | grep -a -E '^VM(INFO|TEST|LOG) ')
tests=$(grep -a '^VMTEST ' <<<"$lines")
planned=$(grep -a -m1 '^VMINFO plan: ' <<<"$lines" | sed -E 's/^VMINFO plan: [0-9]+ scenarios: ?//')
passed=$(grep -a -E '^VMTEST [^ ]+: PASS' <<<"$tests" | grep -v '^VMTEST RESULT:' | sed -E 's/^VMTEST ([^:]+): PASS.*/\1/')
# Skipped: a scenario whose feature this btnsd lacks; neither passed nor
# failed, and named as skipped in the verdict.
skipped=$(grep -a -E '^VMTEST [^ ]+: skipped: ' <<<"$tests" | sed -E 's/^VMTEST ([^:]+): skipped: .*/\1/')

reason=""
if [ $qrc = 124 ] || [ $qrc = 137 ]; then
	reason="the VM did not finish within ${TIMEOUT}s (BTNSD_VM_TIMEOUT)"
elif ! grep -q '^VMTEST RESULT: ' <<<"$tests"; then
	reason="the VM stopped without a result (qemu exit $qrc)"
fi
missing=""
for s in $planned; do
	grep -qx "$s" <<<"$passed" || grep -qx "$s" <<<"$skipped" || missing="$missing $s"
done
if [ -z "$reason" ] && [ -n "$missing" ]; then
	reason="not passed:$missing"
fi
if [ -z "$reason" ] && [ -z "$planned" ]; then
	reason="the VM ran no scenario"
fi
if [ -z "$reason" ] && [ -n "$planned" ] && [ "$(echo $planned | wc -w)" = "$(echo $skipped | wc -w)" ]; then
	reason="every scenario the VM planned skipped itself: nothing was tested"
fi
if [ -z "$reason" ] && ! grep -q '^VMTEST RESULT: PASS' <<<"$tests"; then
	reason="the VM reported $(grep '^VMTEST RESULT: ' <<<"$tests")"
fi

if [ -z "$reason" ]; then
	ran=$(for s in $planned; do grep -qx "$s" <<<"$skipped" || echo "$s"; done)
	echo "run: PASS: $(echo $ran | wc -w) scenarios in ${took}s ($(echo $ran))"
	if [ -n "$skipped" ]; then
		grep -a -E '^VMTEST [^ ]+: skipped: ' <<<"$tests" | sed -E 's/^VMTEST ([^:]+): skipped: (.*)/run: NOT RUN: \1 (skipped: \2)/'
	fi
	exit 0
fi

echo
echo "run: FAIL: $reason (VM ran ${took}s)"
grep -a -E '^VMTEST [^ ]+: FAIL' <<<"$tests" | grep -v '^VMTEST RESULT:' | sed 's/^/run:   /'
if grep -q '^VMLOG ' <<<"$lines"; then
	echo "run: evidence from the VM:"
	grep -a '^VMLOG ' <<<"$lines" | sed 's/^VMLOG /  /'
fi
if ! grep -q '^VMTEST RESULT: ' <<<"$tests"; then
	echo "run: last 30 console lines:"
	clean <"$LOG" | tail -n 30 | sed 's/^/  | /'
fi
echo "run: whole console log: $LOG"
exit 1
