package fingerprints_test

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/btnsd/btnsd/fingerprints"
	"github.com/btnsd/btnsd/fingerprints/fptest"
)

// TestPKIAgrees checks fingerprints and keyids against strongSwan's own
// tool for every key type: keys made by `pki --gen`, exported by `pki --pub`
// in DER, PEM and sshkey form, must have the keyid `pki --keyid` prints (the
// identity charon gives a raw key), and our SubjectPublicKeyInfo must be
// byte for byte the one pki writes, so the SHA-256 over it is the same too.
func TestPKIAgrees(t *testing.T) {
	pki := fptest.RequireTool(t, "pki")
	for _, c := range []struct{ typ, size, desc string }{
		{"ed25519", "", "ED25519"},
		{"rsa", "2048", "RSA 2048"},
		{"rsa", "3072", "RSA 3072"},
		{"ecdsa", "256", "ECDSA P-256"},
		{"ecdsa", "384", "ECDSA P-384"},
		{"ecdsa", "521", "ECDSA P-521"},
	} {
		t.Run(c.desc, func(t *testing.T) {
			dir := t.TempDir()
			priv := filepath.Join(dir, "key.pem")
			args := []string{"--gen", "--type", c.typ, "--outform", "pem"}
			if c.size != "" {
				args = append(args, "--size", c.size)
			}
			writeFile(t, priv, fptest.Run(t, pki, args...))
			der := fptest.Run(t, pki, "--pub", "--in", priv)
			writeFile(t, filepath.Join(dir, "pub.der"), der)
			keyid, subjkey := fptest.PKIKeyIDs(t, pki, filepath.Join(dir, "pub.der"))

			for _, form := range []string{"der", "pem", "sshkey"} {
				out := fptest.Run(t, pki, "--pub", "--in", priv, "--outform", form)
				k, err := ParsePublicKey(out)
				if err != nil {
					t.Fatalf("%s: %v", form, err)
				}
				if k.Description() != c.desc {
					t.Errorf("%s: Description %q, want %q", form, k.Description(), c.desc)
				}
				if got := k.KeyID.String(); got != keyid {
					t.Errorf("%s: KeyID %s, pki says %s", form, got, keyid)
				}
				if got := k.SubjectKeyHash().String(); got != subjkey {
					t.Errorf("%s: SubjectKeyHash %s, pki says %s", form, got, subjkey)
				}
				if !bytes.Equal(k.SPKI, der) {
					t.Errorf("%s: our SubjectPublicKeyInfo differs from pki's", form)
				}
				if k.Fingerprint != FingerprintOf(der) {
					t.Errorf("%s: fingerprint is not SHA-256 of pki's DER", form)
				}
			}
			// And the other way: pki reads what we write.
			k, _ := ParsePublicKey(der)
			ours := filepath.Join(dir, "ours.pem")
			writeFile(t, ours, k.PEM())
			if got, _ := fptest.PKIKeyIDs(t, pki, ours); got != keyid {
				t.Errorf("pki reads our PEM with keyid %s, want %s", got, keyid)
			}
		})
	}
}

// TestPKIAgreesGoKeys checks keys Go generated (as btnsd's host key is)
// against pki, including the swanctl forms of the keyid.
func TestPKIAgreesGoKeys(t *testing.T) {
	pki := fptest.RequireTool(t, "pki")
	for _, kind := range []string{"ed25519", "rsa2048", "p256", "p384", "p521"} {
		t.Run(kind, func(t *testing.T) {
			k := mustKey(t, fptest.Signer(t, kind))
			f := filepath.Join(t.TempDir(), "k.pem")
			writeFile(t, f, k.PEM())
			keyid, _ := fptest.PKIKeyIDs(t, pki, f)
			if k.KeyID.String() != keyid {
				t.Fatalf("KeyID %s, pki says %s", k.KeyID, keyid)
			}
			if want := "keyid:#" + strings.ReplaceAll(keyid, ":", ""); k.KeyID.Swanctl() != want {
				t.Errorf("Swanctl() = %s, want %s", k.KeyID.Swanctl(), want)
			}
			if id, err := ParseKeyID(keyid); err != nil || id != k.KeyID {
				t.Errorf("ParseKeyID(%s) = %v, %v", keyid, id, err)
			}
		})
	}
}

// TestSSHKeygenAgrees reads keys made by ssh-keygen as OpenSSH lines and
// checks them against pki, which reads the same lines.
func TestSSHKeygenAgrees(t *testing.T) {
	pki := fptest.RequireTool(t, "pki")
	keygen := fptest.RequireTool(t, "ssh-keygen")
	for _, c := range []struct{ typ, bits, desc string }{
		{"ed25519", "", "ED25519"},
		{"rsa", "3072", "RSA 3072"},
		{"ecdsa", "256", "ECDSA P-256"},
		{"ecdsa", "384", "ECDSA P-384"},
		{"ecdsa", "521", "ECDSA P-521"},
	} {
		t.Run(c.desc, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "id")
			args := []string{"-q", "-t", c.typ, "-N", "", "-C", "someone@host", "-f", f}
			if c.bits != "" {
				args = append(args, "-b", c.bits)
			}
			fptest.Run(t, keygen, args...)
			line, err := os.ReadFile(f + ".pub")
			if err != nil {
				t.Fatal(err)
			}
			k, err := ParsePublicKey(line)
			if err != nil {
				t.Fatal(err)
			}
			if k.Description() != c.desc || k.Comment != "someone@host" {
				t.Errorf("read as %q %q", k.Description(), k.Comment)
			}
			if keyid, _ := fptest.PKIKeyIDs(t, pki, f+".pub"); k.KeyID.String() != keyid {
				t.Errorf("KeyID %s, pki says %s", k.KeyID, keyid)
			}
			// RFC 4716 form of the same key.
			rfc := fptest.Run(t, keygen, "-e", "-f", f+".pub")
			if k2, err := ParsePublicKey(rfc); err != nil || k2.Fingerprint != k.Fingerprint {
				t.Errorf("RFC 4716 form: %v", err)
			}
		})
	}
}

// TestIPSECKEYMatchesPKI compares the RSA key field of an IPSECKEY record
// with pki's RFC 3110 (DNSKEY) output of the same key.
func TestIPSECKEYMatchesPKI(t *testing.T) {
	pki := fptest.RequireTool(t, "pki")
	dir := t.TempDir()
	priv := filepath.Join(dir, "key.pem")
	writeFile(t, priv, fptest.Run(t, pki, "--gen", "--type", "rsa", "--size", "2048", "--outform", "pem"))
	want := strings.TrimSpace(string(fptest.Run(t, pki, "--pub", "--in", priv, "--outform", "dnskey")))
	k, err := ParsePublicKey(fptest.Run(t, pki, "--pub", "--in", priv))
	if err != nil {
		t.Fatal(err)
	}
	alg, key, err := k.IPSECKEYPublicKey()
	if err != nil || alg != IPSECKEYAlgRSA {
		t.Fatalf("IPSECKEYPublicKey = %d, %v", alg, err)
	}
	if got := base64.StdEncoding.EncodeToString(key); got != want {
		t.Errorf("RSA key field\n got %s\nwant %s (pki --outform dnskey)", got, want)
	}
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustKey(t testing.TB, k crypto.Signer) *PublicKey {
	t.Helper()
	p, err := NewPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return p
}
