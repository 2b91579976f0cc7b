# Helpers for the VM's scenarios (sourced by bash; see vm/README.md).
#
# A scenario builds its own hosts with lab_up: each host is a network
# namespace on one bridge, like integration/lab: host number i (in the order
# given) has 10.99.0.i/24 and fd00:99::i/64 on eth0. Each host runs its own
# charon with kernel-netlink (real kernel ESP) and, when started, btnsd.
# Files of host h live in $LAB/h: strongswan.conf, charon.log, charon.vici,
# btnsd/ (btnsd's --root), btnsd.log. The init removes every host after each
# scenario, whatever happened.
#
# A scenario fails by calling fail "reason" (or by any command failing under
# "set -e"); the reason is what vm/run.sh prints.

set -eEuo pipefail
shopt -s inherit_errexit
LAB=${LAB:-/tmp/lab}
VMT_DIR=${VMT_DIR:-/tmp/vmtest/scratch}
mkdir -p "$LAB" "$VMT_DIR"

# count TEXT: its non-empty lines.
count() { printf '%s\n' "$1" | awk 'NF{n++} END{print n+0}'; }

uptime_s() { cut -d' ' -f1 /proc/uptime; }
log() { echo "[$(uptime_s)] $*"; }

# fail REASON: ends the scenario; REASON is its one-line verdict.
fail() {
	echo "$*" >"$VMT_DIR/reason"
	log "FAIL: $*"
	exit 1
}

# report TEXT: a line the init prints after the verdict, as
# "VMINFO <name>: TEXT" (timings).
report() {
	echo "$*" >>"$VMT_DIR/report"
	log "report: $*"
}

# skip REASON: ends the scenario without a verdict: the init reports
# "VMTEST <name>: skipped: REASON", never PASS.
skip() {
	echo "$*" >"$VMT_DIR/skip"
	log "skipped: $*"
	exit 0
}

# has_feature NAME: btnsd has the feature (a line of /btnsd-vm/features,
# written by vm/build.sh).
has_feature() { grep -qx "$1" /btnsd-vm/features 2>/dev/null; }

# Any failing command without its own check ends the scenario with its line.
trap 'rc=$?; [ -s "$VMT_DIR/reason" ] || echo "command failed (exit $rc) at ${BASH_SOURCE[0]##*/}:$LINENO: $BASH_COMMAND" >"$VMT_DIR/reason"' ERR

# eventually SECONDS WHAT CMD...: runs CMD every 0.2 s until it succeeds;
# fails the scenario with WHAT after SECONDS.
eventually() {
	local secs=$1 what=$2 start
	shift 2
	start=$(date +%s)
	until "$@" >/dev/null 2>&1; do
		[ $(($(date +%s) - start)) -lt "$secs" ] || fail "$what: not within ${secs}s"
		sleep 0.2
	done
}

# ---- hosts

# lab_up HOST...: the hosts on one bridge (namespace "sw").
lab_up() {
	local i=0 h
	ip netns add sw
	ip -n sw link add br0 type bridge
	ip -n sw link set br0 up
	for h in "$@"; do
		i=$((i + 1))
		mkdir -p "$LAB/$h"
		echo "10.99.0.$i" >"$LAB/$h/addr4"
		echo "fd00:99::$i" >"$LAB/$h/addr6"
		ip netns add "$h"
		ip link add eth0 netns "$h" type veth peer name "p$i" netns sw
		ip -n sw link set "p$i" master br0 up
		ip -n "$h" link set lo up
		ip netns exec "$h" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
		ip -n "$h" addr add "10.99.0.$i/24" dev eth0
		ip -n "$h" addr add "fd00:99::$i/64" dev eth0 nodad
		ip -n "$h" link set eth0 up
	done
	log "hosts $* up"
}

addr4() { cat "$LAB/$1/addr4"; }
addr6() { cat "$LAB/$1/addr6"; }

# lab_down: stops every process in the hosts' namespaces and removes them.
# The init calls it after each scenario.
lab_down() {
	local ns pid
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			kill -TERM "$pid" 2>/dev/null || true
		done
	done
	sleep 0.3
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			kill -KILL "$pid" 2>/dev/null || true
		done
		ip netns del "$ns" 2>/dev/null || true
	done
}

# ---- charon
# charon_start HOST...: charon with kernel-netlink on each HOST, as the
# integration lab runs it on a kernel with ESP; waits until every VICI
# socket answers.
charon_start() {
	local h d i
	for h in "$@"; do
		d=$LAB/$h
		charon_conf "$h" >"$d/strongswan.conf"
		ip netns exec "$h" env STRONGSWAN_CONF="$d/strongswan.conf" \
			sh -c 'mount -t tmpfs tmpfs /run && exec /usr/lib/ipsec/charon' >"$d/charon.out" 2>&1 &
		echo $! >"$d/charon.pid"
	done
	for h in "$@"; do
		d=$LAB/$h
		for i in $(seq 1 150); do
			[ -S "$d/charon.vici" ] && swan "$h" --version >/dev/null 2>&1 && break
			kill -0 "$(cat "$d/charon.pid")" 2>/dev/null || fail "charon on $h exited: $(tail -n 3 "$d/charon.out" | tr '\n' ' ')"
			[ "$i" -lt 150 ] || fail "charon on $h: no VICI socket within 30s"
			sleep 0.2
		done
		log "charon on $h up"
	done
}

# charon_conf HOST: the host's strongswan.conf; $CHARON_EXTRA goes into its
# charon { } section.
charon_conf() {
	local d=$LAB/$1
	cat <<EOF
# btnsd VM, host $1 (kernel-netlink)
charon {
  load_modular = no
  load = random nonce openssl pem pkcs1 pkcs8 pubkey x509 revocation constraints sshkey curve25519 sha1 sha2 hmac aes gcm kdf kernel-netlink socket-default vici updown counters
  install_routes = no
  install_virtual_ip = no
  retransmit_tries = 3
  retransmit_timeout = 2.0
  retransmit_base = 1.4
  ${CHARON_EXTRA:-}
  plugins {
    vici {
      socket = unix://$d/charon.vici
    }
  }
  filelog {
    vm {
      path = $d/charon.log
      time_format = %H:%M:%S
      ike_name = yes
      append = yes
      flush_line = yes
      default = 1
      ike = 2
      cfg = 2
      knl = 1
      chd = 2
    }
  }
}
swanctl {
  load = random nonce openssl pem pkcs1 pkcs8 pubkey x509 sshkey curve25519 sha1 sha2
}
pki {
  load = random nonce openssl pem pkcs1 pkcs8 pubkey x509 sshkey curve25519 sha1 sha2
}
EOF
}

# swan HOST ARGS...: swanctl against the host's charon.
swan() {
	local h=$1 d=$LAB/$1
	shift
	ip netns exec "$h" env STRONGSWAN_CONF="$d/strongswan.conf" swanctl "$@" --uri "unix://$d/charon.vici"
}
# ---- btnsd

# btnsd_start HOST...: btnsd beside each HOST's charon, with the policy
# files already in $LAB/HOST/btnsd/policy.d; waits until each has
# synchronised with its charon.
btnsd_start() {
	local h d i
	for h in "$@"; do
		d=$LAB/$h
		mkdir -p "$d/btnsd/policy.d"
		ip netns exec "$h" btnsd --root "$d/btnsd" --vici "$d/charon.vici" \
			--run-dir "$d/btnsd-run" --state-dir "$d/btnsd-state" >"$d/btnsd.log" 2>&1 &
		echo $! >"$d/btnsd.pid"
	done
	for h in "$@"; do
		d=$LAB/$h
		for i in $(seq 1 150); do
			ctl "$h" status --json 2>/dev/null | jq -e '.charon.connected and .last_sync != null' >/dev/null 2>&1 && break
			kill -0 "$(cat "$d/btnsd.pid")" 2>/dev/null || fail "btnsd on $h exited: $(tail -n 3 "$d/btnsd.log" | tr '\n' ' ')"
			[ "$i" -lt 150 ] || fail "btnsd on $h: not synchronised with charon within 30s"
			sleep 0.2
		done
		log "btnsd on $h synchronised"
	done
}

# ctl HOST ARGS...: btnsctl for the host's btnsd.
ctl() {
	local h=$1 d=$LAB/$1
	shift
	btnsctl --root "$d/btnsd" --socket "$d/btnsd-run/btnsd.sock" "$@"
}

# policy HOST FILE TEXT: writes a policy file (atomically, as an editor).
policy() {
	local dir=$LAB/$1/btnsd/policy.d
	mkdir -p "$dir"
	printf '%s' "$3" >"$dir/.$2.tmp"
	mv "$dir/.$2.tmp" "$dir/$2"
}

# btns_policy NAME PEER-ADDRESS MODE [BTNS-SETTINGS [CHILD-SETTINGS]]: a BTNS
# policy file that initiates to PEER-ADDRESS and accepts trusted keys from
# anywhere.
btns_policy() {
	cat <<EOF
connections {
  $1 {
    remote_addrs = $2, %any
    proposals = aes128-sha256-x25519
    btns {
      enabled = yes
      ${4:-}
    }
    children {
      host {
        mode = $3
        esp_proposals = aes128gcm16
        ${5:-}
      }
    }
  }
}
EOF
}

# host_pub HOST: the host's public key (PEM), as its administrator hands it
# out (created if btnsd never ran there: a key-only host).
host_pub() { ctl "$1" key host --create --format pem; }

# fp16 HOST: the first 16 hex digits of the host key's SHA-256 fingerprint,
# as in charon connection names btns.<policy>.<fp16>.
fp16() {
	host_pub "$1" >"$LAB/$1/host.pub"
	ctl "$1" key fp "$LAB/$1/host.pub" --format hex | cut -c1-16
}

# keyid HOST: the host key's keyid as swanctl --list-sas prints it (colon
# hex); keyid_hex HOST: the same as 40 hex digits (id = "keyid:#<hex>").
keyid() {
	host_pub "$1" >"$LAB/$1/host.pub"
	ctl "$1" key fp "$LAB/$1/host.pub" --format keyid
}
keyid_hex() { keyid "$1" | tr -d :; }

# trust HOST PEER: HOST trusts PEER's key, as two administrators would.
trust() {
	host_pub "$2" >"$LAB/$1/$2.pub"
	ctl "$1" key add "$LAB/$1/$2.pub" --name "$2" --trust >/dev/null
	log "$1 trusts $2"
}

conn_loaded() { ctl "$1" status --json | jq -e --arg n "$2" 'any(.conns[]; .name == $n and .loaded)'; }

# wait_conn HOST NAME: until btnsd on HOST has loaded charon connection NAME.
wait_conn() { eventually 15 "connection $2 loaded by btnsd on $1" conn_loaded "$1" "$2"; }

# initiate HOST IKE CHILD: swanctl --initiate; returns its status, output in
# $VMT_DIR/initiate.log.
initiate() {
	log "$1 initiates $2 (child $3)"
	swan "$1" --initiate --ike "$2" --child "$3" --timeout 30 >"$VMT_DIR/initiate.log" 2>&1
}

# ---- kernel SAs

# xfrm_esp HOST: one line per kernel ESP SA: src dst spi mode packets bytes.
xfrm_esp() {
	ip -n "$1" -s xfrm state | awk '
		/^src /{ if (p=="esp") print s, d, spi, m, pk, by; s=$2; d=$4; p=""; spi=""; m=""; pk=""; by="" }
		/^\tproto /{ p=$2; spi=$4; sub(/\(.*/, "", spi); for (i=1;i<=NF;i++) if ($i=="mode") m=$(i+1) }
		/lifetime current:/{ cur=1; next }
		cur==1 { split($1,a,"("); by=a[1]; split($2,b,"("); pk=b[1]; cur=0 }
		END{ if (p=="esp") print s, d, spi, m, pk, by }'
}

# esp_pair A B MODE: both hosts hold the same two kernel ESP SAs (A to B and
# B to A, same SPIs) in MODE, and nothing else. Prints "spiAB spiBA".
esp_pair() {
	local a=$1 b=$2 mode=$3 ia ib sa sb
	ia=$(addr4 "$a")
	ib=$(addr4 "$b")
	sa=$(xfrm_esp "$a" | awk '{print $1, $2, $3, $4}' | sort)
	sb=$(xfrm_esp "$b" | awk '{print $1, $2, $3, $4}' | sort)
	[ "$(count "$sa")" = 2 ] || fail "$a has $(count "$sa") ESP SAs, want 2: {$(echo "$sa" | paste -sd';')}"
	[ "$sa" = "$sb" ] || fail "kernel ESP SAs differ: $a has {$(echo "$sa" | paste -sd';')}, $b has {$(echo "$sb" | paste -sd';')}"
	grep -q "^$ia $ib 0x[0-9a-f]* $mode\$" <<<"$sa" || fail "no $mode ESP SA $ia -> $ib: $(echo "$sa" | paste -sd';')"
	grep -q "^$ib $ia 0x[0-9a-f]* $mode\$" <<<"$sa" || fail "no $mode ESP SA $ib -> $ia: $(echo "$sa" | paste -sd';')"
	echo "$(echo "$sa" | awk -v s="$ia" -v d="$ib" '$1==s && $2==d {print $3}') $(echo "$sa" | awk -v s="$ib" -v d="$ia" '$1==s && $2==d {print $3}')"
}

# esp_packets HOST SRC DST: the packet counter of HOST's ESP SA SRC -> DST.
esp_packets() { xfrm_esp "$1" | awk -v s="$2" -v d="$3" '$1==s && $2==d {print $5}'; }

# no_esp HOST: fails unless HOST has no kernel ESP SA.
no_esp() {
	local n
	n=$(count "$(xfrm_esp "$1")")
	[ "$n" = 0 ] || fail "$1 has $n kernel ESP SA(s): $(xfrm_esp "$1" | paste -sd';')"
}

# ---- traffic

# tcp_transfer FROM TO BYTES: sends BYTES random bytes from FROM to TO with
# nc over TCP and checks they arrived intact.
tcp_transfer() {
	local from=$1 to=$2 n=$3 dst port=5001
	dst=$(addr4 "$to")
	head -c "$n" /dev/urandom >"$VMT_DIR/send.bin"
	rm -f "$VMT_DIR/recv.bin"
	ip netns exec "$to" timeout 60 nc -l "$dst" "$port" >"$VMT_DIR/recv.bin" 2>"$VMT_DIR/nc-l.err" &
	local lpid=$!
	eventually 10 "nc listening on $to:$port" sh -c "ip netns exec $to ss -Hltn 'sport = :$port' | grep -q ."
	ip netns exec "$from" timeout 60 nc -N -w 10 "$dst" "$port" <"$VMT_DIR/send.bin" 2>"$VMT_DIR/nc.err" ||
		fail "nc $from -> $to:$port failed: $(head -c 200 "$VMT_DIR/nc.err")"
	wait "$lpid" || fail "nc -l on $to failed: $(head -c 200 "$VMT_DIR/nc-l.err")"
	cmp -s "$VMT_DIR/send.bin" "$VMT_DIR/recv.bin" ||
		fail "TCP $from -> $to: received $(stat -c %s "$VMT_DIR/recv.bin") bytes, not the $n sent"
	log "TCP $from -> $to: $n bytes intact"
}

# esp_counters_match A B: each of A's ESP SAs counted the same packets as
# its peer on B, and some each way (a few tries: the last ACKs may still be
# on their way).
esp_counters_match() {
	local a=$1 b=$2 min=1 ia ib i aout bin bout ain
	ia=$(addr4 "$a")
	ib=$(addr4 "$b")
	for i in 1 2 3 4 5 6 7 8 9 10; do
		aout=$(esp_packets "$a" "$ia" "$ib")
		bin=$(esp_packets "$b" "$ia" "$ib")
		bout=$(esp_packets "$b" "$ib" "$ia")
		ain=$(esp_packets "$a" "$ib" "$ia")
		if [ "$aout" = "$bin" ] && [ "$bout" = "$ain" ] && [ "${aout:-0}" -ge "$min" ] && [ "${bout:-0}" -ge "$min" ]; then
			log "ESP packets: $a->$b $aout out / $bin in, $b->$a $bout out / $ain in"
			return 0
		fi
		sleep 0.3
	done
	fail "ESP counters: $a->$b $aout out / $bin in, $b->$a $bout out / $ain in (want equal pairs, >= $min)"
}

# ---- connection latching

# eventually_why SECONDS WHAT WHY CMD...: as eventually, and on a timeout
# the reason ends with the output of the command line WHY, run then.
eventually_why() {
	local secs=$1 what=$2 why=$3 start
	shift 3
	start=$(date +%s)
	until "$@" >/dev/null 2>&1; do
		[ $(($(date +%s) - start)) -lt "$secs" ] || fail "$what: not within ${secs}s; $(eval "$why" 2>&1 | tr '\n' ' ' | head -c 600)"
		sleep 0.2
	done
}

# take_address ATTACKER VICTIM: ATTACKER impersonates VICTIM on the link, as
# integration/lab's Host.TakeAddress: VICTIM's eth0 goes down, ATTACKER
# gives up its own addresses for VICTIM's, and every other host flushes its
# neighbour cache so that the next packet to that address reaches ATTACKER.
take_address() {
	local h=$1 v=$2 o
	ip -n "$v" link set eth0 down
	ip -n "$h" addr del "$(addr4 "$h")/24" dev eth0
	ip -n "$h" addr del "$(addr6 "$h")/64" dev eth0
	ip -n "$h" addr add "$(addr4 "$v")/24" dev eth0
	ip -n "$h" addr add "$(addr6 "$v")/64" dev eth0 nodad
	for o in $(ls "$LAB"); do
		[ -f "$LAB/$o/addr4" ] && [ "$o" != "$h" ] && [ "$o" != "$v" ] || continue
		ip -n "$o" neigh flush dev eth0
	done
	log "$h took $v's addresses ($(addr4 "$v"), $(addr6 "$v"))"
}

# app_start HOST NAME MODE ADDR: vmapp (vm/app) MODE ("server" or "client")
# for ADDR on HOST, its output in $LAB/HOST/NAME.log; waits for its first
# line ("listening" or "connected").
app_start() {
	local h=$1 name=$2 mode=$3 addr=$4 first
	ip netns exec "$h" vmapp "$mode" "$addr" >"$LAB/$h/$name.log" 2>&1 &
	echo $! >"$LAB/$h/$name.pid"
	first=listening
	[ "$mode" = server ] || first=connected
	app_wait "$h" "$name" 10 "$first"
	log "$mode on $h: $(app_line "$h" "$name" "$first")"
}

# app_line HOST NAME PREFIX: the app's first output line starting with PREFIX.
app_line() { grep -m1 "^$3" "$LAB/$1/$2.log"; }

# app_wait HOST NAME SECONDS PREFIX: until the app printed a line starting
# with PREFIX.
app_wait() {
	eventually_why "$3" "$2 on $1 printing '$4'" "echo it printed:; tail -n 3 '$LAB/$1/$2.log'" \
		grep -q "^$4" "$LAB/$1/$2.log"
}

# latches HOST: btnsctl latch list --json on HOST.
latches() { ctl "$1" latch list --json; }

# latch_of HOST JQ-CONDITION: the first of HOST's latches satisfying the jq
# condition, as one line of JSON; fails (status 1) when none does.
latch_of() { latches "$1" | jq -ce "first(.[] | select($2))"; }

# wait_latch HOST SECONDS WHAT JQ-CONDITION: until HOST has such a latch;
# prints it (one line of JSON).
wait_latch() {
	local h=$1 secs=$2 what=$3 cond=$4
	eventually_why "$secs" "$what" "echo latches on $h:; latches $h | jq -c '.[] | {id, state, local, remote, reason}'" \
		latch_of "$h" "$cond"
	latch_of "$h" "$cond"
}

# watch_start HOST: btnsctl latch watch --json on HOST in the background,
# one alert a line in $LAB/HOST/alerts.jsonl.
watch_start() {
	local h=$1
	: >"$LAB/$h/alerts.jsonl"
	ctl "$h" latch watch --json 2>"$LAB/$h/watch.err" | jq -c --unbuffered . >"$LAB/$h/alerts.jsonl" &
	# the subscription must reach btnsd before anything happens
	sleep 0.5
	[ ! -s "$LAB/$h/watch.err" ] || fail "btnsctl latch watch on $h: $(head -c 200 "$LAB/$h/watch.err")"
}

# alert_of HOST JQ-CONDITION: the first alert of HOST's watch satisfying the
# condition (one line of JSON); status 1 when none yet.
alert_of() {
	local out
	out=$(jq -c "select($2)" "$LAB/$1/alerts.jsonl" 2>/dev/null | head -n 1 || true)
	[ -n "$out" ] && echo "$out"
}

# wait_alert HOST SECONDS WHAT JQ-CONDITION: until HOST's watch saw such an
# alert; prints it.
wait_alert() {
	local h=$1 secs=$2 what=$3 cond=$4
	eventually_why "$secs" "$what" "echo alerts on $h:; jq -c '{latch, from, to, reason}' '$LAB/$h/alerts.jsonl' | tail -n 4" \
		alert_of "$h" "$cond"
	alert_of "$h" "$cond"
}

# expect_break HOST ID REASON-REGEX WHAT: waits up to 10 s for the alert
# of HOST's latch ID going from ESTABLISHED to BROKEN with a reason that
# matches; sets ALERT (the alert's JSON) and TB (its time, Unix seconds).
expect_break() {
	local h=$1 id=$2 re=$3 what=$4
	ALERT=$(wait_alert "$h" 10 "$h's latch $id BROKEN $what" ".latch == $id and .to == \"BROKEN\"")
	log "alert: $ALERT"
	jq -e --arg re "$re" '.from == "ESTABLISHED" and (.reason | test($re))' <<<"$ALERT" >/dev/null ||
		fail "$h's latch $id went BROKEN with $(jq -c '{from, reason}' <<<"$ALERT"), want from ESTABLISHED with a reason matching '$re'"
	TB=$(epoch "$(jq -r .at <<<"$ALERT")")
}

# expect_abort HOST PEER: waits up to 5 s for HOST's test server to see its
# connection from PEER:$CPORT aborted (on_break = reset: ECONNABORTED); sets
# TE to when it did (Unix seconds).
expect_abort() {
	local h=$1 peer=$2 err
	# The abort shows on the server's read or, if it was echoing at that
	# moment, on its write.
	app_wait "$h" server 5 "error: [a-z]* $peer:$CPORT"
	err=$(app_line "$h" server "error: [a-z]* $peer:$CPORT")
	grep -q "connection abort" <<<"$err" || fail "$h's server saw '$err', want the connection aborted (ECONNABORTED)"
	TE=$(sed 's/.* t=//' <<<"$err")
}

# epoch TIME: an RFC 3339 time (as btnsd's JSON has it) in Unix seconds
# with nanoseconds.
epoch() { date -d "$1" +%s.%N; }

# ms_between T0 T1: milliseconds from Unix time T0 to T1.
ms_between() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", (b-a)*1000}'; }

# ike_id HOST CONN: the unique id of HOST's established IKE SA of CONN.
ike_id() { swan "$1" --list-sas | sed -n "s/^$2: #\([0-9]*\), ESTABLISHED.*/\1/p" | head -n 1; }

# latch_flow [A-BTNS [B-BTNS [CHILD-SETTINGS]]]: the latched flow of the
# latch scenarios, on hosts a and b the scenario has brought up (lab_up):
# charon and btnsd on both, BTNS policies lan toward each other in
# transport mode (A-BTNS, B-BTNS under btns { }, CHILD-SETTINGS in the
# child), a and b trust each other's keys unless B-BTNS says "peers = none"
# (b anonymous: b initiates btns.lan.anon), b brings up the SA (kernel ESP
# SAs checked), vmapp's server on a:5001 and its client on b. Waits for a's
# and b's latches of the flow to be ESTABLISHED and sets:
#   FA, FB        fp16 of a's and b's host keys (charon connection names)
#   FPA, FPB      their fingerprints as btnsd prints them (SHA256:...)
#   CPORT         the client's port
#   LATCH_A, LATCH_B   the latches of a and b (one line of JSON each)
#   SPIS          the kernel ESP SAs' SPIs (a->b b->a)
latch_flow() {
	local abtns=${1:-} bbtns=${2:-} child=${3:-} ia ib conn
	ia=$(addr4 a)
	ib=$(addr4 b)
	charon_start a b
	policy a lan.conf "$(btns_policy lan "$ib" transport "$abtns" "$child")"
	policy b lan.conf "$(btns_policy lan "$ia" transport "$bbtns" "$child")"
	btnsd_start a b
	FPA=$(ctl a status --json | jq -r .host_key.fingerprint)
	FPB=$(ctl b status --json | jq -r .host_key.fingerprint)
	FA=$(fp16 a)
	FB=$(fp16 b)
	case $bbtns in
	*"peers = none"*)
		conn=btns.lan.anon
		wait_conn a "$conn"
		wait_conn b "$conn"
		;;
	*)
		trust a b
		trust b a
		conn=btns.lan.$FA
		wait_conn a "btns.lan.$FB"
		wait_conn b "$conn"
		;;
	esac
	initiate b "$conn" host || fail "b could not initiate $conn: $(tail -n 2 "$VMT_DIR/initiate.log" | tr '\n' ' ')"
	SPIS=$(esp_pair a b transport)
	log "kernel ESP SAs a<->b in transport mode, SPIs $SPIS"

	app_start a server server "$ia:5001"
	app_start b client client "$ia:5001"
	CPORT=$(app_line b client connected | awk '{print $2}' | sed 's/.*://')
	[ -n "$CPORT" ] || fail "no client port in: $(app_line b client connected)"
	LATCH_A=$(wait_latch a 15 "a's latch of $ib:$CPORT -> $ia:5001 ESTABLISHED" \
		".proto == \"tcp\" and .state == \"ESTABLISHED\" and .local == \"$ia:5001\" and .remote == \"$ib:$CPORT\"")
	LATCH_B=$(wait_latch b 15 "b's latch of $ib:$CPORT -> $ia:5001 ESTABLISHED" \
		".proto == \"tcp\" and .state == \"ESTABLISHED\" and .local == \"$ib:$CPORT\" and .remote == \"$ia:5001\"")
	log "a's latch: $LATCH_A"
	log "b's latch: $LATCH_B"
}
