package fingerprints

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
)

// ChannelBindingLabel starts the input of every channel-binding value, so
// that the hash cannot be mistaken for any other hash over the same keys.
const ChannelBindingLabel = "btnsd channel binding v1"

// ChannelBinding returns the channel-binding value (RFC 5056) of a flow
// whose two ends authenticated with keys x and y: SHA-256 over the label, a
// zero byte, then the two DER SubjectPublicKeyInfos in byte order, each
// preceded by its length as 4 big-endian bytes. The order makes the value
// the same at both ends (x and y swap roles); the lengths make the encoding
// unambiguous.
//
// Both ends of a latched flow compute it from their own key and the peer
// key they authenticated. They get the same value exactly when each saw the
// other's key: a man in the middle with a key of its own makes the values
// differ, which a higher layer that compares them detects (Channel-Bound
// BTNS, RFC 5387).
func ChannelBinding(x, y *PublicKey) [32]byte {
	a, b := x.SPKI, y.SPKI
	if bytes.Compare(a, b) > 0 {
		a, b = b, a
	}
	h := sha256.New()
	h.Write([]byte(ChannelBindingLabel))
	h.Write([]byte{0})
	var n [4]byte
	for _, k := range [][]byte{a, b} {
		binary.BigEndian.PutUint32(n[:], uint32(len(k)))
		h.Write(n[:])
		h.Write(k)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}
