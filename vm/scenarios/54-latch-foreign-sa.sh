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

expect_break a "$id" "foreign SA" "after the foreign SA"
expect_abort a "$ib"
report "foreign SA to BROKEN $(ms_between "$t0" "$TB") ms ($(jq -r .reason <<<"$ALERT")), BROKEN to the server's abort $(ms_between "$TB" "$TE") ms"
