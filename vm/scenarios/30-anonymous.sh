# Anonymous peers (RFC 5387 stand-alone BTNS): c, unknown to a, initiates
# the anonymous connection btns.lan.anon. With anonymous peers off on a it
# is refused; once a's policy says "anonymous = yes" under btns { }, c gets
# an SA in btns.lan.anon with transport-mode kernel ESP, and traffic flows
# through it with matching counters.
lab_up a b c
charon_start a c
policy a lan.conf "$(btns_policy lan "$(addr4 c)" transport)"
policy c lan.conf "$(btns_policy lan "$(addr4 a)" transport "anonymous = yes")"
btnsd_start a c
wait_conn c btns.lan.anon

if initiate c btns.lan.anon host; then
	fail "a accepted an anonymous peer with anonymous peers off"
fi
log "anonymous c refused while a's policy has anonymous off"
no_esp a

policy a lan.conf "$(btns_policy lan "$(addr4 c)" transport "anonymous = yes")"
wait_conn a btns.lan.anon
initiate c btns.lan.anon host || fail "anonymous c refused with anonymous = yes on a: $(tail -n 2 "$VMT_DIR/initiate.log" | tr '\n' ' ')"

sas=$(swan a --list-sas)
echo "$sas"
grep -q "^btns\.lan\.anon: #[0-9]*, ESTABLISHED" <<<"$sas" || fail "a has no established IKE SA in btns.lan.anon"
grep -q "remote  *'btns-anonymous' @ $(addr4 c)" <<<"$sas" || fail "a's anonymous IKE SA is not with btns-anonymous at $(addr4 c)"
[ "$(echo "$sas" | grep -c ESTABLISHED)" = 1 ] || fail "a has more than one IKE SA"
grep -q "host: #[0-9]*, reqid [0-9]*, INSTALLED, TRANSPORT, ESP" <<<"$sas" || fail "the anonymous CHILD_SA is not an installed transport-mode ESP SA"

spis=$(esp_pair a c transport)
log "kernel ESP SAs a<->c in transport mode, SPIs $spis"
before=$(esp_packets c "$(addr4 c)" "$(addr4 a)")
tcp_transfer c a 100000
after=$(esp_packets c "$(addr4 c)" "$(addr4 a)")
[ $((after - before)) -ge 50 ] || fail "c's outbound ESP SA counted $((after - before)) packets for a 100 kB transfer (want >= 50)"
esp_counters_match a c
