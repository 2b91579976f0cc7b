# The attacker's SA breaks the latch (RFC 5660 2.3, 5.5 (b)): with the
# latched flow of 50-latch-flow between a and b, c (a peer a trusts, with
# its own key: an insider) takes b's address (b's link down, c's own
# addresses removed, b's on c, a's neighbour cache flushed) and brings up
# its own SA with a, which covers the flow's addresses. a's latch goes
# BROKEN ("conflicting child SA") and, with on_break = reset (the default),
# btnsd destroys the socket: a's server sees its connection aborted.
# Reported: c's initiate to the BROKEN alert, and to the server's error.
lab_up a b c
latch_flow
ia=$(addr4 a)
ib=$(addr4 b)
id=$(jq -r .id <<<"$LATCH_A")

charon_start c
policy c lan.conf "$(btns_policy lan "$ia" transport)"
btnsd_start c
trust a c
trust c a
FC=$(fp16 c)
wait_conn a "btns.lan.$FC"
wait_conn c "btns.lan.$FA"

watch_start a
take_address c b

t0=$(date +%s.%N)
initiate c "btns.lan.$FA" host || fail "c (as $ib) could not initiate btns.lan.$FA: $(tail -n 2 "$VMT_DIR/initiate.log" | tr '\n' ' ')"
t1=$(date +%s.%N)
log "c's SA up: initiate took $(ms_between "$t0" "$t1") ms"

# a holds c's IKE SA, from b's address, in c's connection.
sas=$(swan a --list-sas)
grep -q "^btns\.lan\.$FC: #[0-9]*, ESTABLISHED" <<<"$sas" || fail "a has no IKE SA in btns.lan.$FC: $(echo "$sas" | grep ESTABLISHED | tr '\n' ' ')"
grep -q "remote  *'$(keyid c)' @ $ib" <<<"$sas" || fail "a's IKE SA is not with c's keyid at $ib"

expect_break a "$id" "conflicting child SA" "after c's SA"
# on_break = reset: the server's connection is aborted.
expect_abort a "$ib"
tb=$TB te=$TE

# The latch is no longer ESTABLISHED (reset: BROKEN, then CLOSED and gone).
if l=$(latch_of a ".id == $id"); then
	jq -e '.state != "ESTABLISHED"' <<<"$l" >/dev/null || fail "a's latch $id is ESTABLISHED again: $l"
fi
log "initiate to BROKEN: $(ms_between "$t0" "$tb") ms (swanctl --initiate returned after $(ms_between "$t0" "$t1") ms); initiate to the server's abort: $(ms_between "$t0" "$te") ms; BROKEN to abort: $(ms_between "$tb" "$te") ms"
report "c's initiate to BROKEN $(ms_between "$t0" "$tb") ms (c's swanctl --initiate returned after $(ms_between "$t0" "$t1") ms), BROKEN to the server's abort $(ms_between "$tb" "$te") ms"
