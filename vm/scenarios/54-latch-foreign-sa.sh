# A foreign SA breaks the latch: with the latched flow of 50-latch-flow
# between a and b, someone adds to a's kernel an ESP SA for the flow's
# addresses that charon did not negotiate (ip xfrm state add ... proto esp
# spi 0xbad0bad0 ...). The kernel's SAD now holds keys for the flow that
# no charon child SA owns, so btnsd, watching the kernel's SAD, breaks the
# latch (RFC 5660 2.3) and (on_break = reset) the server's connection is
# aborted.
#
# Needs btnsd's kernel SPD/SAD watch, as 53-latch-spd-bypass.
has_feature kernel-spd || skip "btnsd has no kernel SPD watch yet"

lab_up a b
latch_flow
ia=$(addr4 a)
ib=$(addr4 b)
id=$(jq -r .id <<<"$LATCH_A")

watch_start a
t0=$(date +%s.%N)
ip -n a xfrm state add src "$ib" dst "$ia" proto esp spi 0xbad0bad0 reqid 77 mode transport \
	aead 'rfc4106(gcm(aes))' 0x0102030405060708090a0b0c0d0e0f1011121314 128 ||
	fail "the kernel refused the foreign SA"
log "a's SAD now: $(ip -n a xfrm state | grep -c '^src') states, one with spi 0xbad0bad0"

alert=$(wait_alert a 10 "a's latch $id BROKEN after the foreign SA" ".latch == $id and .to == \"BROKEN\"")
log "alert: $alert"
jq -e '.from == "ESTABLISHED" and (.reason | test("foreign SA"))' <<<"$alert" >/dev/null ||
	fail "a's latch $id went BROKEN with $(jq -c '{from, reason}' <<<"$alert"), want from ESTABLISHED for the foreign SA"
tb=$(epoch "$(jq -r .at <<<"$alert")")

app_wait a server 5 "error: read $ib:$CPORT"
err=$(app_line a server "error: read $ib:$CPORT")
grep -q "connection abort" <<<"$err" || fail "a's server saw '$err', want the connection aborted (ECONNABORTED)"
te=$(sed 's/.* t=//' <<<"$err")
report "foreign SA to BROKEN $(ms_between "$t0" "$tb") ms ($(jq -r .reason <<<"$alert")), BROKEN to the server's abort $(ms_between "$tb" "$te") ms"
