package fingerprints

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// Golden names of the keys in testdata/good. The keyids were printed by
// strongSwan's `pki --keyid --type pub` (5.9.8), the SHA-256 by
// `openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`,
// when the files were made; TestPKIAgrees checks the same thing live.
var goldenKeys = []struct {
	file, keyid, sha256, desc, format, comment string
}{
	{"pki-ed25519.pem", "6d:2b:63:07:d1:76:f8:44:2b:84:91:46:64:61:11:d4:7d:cf:99:e0",
		"SHA256:n4MxRl7tAN8os+FlCuepimAka7tl8Cz/2uO3BCN5yTM", "ED25519", "PEM SubjectPublicKeyInfo", ""},
	{"pki-ed25519.sshkey", "6d:2b:63:07:d1:76:f8:44:2b:84:91:46:64:61:11:d4:7d:cf:99:e0",
		"SHA256:n4MxRl7tAN8os+FlCuepimAka7tl8Cz/2uO3BCN5yTM", "ED25519", "base64 OpenSSH key blob", ""},
	{"pki-rsa2048.pem", "cb:11:91:95:ad:b9:c7:0f:e3:ee:ed:a0:e9:20:34:0b:a6:a6:9a:c4",
		"SHA256:IfJwgEn+qmHpN8ZmD8gFaxGPOeYEvsQhaTsQEkikRL0", "RSA 2048", "PEM SubjectPublicKeyInfo", ""},
	{"pkcs1-rsa2048.pem", "cb:11:91:95:ad:b9:c7:0f:e3:ee:ed:a0:e9:20:34:0b:a6:a6:9a:c4",
		"SHA256:IfJwgEn+qmHpN8ZmD8gFaxGPOeYEvsQhaTsQEkikRL0", "RSA 2048", "PEM PKCS#1 RSA", ""},
	{"pki-ecdsa256.der", "90:39:d6:0e:5f:32:18:4f:bc:89:ab:d5:be:04:7a:1c:21:12:9d:3b",
		"SHA256:UwWBzdIfTm9ef+s87E/r3nPFtf7MCScg7hE7ghDLwys", "ECDSA P-256", "DER SubjectPublicKeyInfo", ""},
	{"pki-ecdsa384.pem", "72:4e:ba:c7:1b:97:a6:ac:b3:4e:da:8d:16:97:75:f2:89:31:c4:fd",
		"SHA256:G6b5VntUnOeJTGHWcl0nLQLgQKzHt1UnpaxBuB052nM", "ECDSA P-384", "PEM SubjectPublicKeyInfo", ""},
	{"ssh-ecdsa521.pub", "e3:70:13:81:af:e5:49:c6:9b:be:a3:8c:b9:9f:85:33:b2:f9:a6:3c",
		"SHA256:0+e+cRLsruJbMSjtouNGmlhOYCAzi1Ff7ld3Nu/xwXo", "ECDSA P-521", "OpenSSH", "ci@p521"},
	{"ssh-rsa3072.pub", "24:78:78:53:e3:7b:4b:67:25:ce:15:fb:bb:30:cc:98:0a:11:69:93",
		"SHA256:UAXyvJEyDJ5CA22v8j7W7smioapZ63QOe+XF5PVh3Mc", "RSA 3072", "OpenSSH", "root@vm"},
	{"ssh-ed25519.pub", "3e:6c:ac:a3:52:28:56:83:30:04:12:3d:f3:6e:76:a4:2f:60:c3:3d",
		"SHA256:CA8KYOWEIMKsJ1pfuPEiCHzp8exuFA20rF4j5mCRAdk", "ED25519", "OpenSSH", "alice@laptop"},
	{"rfc4716-ed25519.pub", "3e:6c:ac:a3:52:28:56:83:30:04:12:3d:f3:6e:76:a4:2f:60:c3:3d",
		"SHA256:CA8KYOWEIMKsJ1pfuPEiCHzp8exuFA20rF4j5mCRAdk", "ED25519", "RFC 4716", "256-bit ED25519, converted by root@vm from OpenSSH"},
}

func TestParseGolden(t *testing.T) {
	for _, g := range goldenKeys {
		t.Run(g.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata/good", g.file))
			if err != nil {
				t.Fatal(err)
			}
			k, err := ParsePublicKey(b)
			if err != nil {
				t.Fatal(err)
			}
			if got := k.KeyID.String(); got != g.keyid {
				t.Errorf("KeyID = %s, want %s", got, g.keyid)
			}
			if got := k.Fingerprint.String(); got != g.sha256 {
				t.Errorf("Fingerprint = %s, want %s", got, g.sha256)
			}
			if got := k.Description(); got != g.desc {
				t.Errorf("Description = %q, want %q", got, g.desc)
			}
			if k.Format != g.format || k.Comment != g.comment {
				t.Errorf("Format, Comment = %q, %q; want %q, %q", k.Format, k.Comment, g.format, g.comment)
			}
			// The PEM we write reads back as the same key.
			again, err := ParsePublicKey(k.PEM())
			if err != nil || again.Fingerprint != k.Fingerprint {
				t.Errorf("PEM() does not read back: %v", err)
			}
		})
	}
}

// TestParseForms feeds one key in every accepted form.
func TestParseForms(t *testing.T) {
	for _, kind := range []string{"ed25519", "rsa2048", "p256", "p384", "p521"} {
		t.Run(kind, func(t *testing.T) {
			priv := genKey(t, kind)
			want := mustKey(t, priv)
			sshPub, err := ssh.NewPublicKey(priv.Public())
			if err != nil {
				t.Fatal(err)
			}
			line := ssh.MarshalAuthorizedKey(sshPub)
			forms := map[string][]byte{
				"PEM":                want.PEM(),
				"PEM with text":      append([]byte("Subject: peer\n\n"), want.PEM()...),
				"PEM CRLF":           []byte(strings.ReplaceAll(string(want.PEM()), "\n", "\r\n")),
				"DER":                want.SPKI,
				"base64 DER":         []byte(base64.StdEncoding.EncodeToString(want.SPKI) + "\n"),
				"OpenSSH":            line,
				"OpenSSH comment":    append(line[:len(line)-1:len(line)-1], " some one@host\n"...),
				"OpenSSH options":    append([]byte(`from="10.0.0.0/8",no-pty `), line...),
				"OpenSSH blob":       []byte(base64.StdEncoding.EncodeToString(sshPub.Marshal())),
				"authorized comment": append([]byte("# a comment line\n\n"), line...),
			}
			if r, ok := priv.Public().(*rsa.PublicKey); ok {
				forms["PKCS#1 PEM"] = pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(r)})
				forms["PKCS#1 DER"] = x509.MarshalPKCS1PublicKey(r)
			}
			for name, in := range forms {
				got, err := ParsePublicKey(in)
				if err != nil {
					t.Errorf("%s: %v", name, err)
					continue
				}
				if got.Fingerprint != want.Fingerprint || got.KeyID != want.KeyID {
					t.Errorf("%s: fingerprint %s, want %s", name, got.Fingerprint, want.Fingerprint)
				}
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	privPEM := func(typ string, der []byte, err error) []byte {
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	}
	edPriv := genKey(t, "ed25519").(ed25519.PrivateKey)
	rsaPriv := genKey(t, "rsa2048").(*rsa.PrivateKey)
	sec1, err := x509.MarshalECPrivateKey(genKey(t, "p256").(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	opensshBlock, err := ssh.MarshalPrivateKey(edPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(edPriv)
	if err != nil {
		t.Fatal(err)
	}

	file := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata/bad", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name string
		in   []byte
		want error
		says string // a part of the message that says what was found
	}{
		{"empty file", file("empty"), ErrEmpty, "empty"},
		{"blank file", file("blank"), ErrEmpty, "empty"},
		{"garbage bytes", file("garbage.bin"), ErrNotKey, "binary data"},
		{"garbage text", file("garbage.txt"), ErrNotKey, `starting "hello world"`},
		{"DSA PEM", file("dsa.pub.pem"), ErrUnsupportedKey, "DSA"},
		{"DSA OpenSSH", file("dsa.ssh.pub"), ErrUnsupportedKey, "ssh-dss"},
		{"RSA 1024", file("rsa1024.pub.pem"), ErrUnsupportedKey, "RSA key of 1024 bits is too small"},
		{"Ed448", file("ed448.pub.pem"), ErrUnsupportedKey, "Ed448"},
		{"X25519", file("x25519.pub.pem"), ErrUnsupportedKey, "X25519"},
		{"P-224", file("p224.pub.pem"), ErrUnsupportedKey, "P-224"},
		{"secp256k1", file("secp256k1.pub.pem"), ErrUnsupportedKey, "secp256k1"},
		{"certificate", file("cert.pem"), ErrNotKey, "X.509 certificate"},
		{"FIDO key", file("ed25519-sk.ssh.pub"), ErrUnsupportedKey, "FIDO"},
		{"PKCS#8 private PEM", privPEM("PRIVATE KEY", pkcs8, nil), ErrPrivateKey, `"PRIVATE KEY"`},
		{"PKCS#8 private DER", pkcs8, ErrPrivateKey, "PKCS#8 private key"},
		{"PKCS#1 private PEM", privPEM("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaPriv), nil), ErrPrivateKey, `"RSA PRIVATE KEY"`},
		{"PKCS#1 private DER", x509.MarshalPKCS1PrivateKey(rsaPriv), ErrPrivateKey, "PKCS#1 RSA private key"},
		{"SEC1 private PEM", privPEM("EC PRIVATE KEY", sec1, nil), ErrPrivateKey, `"EC PRIVATE KEY"`},
		{"SEC1 private DER", sec1, ErrPrivateKey, "SEC1 EC private key"},
		{"OpenSSH private", pem.EncodeToMemory(opensshBlock), ErrPrivateKey, `"OPENSSH PRIVATE KEY"`},
		{"encrypted private", privPEM("ENCRYPTED PRIVATE KEY", []byte{1, 2, 3}, nil), ErrPrivateKey, "ENCRYPTED"},
		{"unknown PEM", privPEM("X509 CRL", []byte{1}, nil), ErrNotKey, `"X509 CRL"`},
		{"bad PEM body", privPEM("PUBLIC KEY", []byte("junk"), nil), ErrNotKey, "does not parse"},
		{"broken PEM", []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n"), ErrNotKey, "PEM"},
		{"two keys", append(mustKey(t, edPriv).PEM(), mustKey(t, rsaPriv).PEM()...), ErrNotKey, "more than one key"},
		{"bad OpenSSH", []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOKd junk\n"), ErrNotKey, "ssh-ed25519"},
		{"truncated DER", mustKey(t, edPriv).SPKI[:20], ErrNotKey, "binary data"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k, err := ParsePublicKey(c.in)
			if err == nil {
				t.Fatalf("accepted as %s %s", k.Description(), k.Fingerprint)
			}
			if !errors.Is(err, c.want) {
				t.Errorf("error %q does not wrap %q", err, c.want)
			}
			if !strings.Contains(err.Error(), c.says) {
				t.Errorf("error %q does not say %q", err, c.says)
			}
		})
	}
}

func TestNewPublicKeyRefusesEmpty(t *testing.T) {
	for _, k := range []any{nil, (*rsa.PublicKey)(nil), &rsa.PublicKey{}, &ecdsa.PublicKey{}, (*ed25519.PublicKey)(nil), ed25519.PublicKey{1, 2}, "text"} {
		if p, err := NewPublicKey(k); err == nil || !errors.Is(err, ErrUnsupportedKey) {
			t.Errorf("NewPublicKey(%#v) = %v, %v", k, p, err)
		}
	}
}
