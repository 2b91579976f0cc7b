package integration

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"strings"
	"testing"
)

// rawKey is a key pair in the forms charon takes over VICI.
type rawKey struct {
	PrivatePEM []byte // PKCS#8
	PublicPEM  []byte // SubjectPublicKeyInfo
	KeyID      string // SHA-1 of the SPKI, lowercase hex: charon's ID_KEY_ID
}

// ColonKeyID is the keyid as list-sas prints it ("a5:01:...").
func (k rawKey) ColonKeyID() string {
	var b strings.Builder
	for i := 0; i < len(k.KeyID); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(k.KeyID[i : i+2])
	}
	return b.String()
}

func newRawKey(t testing.TB, typ string) rawKey {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch typ {
	case "ed25519":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case "rsa":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		t.Fatalf("key type %q", typ)
	}
	if err != nil {
		t.Fatal(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum(spki)
	return rawKey{
		PrivatePEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}),
		PublicPEM:  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}),
		KeyID:      hex.EncodeToString(sum[:]),
	}
}
