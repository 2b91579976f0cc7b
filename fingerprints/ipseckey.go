package fingerprints

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"net/netip"
	"strings"
)

// IPSECKEY algorithm numbers (RFC 4025 section 2.4 and the IANA "IPSECKEY
// Resource Record Parameters" registry).
const (
	IPSECKEYAlgRSA   = 2 // RFC 4025; key as in RFC 3110 section 2
	IPSECKEYAlgECDSA = 3 // RFC 8005; key as in RFC 6605 section 4
	IPSECKEYAlgEdDSA = 4 // RFC 9373; key as in RFC 8080 section 3
)

// IPSECKEYPublicKey returns the algorithm number and public key field of an
// IPSECKEY record for k:
//   - RSA: exponent length (one octet), exponent, modulus (RFC 3110);
//   - ECDSA: the point as x | y, each coordinate the curve's size (RFC 6605);
//     DNSSEC defines only P-256 and P-384, so P-521 has no encoding and is
//     refused;
//   - Ed25519: the 32 bytes of the key (RFC 8080).
func (k *PublicKey) IPSECKEYPublicKey() (alg int, key []byte, err error) {
	switch pk := k.Key.(type) {
	case *rsa.PublicKey:
		// An int exponent has at most 8 bytes: the one-octet length form.
		e := bigEndian(uint64(pk.E))
		key = append([]byte{byte(len(e))}, e...)
		return IPSECKEYAlgRSA, append(key, pk.N.Bytes()...), nil
	case *ecdsa.PublicKey:
		if k.Curve != "P-256" && k.Curve != "P-384" {
			return 0, nil, fmt.Errorf("%w: IPSECKEY has no encoding for ECDSA %s (RFC 6605 defines P-256 and P-384)", ErrUnsupportedKey, k.Curve)
		}
		size := (pk.Curve.Params().BitSize + 7) / 8
		key = make([]byte, 2*size)
		pk.X.FillBytes(key[:size])
		pk.Y.FillBytes(key[size:])
		return IPSECKEYAlgECDSA, key, nil
	case ed25519.PublicKey:
		return IPSECKEYAlgEdDSA, append([]byte(nil), pk...), nil
	}
	return 0, nil, fmt.Errorf("%w: %T", ErrUnsupportedKey, k.Key)
}

// IPSECKEYRecord returns a zone-file line publishing k in DNS (RFC 4025),
// for charon's ipseckey plugin and other IKE implementations:
//
//	host.example.org. IN IPSECKEY ( 10 0 4 . <base64 key> )
//
// owner is the record's name; a host name is made absolute with a trailing
// dot, "@" is left for the zone's origin. gateway is "" (gateway type 0, no
// gateway), an IPv4 or IPv6 address (types 1, 2), or a host name (type 3).
func (k *PublicKey) IPSECKEYRecord(owner string, precedence uint8, gateway string) (string, error) {
	alg, key, err := k.IPSECKEYPublicKey()
	if err != nil {
		return "", err
	}
	owner = strings.TrimSpace(owner)
	if owner != "@" {
		if !validHostname(strings.ToLower(strings.TrimSuffix(owner, "."))) {
			return "", fmt.Errorf("IPSECKEY owner %q is not a host name", owner)
		}
		owner = strings.TrimSuffix(owner, ".") + "."
	}
	gwType, gw := 0, "."
	if gateway != "" {
		if a, err := netip.ParseAddr(gateway); err == nil {
			a = a.Unmap()
			gwType, gw = 2, a.String()
			if a.Is4() {
				gwType = 1
			}
		} else if validHostname(strings.ToLower(strings.TrimSuffix(gateway, "."))) {
			gwType, gw = 3, strings.TrimSuffix(gateway, ".")+"."
		} else {
			return "", fmt.Errorf("IPSECKEY gateway %q is neither an address nor a host name", gateway)
		}
	}
	return fmt.Sprintf("%s IN IPSECKEY ( %d %d %d %s %s )", owner, precedence, gwType, alg, gw,
		base64.StdEncoding.EncodeToString(key)), nil
}

// bigEndian returns v in the fewest big-endian bytes (at least one).
func bigEndian(v uint64) []byte {
	var b []byte
	for ; v > 0; v >>= 8 {
		b = append([]byte{byte(v)}, b...)
	}
	if len(b) == 0 {
		b = []byte{0}
	}
	return b
}
