# Keys a never trusted are refused. a trusts b's key only (b is a key-only
# host here); c, whose key a does not know, initiates to a twice: with its
# own identity (its btnsd's BTNS connection to a), and with its own key but
# claiming b's identity (keyid), as an impostor would. Both are refused by
# a's charon, and no IKE SA or kernel ESP SA exists on either side.
lab_up a b c
charon_start a c
policy a lan.conf "$(btns_policy lan "$(addr4 b)" transport)"
policy c lan.conf "$(btns_policy lan "$(addr4 a)" transport)"
btnsd_start a c

trust a b # a knows b only
trust c a # c knows a; a does not know c
fa=$(fp16 a)
fb=$(fp16 b)
wait_conn a "btns.lan.$fb"
wait_conn c "btns.lan.$fa"

# 1. c as itself.
if initiate c "btns.lan.$fa" host; then
	fail "a accepted c's key, which it never trusted"
fi
grep -q "AUTHENTICATION_FAILED" "$VMT_DIR/initiate.log" ||
	fail "c's initiate failed, but not with AUTHENTICATION_FAILED: $(tail -n 2 "$VMT_DIR/initiate.log" | tr '\n' ' ')"
grep -q "no matching peer config found\|no trusted .* public key found for '$(keyid c)'" "$LAB/a/charon.log" ||
	fail "a's charon log does not say why it refused c (keyid $(keyid c))"
log "c as itself: refused ($(grep -o "no matching peer config found\|no trusted .* public key found for '$(keyid c)'" "$LAB/a/charon.log" | tail -n 1))"

# 2. c signs with its own key but claims b's identity, which a trusts.
sw=$LAB/c/swanctl
mkdir -p "$sw/pubkey"
host_pub c >"$sw/pubkey/c.pub"
host_pub a >"$sw/pubkey/a.pub"
cat >"$sw/swanctl.conf" <<CONF
connections {
  impostor {
    remote_addrs = $(addr4 a)
    proposals = aes128-sha256-x25519
    local {
      auth = pubkey
      pubkeys = c.pub
      id = "keyid:#$(keyid_hex b)"
    }
    remote {
      auth = pubkey
      pubkeys = a.pub
    }
    children {
      impostor {
        mode = transport
        esp_proposals = aes128gcm16
      }
    }
  }
}
CONF
# (swanctl unloads btnsd's connections on c; btnsd loads them again, which
# does not matter here.)
ip netns exec c env STRONGSWAN_CONF="$LAB/c/strongswan.conf" SWANCTL_DIR="$sw" \
	swanctl --load-conns --uri "unix://$LAB/c/charon.vici" >"$VMT_DIR/load.log" 2>&1 ||
	fail "swanctl --load-conns on c: $(tail -n 2 "$VMT_DIR/load.log" | tr '\n' ' ')"
if initiate c impostor impostor; then
	fail "a accepted c's key for b's identity"
fi
grep -q "AUTHENTICATION_FAILED" "$VMT_DIR/initiate.log" ||
	fail "the impostor's initiate failed, but not with AUTHENTICATION_FAILED: $(tail -n 2 "$VMT_DIR/initiate.log" | tr '\n' ' ')"
# a took it for b (b's connection) and b's key did not verify its signature.
grep -q "<btns\.lan\.$fb|[0-9]*> signature validation failed" "$LAB/a/charon.log" ||
	fail "a's charon log does not show b's key rejecting the impostor's signature in btns.lan.$fb"
log "c claiming b's identity: refused (b's pinned key does not verify c's signature)"

n=$(count "$(swan a --list-sas | grep ESTABLISHED || true)")
[ "$n" = 0 ] || fail "a has $n established IKE SA(s) after refusing c"
no_esp a
no_esp c
