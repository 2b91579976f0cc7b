# A latched TCP flow (RFC 5660) over real kernel ESP: a and b trust each
# other's keys, b brings up the BTNS SA (transport mode, the same two ESP
# SAs in both kernels), vmapp's client on b connects to its server on a.
# btnsd latches the flow at both ends by itself: `btnsctl latch list --json`
# shows it ESTABLISHED with the peer's key fingerprint, the charon child and
# its ESP protection, on_break = reset; `latch show` gives the peer's public
# key; the flow's packets go through the ESP SAs.
lab_up a b
latch_flow
ia=$(addr4 a)
ib=$(addr4 b)

check_latch() {
	local h=$1 l=$2 peer=$3
	jq -e --arg fp "$peer" '.peer.kind == "key" and .peer.fingerprint == $fp' <<<"$l" >/dev/null ||
		fail "$h's latch peer is $(jq -c .peer <<<"$l"), want the key $peer"
	jq -e '.protection.protocol == "ESP" and (.protection.mode | ascii_upcase) == "TRANSPORT"
		and .protection.child == "host" and (.protection.conn | startswith("btns.lan."))
		and .protection.encr == "AES_GCM_16" and .protection.encr_keysize == 128' <<<"$l" >/dev/null ||
		fail "$h's latched protection is $(jq -c .protection <<<"$l"), want ESP transport AES_GCM_16/128 in btns.lan.*/host"
	jq -e '.disposition == "reset" and (.sas | length) >= 1' <<<"$l" >/dev/null ||
		fail "$h's latch: disposition $(jq -r .disposition <<<"$l"), SAs $(jq -c .sas <<<"$l"): want reset and a bound SA"
}
check_latch a "$LATCH_A" "$FPB"
check_latch b "$LATCH_B" "$FPA"
[ "$(jq -r .protection.conn <<<"$LATCH_A")" = "btns.lan.$FB" ] || fail "a's latch is in $(jq -r .protection.conn <<<"$LATCH_A"), want btns.lan.$FB"
[ "$(jq -r .protection.conn <<<"$LATCH_B")" = "btns.lan.$FA" ] || fail "b's latch is in $(jq -r .protection.conn <<<"$LATCH_B"), want btns.lan.$FA"

# INQUIRE_LATCH: the peer's public key is b's.
id=$(jq -r .id <<<"$LATCH_A")
ctl a latch show "$id" --json >"$VMT_DIR/show.json"
jq -r .peer.public_key "$VMT_DIR/show.json" | grep -q "BEGIN PUBLIC KEY" || fail "btnsctl latch show $id on a has no peer public key: $(head -c 300 "$VMT_DIR/show.json")"
[ "$(jq -r .peer.public_key "$VMT_DIR/show.json" | grep -v -- ----- | tr -d '\n')" = "$(grep -v -- ----- "$LAB/b/host.pub" | tr -d '\n')" ] ||
	fail "the public key of a's latch $id is not b's host key"

# The flow is protected: its packets go through the ESP SAs (the client
# sends a line every 100 ms and the server echoes it).
before=$(esp_packets a "$ib" "$ia")
sleep 1.5
after=$(esp_packets a "$ib" "$ia")
[ $((after - before)) -ge 5 ] || fail "a's inbound ESP SA counted $((after - before)) packets in 1.5 s of the flow (want >= 5)"
log "a's inbound ESP SA counted $((after - before)) packets of the flow in 1.5 s"

# Nothing broke.
for h in a b; do
	bad=$(latches "$h" | jq -c '[.[] | select(.state == "BROKEN")]')
	[ "$bad" = "[]" ] || fail "$h has BROKEN latches: $bad"
done
! grep -q '^error' "$LAB/a/server.log" "$LAB/b/client.log" || fail "the application saw an error: $(grep -h '^error' "$LAB/a/server.log" "$LAB/b/client.log" | head -n 2 | tr '\n' ' ')"
log "latch $id on a and $(jq -r .id <<<"$LATCH_B") on b ESTABLISHED, peers $FPB and $FPA"
