# Two btnsd hosts that trusted each other's keys (btnsctl key host / key add
# --trust) get a BTNS SA in transport mode with real kernel ESP: b initiates
# btns.lan.<a's fp16>, both kernels hold the same pair of transport-mode ESP
# SAs, a TCP transfer arrives intact and each side's ESP packet counters
# match the other's.
lab_up a b
charon_start a b
policy a lan.conf "$(btns_policy lan "$(addr4 b)" transport)"
policy b lan.conf "$(btns_policy lan "$(addr4 a)" transport)"
btnsd_start a b

trust a b
trust b a
fa=$(fp16 a)
fb=$(fp16 b)
wait_conn a "btns.lan.$fb"
wait_conn b "btns.lan.$fa"

initiate b "btns.lan.$fa" host || fail "b could not initiate btns.lan.$fa: $(tail -n 2 "$VMT_DIR/initiate.log" | tr '\n' ' ')"

# a sees b's key, in b's connection, from b's address; the child is
# transport-mode ESP.
sas=$(swan a --list-sas)
echo "$sas"
grep -q "^btns\.lan\.$fb: #[0-9]*, ESTABLISHED" <<<"$sas" || fail "a has no established IKE SA in btns.lan.$fb"
grep -q "remote  *'$(keyid b)' @ $(addr4 b)" <<<"$sas" || fail "a's IKE SA is not with b's keyid $(keyid b) at $(addr4 b)"
grep -q "host: #[0-9]*, reqid [0-9]*, INSTALLED, TRANSPORT, ESP" <<<"$sas" || fail "a's CHILD_SA is not an installed transport-mode ESP SA"

spis=$(esp_pair a b transport)
log "kernel ESP SAs a<->b in transport mode, SPIs $spis"
grep -q "dir out" <<<"$(ip -n a xfrm policy)" || fail "a has no outbound IPsec policy"

before=$(esp_packets b "$(addr4 b)" "$(addr4 a)")
tcp_transfer b a 200000
ip netns exec a ping -c 3 -i 0.2 -W 2 "$(addr4 b)" >/dev/null || fail "ping a -> b over the SA failed"
after=$(esp_packets b "$(addr4 b)" "$(addr4 a)")
[ $((after - before)) -ge 100 ] || fail "b's outbound ESP SA counted $((after - before)) packets for a 200 kB transfer (want >= 100)"
esp_counters_match a b
