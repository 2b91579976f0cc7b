package fingerprints

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"testing"
)

func newTestKey(t *testing.T) *PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestChannelBinding(t *testing.T) {
	a, b, m := newTestKey(t), newTestKey(t), newTestKey(t)
	if ChannelBinding(a, b) != ChannelBinding(b, a) {
		t.Fatal("the two ends of a flow get different values")
	}
	// A man in the middle holding m: a sees m, b sees m.
	if ChannelBinding(a, m) == ChannelBinding(b, m) {
		t.Fatal("a man in the middle is not detected")
	}
	if ChannelBinding(a, b) == ChannelBinding(a, m) {
		t.Fatal("different peers give the same value")
	}
	// The value is the documented encoding.
	lo, hi := a.SPKI, b.SPKI
	if string(lo) > string(hi) {
		lo, hi = hi, lo
	}
	var in []byte
	in = append(in, ChannelBindingLabel...)
	in = append(in, 0)
	in = binary.BigEndian.AppendUint32(in, uint32(len(lo)))
	in = append(in, lo...)
	in = binary.BigEndian.AppendUint32(in, uint32(len(hi)))
	in = append(in, hi...)
	if ChannelBinding(a, b) != sha256.Sum256(in) {
		t.Fatal("the value is not SHA-256 over the documented encoding")
	}
}
