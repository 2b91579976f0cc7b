package fingerprints

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"os"
	"os/exec"
	"regexp"
	"testing"
)

// requireTool returns the path of an external program the test checks
// against. Without it the test is skipped, unless CI=true: CI installs
// strongSwan's tools, and a check that silently stopped running there would
// be worse than a failure.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed, and CI=true: install it (strongSwan's pki: apt-get install strongswan-pki)", name)
		}
		t.Skipf("%s is not installed: skipping the check against it (CI=true makes this a failure)", name)
	}
	return p
}

// run runs a program and returns its standard output; stderr goes to the
// test log only on failure (pki always complains about a missing TPM).
func run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("%s %v: %v\n%s", name, args, err, stderr)
	}
	return out
}

var (
	pkiKeyIDRE   = regexp.MustCompile(`SHA-1 of subjectPublicKeyInfo\):\s*([0-9a-f:]{59})`)
	pkiSubjKeyRE = regexp.MustCompile(`SHA-1 of subjectPublicKey\):\s*([0-9a-f:]{59})`)
)

// pkiKeyIDs runs `pki --keyid --type pub --in file` and returns the keyid
// (SHA-1 of the SubjectPublicKeyInfo) and subjkey (SHA-1 of the
// subjectPublicKey) it prints.
func pkiKeyIDs(t testing.TB, pki, file string) (keyid, subjkey string) {
	t.Helper()
	out := run(t, pki, "--keyid", "--type", "pub", "--in", file)
	k, s := pkiKeyIDRE.FindSubmatch(out), pkiSubjKeyRE.FindSubmatch(out)
	if k == nil || s == nil {
		t.Fatalf("pki --keyid output not understood:\n%s", out)
	}
	return string(k[1]), string(s[1])
}

// genKey makes a private key of the given kind for tests.
func genKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
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
		t.Fatalf("genKey: unknown kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// mustKey wraps the public half of a test key.
func mustKey(t testing.TB, k crypto.Signer) *PublicKey {
	t.Helper()
	p, err := NewPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return p
}
