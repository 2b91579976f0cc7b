package fingerprints

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"math/big"
	"strings"
	"testing"
)

func TestIPSECKEYPublicKey(t *testing.T) {
	t.Run("RSA", func(t *testing.T) {
		k := mustKey(t, genKey(t, "rsa2048"))
		alg, b, err := k.IPSECKEYPublicKey()
		if err != nil || alg != 2 {
			t.Fatalf("alg %d, %v", alg, err)
		}
		// RFC 3110: one length octet, exponent, modulus.
		pk := k.Key.(*rsa.PublicKey)
		el := int(b[0])
		e := new(big.Int).SetBytes(b[1 : 1+el])
		n := new(big.Int).SetBytes(b[1+el:])
		if e.Int64() != int64(pk.E) || n.Cmp(pk.N) != 0 || b[1] == 0 {
			t.Errorf("does not decode to the key")
		}
	})
	for _, c := range []struct {
		kind string
		size int
	}{{"p256", 32}, {"p384", 48}} {
		t.Run(c.kind, func(t *testing.T) {
			k := mustKey(t, genKey(t, c.kind))
			alg, b, err := k.IPSECKEYPublicKey()
			if err != nil || alg != 3 || len(b) != 2*c.size {
				t.Fatalf("alg %d, %d bytes, %v", alg, len(b), err)
			}
			pk := k.Key.(*ecdsa.PublicKey)
			if new(big.Int).SetBytes(b[:c.size]).Cmp(pk.X) != 0 || new(big.Int).SetBytes(b[c.size:]).Cmp(pk.Y) != 0 {
				t.Errorf("not x | y")
			}
		})
	}
	t.Run("Ed25519", func(t *testing.T) {
		k := mustKey(t, genKey(t, "ed25519"))
		alg, b, err := k.IPSECKEYPublicKey()
		if err != nil || alg != 4 || string(b) != string(k.Key.(ed25519.PublicKey)) {
			t.Fatalf("alg %d, %x, %v", alg, b, err)
		}
	})
	t.Run("P-521", func(t *testing.T) {
		_, _, err := mustKey(t, genKey(t, "p521")).IPSECKEYPublicKey()
		if !errors.Is(err, ErrUnsupportedKey) || !strings.Contains(err.Error(), "P-521") {
			t.Errorf("P-521: %v", err)
		}
	})
}

func TestIPSECKEYRecord(t *testing.T) {
	k := mustKey(t, genKey(t, "ed25519"))
	b64 := base64.StdEncoding.EncodeToString(k.Key.(ed25519.PublicKey))
	for _, c := range []struct {
		owner, gateway, want string
	}{
		{"host.example.org", "", "host.example.org. IN IPSECKEY ( 10 0 4 . " + b64 + " )"},
		{"host.example.org.", "", "host.example.org. IN IPSECKEY ( 10 0 4 . " + b64 + " )"},
		{"@", "192.0.2.38", "@ IN IPSECKEY ( 10 1 4 192.0.2.38 " + b64 + " )"},
		{"38.2.0.192.in-addr.arpa", "2001:db8::1", "38.2.0.192.in-addr.arpa. IN IPSECKEY ( 10 2 4 2001:db8::1 " + b64 + " )"},
		{"h.example", "gw.example.net", "h.example. IN IPSECKEY ( 10 3 4 gw.example.net. " + b64 + " )"},
	} {
		got, err := k.IPSECKEYRecord(c.owner, 10, c.gateway)
		if err != nil || got != c.want {
			t.Errorf("IPSECKEYRecord(%q, %q) =\n %s, %v\nwant\n %s", c.owner, c.gateway, got, err, c.want)
		}
	}
	for _, c := range [][2]string{{"bad name", ""}, {"", ""}, {"h.example", "not a gateway!"}} {
		if _, err := k.IPSECKEYRecord(c[0], 10, c[1]); err == nil {
			t.Errorf("IPSECKEYRecord(%q, %q) accepted", c[0], c[1])
		}
	}
}
