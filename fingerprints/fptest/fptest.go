// Package fptest helps tests of fingerprints and of the packages that use
// it: keys, key stores of any size, and strongSwan's pki tool to check
// fingerprints against.
package fptest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/btnsd/btnsd/fingerprints"
	"github.com/btnsd/btnsd/fingerprints/internal/testkeys"
)

// Key returns a new public key: Ed25519 for i%10 < 7, ECDSA P-256 for 7
// and 8, RSA 2048 for 9, the mix a store of many peers might hold.
//
// The RSA keys are public keys only, with a random odd modulus: nobody
// needs their private half, and making real ones would take seconds each.
func Key(i int) (*fingerprints.PublicKey, error) {
	var pub crypto.PublicKey
	switch i % 10 {
	case 7, 8:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		pub = k.Public()
	case 9:
		n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 2047))
		if err != nil {
			return nil, err
		}
		n.SetBit(n, 2047, 1).SetBit(n, 0, 1)
		pub = &rsa.PublicKey{N: n, E: 65537}
	default:
		k, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		pub = k
	}
	return fingerprints.NewPublicKey(pub)
}

// MakeStore adds n keys (see Key) to the store under root, named peer-<i>,
// every other one trusted, some with an FQDN identity or a scope, and
// returns their entries.
func MakeStore(root string, n int) ([]fingerprints.Entry, error) {
	s, err := fingerprints.Open(root)
	if err != nil {
		return nil, err
	}
	added := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	entries := make([]fingerprints.Entry, n)
	for i := range entries {
		k, err := Key(i)
		if err != nil {
			return nil, err
		}
		m := fingerprints.Meta{
			Name:    fmt.Sprintf("peer-%d", i),
			Trust:   fingerprints.Trust(i % 2),
			Added:   added.Add(time.Duration(i) * time.Minute),
			AddedBy: fingerprints.Actor{UID: 0, User: "root"},
		}
		if i%5 == 0 {
			m.Identity = fingerprints.Identity{Type: fingerprints.IDFQDN, Value: fmt.Sprintf("peer-%d.example.org", i)}
		}
		if i%3 == 0 {
			m.Scope = fingerprints.Scope{"web"}
		}
		entries[i] = fingerprints.Entry{Key: k, Meta: m}
	}
	return s.AddMany(entries)
}

// Signer makes a private key: "ed25519", "rsa1024", "rsa2048", "p224",
// "p256", "p384" or "p521".
func Signer(tb testing.TB, kind string) crypto.Signer { return testkeys.Signer(tb, kind) }

// RequireTool returns the path of an external program a test checks
// against. Without it the test is skipped, unless CI=true: CI installs
// strongSwan's tools, and a check that silently stopped running there would
// be worse than a failure.
func RequireTool(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%s is not installed, and CI=true: install it (strongSwan's pki: apt-get install strongswan-pki)", name)
		}
		tb.Skipf("%s is not installed: skipping the check against it (CI=true makes this a failure)", name)
	}
	return p
}

// Run runs a program and returns its standard output; its standard error
// is shown only on failure (pki always complains about a missing TPM).
func Run(tb testing.TB, name string, args ...string) []byte {
	tb.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		var stderr []byte
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		tb.Fatalf("%s %v: %v\n%s", name, args, err, stderr)
	}
	return out
}

var (
	pkiKeyIDRE   = regexp.MustCompile(`SHA-1 of subjectPublicKeyInfo\):\s*([0-9a-f:]{59})`)
	pkiSubjKeyRE = regexp.MustCompile(`SHA-1 of subjectPublicKey\):\s*([0-9a-f:]{59})`)
)

// PKIKeyIDs runs `pki --keyid --type pub --in file` and returns the keyid
// (SHA-1 of the SubjectPublicKeyInfo: charon's identity of a raw key) and
// the subjkey (SHA-1 of the subjectPublicKey) it prints, in colon hex.
func PKIKeyIDs(tb testing.TB, pki, file string) (keyid, subjkey string) {
	tb.Helper()
	out := Run(tb, pki, "--keyid", "--type", "pub", "--in", file)
	k, s := pkiKeyIDRE.FindSubmatch(out), pkiSubjKeyRE.FindSubmatch(out)
	if k == nil || s == nil {
		tb.Fatalf("pki --keyid output not understood:\n%s", out)
	}
	return string(k[1]), string(s[1])
}
