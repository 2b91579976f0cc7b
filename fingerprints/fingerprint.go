package fingerprints

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// Fingerprint names a public key: SHA-256 over its DER SubjectPublicKeyInfo
// (the input of RFC 7469 pins). People see it as "SHA256:<base64>", the way
// OpenSSH prints key fingerprints; the store names files by its lowercase hex.
type Fingerprint [sha256.Size]byte

// fingerprintPrefix starts the text form, as in OpenSSH.
const fingerprintPrefix = "SHA256:"

// FingerprintOf returns the fingerprint of a DER SubjectPublicKeyInfo.
func FingerprintOf(spki []byte) Fingerprint { return sha256.Sum256(spki) }

// String returns "SHA256:" and the unpadded standard base64 of the hash.
func (f Fingerprint) String() string {
	return fingerprintPrefix + base64.RawStdEncoding.EncodeToString(f[:])
}

// Hex returns the 64 lowercase hex digits used as the key's file name.
func (f Fingerprint) Hex() string { return hex.EncodeToString(f[:]) }

// IsZero reports whether f is the zero value (no key hashes to it).
func (f Fingerprint) IsZero() bool { return f == Fingerprint{} }

// Compare orders fingerprints by their bytes, which is also the order of
// their hex forms.
func (f Fingerprint) Compare(g Fingerprint) int { return bytes.Compare(f[:], g[:]) }

// MarshalText returns the "SHA256:" form.
func (f Fingerprint) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText accepts every complete form ParseFingerprint accepts.
func (f *Fingerprint) UnmarshalText(b []byte) error {
	g, err := ParseFingerprint(string(b))
	if err != nil {
		return err
	}
	*f = g
	return nil
}

// ParseFingerprint parses a complete fingerprint: "SHA256:<base64>" (padding
// optional), 64 hex digits, or 32 colon-separated hex bytes (as openssl
// prints them). Case does not matter except inside base64. Prefixes are
// resolved by Store.Resolve, not here.
func ParseFingerprint(s string) (Fingerprint, error) {
	var f Fingerprint
	s = strings.TrimSpace(s)
	if b64, ok := cutPrefixFold(s, fingerprintPrefix); ok {
		b64 = strings.TrimRight(b64, "=")
		enc := base64.RawStdEncoding
		if strings.ContainsAny(b64, "-_") {
			enc = base64.RawURLEncoding // as some tools print it
		}
		b, err := enc.DecodeString(b64)
		if err != nil || len(b) != len(f) {
			return f, fmt.Errorf("%w: %q is not SHA256: and 43 base64 characters", ErrBadFingerprint, s)
		}
		copy(f[:], b)
		return f, nil
	}
	h := s
	if len(s) == 3*len(f)-1 && strings.Count(s, ":") == len(f)-1 {
		h = strings.ReplaceAll(s, ":", "")
	}
	if len(h) != hex.EncodedLen(len(f)) {
		return f, fmt.Errorf("%w: %q is neither SHA256:<base64> nor 64 hex digits", ErrBadFingerprint, s)
	}
	if _, err := hex.Decode(f[:], []byte(h)); err != nil {
		return f, fmt.Errorf("%w: %q: %v", ErrBadFingerprint, s, err)
	}
	return f, nil
}

// KeyID is charon's default identity for a raw public key (ID_KEY_ID): SHA-1
// over the DER SubjectPublicKeyInfo, the "keyid" line of `pki --keyid`.
// `swanctl --list-sas` prints it as colon hex, and `id = "keyid:#<hex>"`
// selects it in swanctl.conf.
type KeyID [sha1.Size]byte

// KeyIDOf returns SHA-1 over a DER SubjectPublicKeyInfo.
func KeyIDOf(spki []byte) KeyID { return sha1.Sum(spki) }

// String returns colon-separated lowercase hex, as `swanctl --list-sas` and
// `pki --keyid` print it: "a5:01:10:...".
func (k KeyID) String() string {
	var b strings.Builder
	b.Grow(3*len(k) - 1)
	for i, c := range k {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(hex.EncodeToString([]byte{c}))
	}
	return b.String()
}

// Hex returns 40 lowercase hex digits.
func (k KeyID) Hex() string { return hex.EncodeToString(k[:]) }

// Swanctl returns the identity string charon accepts for this keyid,
// "keyid:#<hex>" (quote it in swanctl.conf, where # starts a comment).
func (k KeyID) Swanctl() string { return "keyid:#" + k.Hex() }

// MarshalText returns the colon-hex form.
func (k KeyID) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText accepts every form ParseKeyID accepts.
func (k *KeyID) UnmarshalText(b []byte) error {
	j, err := ParseKeyID(string(b))
	if err != nil {
		return err
	}
	*k = j
	return nil
}

// ParseKeyID parses a SHA-1 keyid written as colon hex ("a5:01:..."), plain
// hex, or in strongSwan's identity syntax ("keyid:#<hex>", "@#<hex>").
func ParseKeyID(s string) (KeyID, error) {
	var k KeyID
	h, ok := trimKeyIDPrefix(strings.TrimSpace(s))
	if !ok {
		h = strings.TrimSpace(s)
	}
	if len(h) == 3*len(k)-1 && strings.Count(h, ":") == len(k)-1 {
		h = strings.ReplaceAll(h, ":", "")
	}
	if len(h) != hex.EncodedLen(len(k)) {
		return k, fmt.Errorf("%w: %q is not a SHA-1 keyid (20 bytes of hex)", ErrBadFingerprint, s)
	}
	if _, err := hex.Decode(k[:], []byte(h)); err != nil {
		return k, fmt.Errorf("%w: %q: %v", ErrBadFingerprint, s, err)
	}
	return k, nil
}

// trimKeyIDPrefix removes strongSwan's keyid prefixes ("keyid:#", "keyid:",
// "@#") and reports whether one was there.
func trimKeyIDPrefix(s string) (string, bool) {
	for _, p := range []string{"keyid:#", "keyid:", "@#"} {
		if rest, ok := cutPrefixFold(s, p); ok {
			return rest, true
		}
	}
	return s, false
}

// cutPrefixFold is strings.CutPrefix without regard to ASCII case.
func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}
