#!/bin/bash
# The VM's /init (vm/build.sh puts it there): mounts, loads the kernel
# modules of /btnsd-vm/modules, checks that the kernel installs ESP SAs, runs
# the scenarios /btnsd-vm/scenarios/NN-name.sh in order, each in a fresh
# bash with lib.sh sourced and the hosts removed afterwards, and powers off.
#
# What it prints on the console (vm/run.sh reads it):
#   VMINFO ...                       progress and versions
#   VMTEST <name>: PASS | FAIL: <reason> | skipped: <reason>
#   VMLOG <name> | ...               on a failure: the scenario's output and
#                                    the hosts' charon and btnsd log tails
#   VMTEST RESULT: PASS | FAIL
# Kernel command line: vmtest.only=<word>[,<word>...] runs only the scenarios
# whose name contains one of the words; vmtest.timeout=<s> per scenario
# (default 180).
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LC_ALL=C
V=/btnsd-vm

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mkdir -p /run/netns /tmp/vmtest

up() { cut -d' ' -f1 /proc/uptime; }
off() {
	echo "VMINFO poweroff at ${1:-$(up)}s"
	sync
	echo o >/proc/sysrq-trigger
	sleep 30
}
result() {
	echo "VMTEST RESULT: $1"
	off
}

only="" timeout=180
for arg in $(cat /proc/cmdline); do
	case $arg in
	vmtest.only=*) only=${arg#vmtest.only=} ;;
	vmtest.timeout=*) timeout=${arg#vmtest.timeout=} ;;
	esac
done

echo "VMINFO boot: kernel $(uname -r), $(nproc) CPUs, btnsd $(cat $V/commit 2>/dev/null), $(/usr/lib/ipsec/charon --version 2>&1 | head -n1), init at $(up)s"

# Modules: a failure is fatal unless the module is marked optional.
failed_mods=""
while read -r m opt; do
	case $m in '' | '#'*) continue ;; esac
	if ! err=$(modprobe "$m" 2>&1); then
		if [ "$opt" = optional ]; then
			echo "VMINFO module $m not loaded (optional): $err"
		else
			failed_mods="$failed_mods $m"
			echo "VMINFO module $m: $err"
		fi
	fi
done <$V/modules
if [ -n "$failed_mods" ]; then
	echo "VMTEST setup: FAIL: modules not loaded:$failed_mods"
	result FAIL
fi

# The point of the VM: this kernel installs ESP SAs (transport mode, GCM).
ip netns add probe
if ! err=$(ip -n probe xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100 mode transport \
	aead 'rfc4106(gcm(aes))' 0x0102030405060708090a0b0c0d0e0f1011121314 128 2>&1); then
	echo "VMTEST setup: FAIL: the kernel refuses an ESP SA: $err"
	result FAIL
fi
ip netns del probe
echo "VMINFO kernel ESP ok, modules loaded at $(up)s"

# The scenarios.
scenarios=()
for f in $V/scenarios/[0-9]*.sh; do
	[ -e "$f" ] || continue
	name=$(basename "$f" .sh)
	name=${name#[0-9]*-}
	if [ -n "$only" ]; then
		keep=0
		for w in ${only//,/ }; do
			case $name in *"$w"*) keep=1 ;; esac
		done
		[ $keep = 1 ] || continue
	fi
	scenarios+=("$f")
done
names=()
for f in "${scenarios[@]}"; do
	n=$(basename "$f" .sh)
	names+=("${n#[0-9]*-}")
done
echo "VMINFO plan: ${#scenarios[@]} scenarios: ${names[*]}"
[ ${#scenarios[@]} -gt 0 ] || {
	echo "VMTEST setup: FAIL: no scenario to run (vmtest.only=$only)"
	result FAIL
}

# vmlog NAME: the evidence of a failed scenario, a few lines per source
# (charon's VICI chatter left out).
vmlog() {
	local name=$1 dir=/tmp/vmtest/$1 h d
	{
		echo "--- scenario output (last 20 lines)"
		tail -n 20 "$dir/out.log"
		for d in /tmp/lab/*/; do
			h=$(basename "$d")
			if [ -f "$d/charon.log" ]; then
				echo "--- charon log of $h (last 12 lines, without VICI requests)"
				grep -v '\[CFG\] vici client' "$d/charon.log" | tail -n 12
			fi
			if [ -s "$d/charon.out" ]; then
				echo "--- charon stdout/stderr of $h"
				tail -n 5 "$d/charon.out"
			fi
			if [ -f "$d/btnsd.log" ]; then
				echo "--- btnsd log of $h (last 8 lines)"
				tail -n 8 "$d/btnsd.log"
			fi
			if [ -f "$d/charon.log" ]; then
				echo "--- kernel ESP SAs of $h (src dst spi mode)"
				ip -n "$h" xfrm state 2>/dev/null | awk '/^src /{s=$2" "$4} /^\tproto esp/{print s, $4, $8}' | head -n 6
			fi
		done
		echo "--- dmesg (last 3 lines)"
		dmesg | tail -n 3
	} 2>&1 | sed "s/^/VMLOG $name | /"
}

failed=0
for f in "${scenarios[@]}"; do
	n=$(basename "$f" .sh)
	name=${n#[0-9]*-}
	dir=/tmp/vmtest/$name
	rm -rf /tmp/lab
	mkdir -p "$dir" /tmp/lab
	start=$(up)
	echo "VMINFO $name: start at ${start}s"
	LAB=/tmp/lab VMT_DIR=$dir VMT_NAME=$name timeout -k 5 "$timeout" \
		bash -c 'source /btnsd-vm/lib.sh; source "$1"' scenario "$f" >"$dir/out.log" 2>&1
	rc=$?
	took=$(awk -v a="$start" -v b="$(up)" 'BEGIN{printf "%.1f", b-a}')
	if [ $rc = 0 ] && [ -s "$dir/skip" ]; then
		# A scenario that did not run its checks (lib.sh's skip) is
		# never a PASS.
		echo "VMTEST $name: skipped: $(head -n 1 "$dir/skip")"
	elif [ $rc = 0 ]; then
		echo "VMTEST $name: PASS (${took}s)"
	else
		failed=1
		if [ $rc = 124 ] || [ $rc = 137 ]; then
			reason="timed out after ${timeout}s; last step: $(grep '^\[' "$dir/out.log" | tail -n 1)"
		elif [ -s "$dir/reason" ]; then
			reason=$(head -n 1 "$dir/reason")
		else
			reason="exit $rc: $(tail -n 1 "$dir/out.log")"
		fi
		echo "VMTEST $name: FAIL: $reason"
		vmlog "$name"
	fi
	[ ! -s "$dir/report" ] || sed "s/^/VMINFO $name: /" "$dir/report"
	(source $V/lib.sh && lab_down) >/dev/null 2>&1
done

if [ $failed = 0 ]; then
	result PASS
else
	result FAIL
fi
