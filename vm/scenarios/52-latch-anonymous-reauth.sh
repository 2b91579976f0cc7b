# An anonymous peer is its IKE SA lineage (RFC 5387 5.8): b, anonymous to
# a (both policies anonymous = yes, peers = none), brings up btns.lan.anon
# and a latched flow to a's server; a's latch names an anonymous peer. b
# reauthenticates its IKE SA (swanctl --rekey --reauth): the new IKE SA is
# no rekey of the old, so it is another peer, and a's latch goes BROKEN
# (RFC 5660 2.3). With on_break = notify the alert is all: the flow lives
# on, and the latch stays listed as BROKEN.
lab_up a b
# make-before-break: b's new IKE SA and child come up before the old ones
# go, so the latch breaks for the new lineage alone (not for losing its SA).
CHARON_EXTRA="make_before_break = yes"
anon="peers = none
      anonymous = yes"
latch_flow "$anon" "$anon" "btns {
          on_break = notify
        }"
ib=$(addr4 b)
id=$(jq -r .id <<<"$LATCH_A")
jq -e '.peer.kind == "anonymous" and .peer.lineage > 0 and .disposition == "notify"' <<<"$LATCH_A" >/dev/null ||
	fail "a's latch is $(jq -c '{peer, disposition}' <<<"$LATCH_A"), want an anonymous peer (a lineage) and notify"
[ "$(jq -r .protection.conn <<<"$LATCH_A")" = btns.lan.anon ] || fail "a's latch is in $(jq -r .protection.conn <<<"$LATCH_A"), want btns.lan.anon"

watch_start a
ike=$(ike_id b btns.lan.anon)
[ -n "$ike" ] || fail "b has no established IKE SA in btns.lan.anon"
t0=$(date +%s.%N)
log "b reauthenticates IKE SA #$ike"
swan b --rekey --ike-id "$ike" --reauth >"$VMT_DIR/reauth.log" 2>&1 || fail "swanctl --rekey --reauth on b: $(tail -n 2 "$VMT_DIR/reauth.log" | tr '\n' ' ')"
new_ike() {
	local n
	n=$(ike_id b btns.lan.anon)
	[ -n "$n" ] && [ "$n" != "$ike" ]
}
eventually_why 20 "b's new IKE SA in btns.lan.anon" "swan b --list-sas | grep ESTABLISHED" new_ike
log "b's new IKE SA: #$(ike_id b btns.lan.anon)"

alert=$(wait_alert a 15 "a's latch $id BROKEN after b's reauthentication" ".latch == $id and .to == \"BROKEN\"")
log "alert: $alert"
tb=$(epoch "$(jq -r .at <<<"$alert")")
# The new SA is congruent in every parameter but the peer: it must not
# mend the latch. Once a holds only the new IKE SA with its child, the
# latch is still BROKEN.
only_new() {
	local sas
	sas=$(swan a --list-sas)
	[ "$(grep -c ', ESTABLISHED' <<<"$sas")" = 1 ] && grep -q "host: #[0-9]*, reqid [0-9]*, INSTALLED, TRANSPORT" <<<"$sas"
}
eventually_why 20 "a holding b's new IKE SA only" "swan a --list-sas | grep -E 'ESTABLISHED|INSTALLED'" only_new
sleep 0.5
l=$(latch_of a ".id == $id") || fail "a's latch $id is gone; with notify it stays, BROKEN"
jq -e '.state == "BROKEN"' <<<"$l" >/dev/null || fail "a's latch $id is $(jq -r .state <<<"$l") after the alert, want BROKEN: $l"
log "latch: $l"

# notify: no reset; the flow goes on (over the new SA).
sleep 1
! grep -q '^error' "$LAB/a/server.log" "$LAB/b/client.log" ||
	fail "on_break = notify, but the application saw an error: $(grep -h '^error' "$LAB/a/server.log" "$LAB/b/client.log" | head -n 2 | tr '\n' ' ')"
report "reauthentication to BROKEN $(ms_between "$t0" "$tb") ms ($(jq -r .reason <<<"$alert"))"
