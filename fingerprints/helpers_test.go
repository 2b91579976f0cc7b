package fingerprints

import (
	"crypto"
	"os"
	"testing"

	"github.com/btnsd/btnsd/fingerprints/internal/testkeys"
)

// genKey makes a private key of the given kind for tests.
func genKey(t testing.TB, kind string) crypto.Signer { return testkeys.Signer(t, kind) }

// mustKey wraps the public half of a test key.
func mustKey(t testing.TB, k crypto.Signer) *PublicKey {
	t.Helper()
	p, err := NewPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func write(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
