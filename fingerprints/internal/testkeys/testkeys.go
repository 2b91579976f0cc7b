// Package testkeys makes private keys for tests. It imports nothing of
// btnsd, so that package fingerprints' own tests and package fptest (which
// imports fingerprints) can share it without an import cycle.
package testkeys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"testing"
)

// Signer makes a private key: "ed25519", "rsa1024", "rsa2048", "p224",
// "p256", "p384" or "p521".
func Signer(tb testing.TB, kind string) crypto.Signer {
	tb.Helper()
	var (
		k   crypto.Signer
		err error
	)
	switch kind {
	case "ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	case "rsa1024":
		k, err = rsa.GenerateKey(rand.Reader, 1024)
	case "rsa2048":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "p224":
		k, err = ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	case "p256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "p521":
		k, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	default:
		tb.Fatalf("testkeys.Signer: unknown kind %q", kind)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return k
}
