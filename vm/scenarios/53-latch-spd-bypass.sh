# An SPD bypass breaks the latch: with the latched flow of 50-latch-flow
# between a and b, a's administrator adds a kernel policy that lets the
# flow's outbound traffic leave in the clear, above charon's IPsec policy
# (ip xfrm policy add ... proto 6 sport 5001 dport <client port> dir out
# action allow priority 1). The flow is no
# longer protected by its latched SA whatever charon says, so btnsd,
# watching the kernel's SPD, breaks the latch and (on_break = reset) the
# server's connection is aborted.
#
# Needs btnsd's kernel SPD/SAD watch (package latchmon/xfrm): vm/build.sh
# writes "kernel-spd" to /btnsd-vm/features when btnsd links it. Without it
# the scenario says "skipped", never PASS.
has_feature kernel-spd || skip "btnsd has no kernel SPD watch yet"

lab_up a b
latch_flow
ia=$(addr4 a)
ib=$(addr4 b)
id=$(jq -r .id <<<"$LATCH_A")

watch_start a
t0=$(date +%s.%N)
# The flow's own selector: charon's policy covers every protocol between
# the two addresses, and the kernel refuses a second policy with its
# selector. "proto 6": the image has no /etc/protocols.
ip -n a xfrm policy add src "$ia/32" dst "$ib/32" proto 6 sport 5001 dport "$CPORT" dir out action allow priority 1
log "a's SPD now: $(ip -n a xfrm policy | grep -A1 "^src $ia/32 dst $ib/32" | paste -sd' ')"

expect_break a "$id" "bypass policy" "after the bypass policy"
expect_abort a "$ib"
report "bypass policy to BROKEN $(ms_between "$t0" "$TB") ms ($(jq -r .reason <<<"$ALERT")), BROKEN to the server's abort $(ms_between "$TB" "$TE") ms"
