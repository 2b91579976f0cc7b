package fingerprints

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestHostKeyCreate(t *testing.T) {
	root := t.TempDir()
	path := HostKeyPath(root)
	if path != filepath.Join(root, "private", "host.pem") {
		t.Fatalf("HostKeyPath = %s", path)
	}
	if _, _, err := LoadHostKey(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadHostKey before creation: %v", err)
	}
	signer, pub, err := LoadOrCreateHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if pub.Type != KeyEd25519 {
		t.Errorf("new host key is %s, want Ed25519", pub.Description())
	}
	if _, ok := signer.(ed25519.PrivateKey); !ok {
		t.Errorf("signer is %T", signer)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("host key mode %v, %v; want 0600", fi.Mode(), err)
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Errorf("private directory mode %04o, want 0700", di.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if block, _ := pem.Decode(b); block == nil || block.Type != "PRIVATE KEY" {
		t.Errorf("host key file is not PEM PKCS#8")
	}
	// The signer signs for the public key reported.
	msg := []byte("IKE_AUTH")
	sig, err := signer.Sign(rand.Reader, msg, crypto.Hash(0))
	if err != nil || !ed25519.Verify(pub.Key.(ed25519.PublicKey), msg, sig) {
		t.Errorf("signature does not verify: %v", err)
	}
	// Second start: the same key.
	_, again, err := LoadOrCreateHostKey(path)
	if err != nil || again.Fingerprint != pub.Fingerprint {
		t.Errorf("second start got %v, %v", again, err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("private directory holds %d files, want 1", len(ents))
	}
}

func TestHostKeyCreateRace(t *testing.T) {
	path := HostKeyPath(t.TempDir())
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		fps = map[Fingerprint]bool{}
	)
	for range 8 {
		wg.Go(func() {
			_, pub, err := LoadOrCreateHostKey(path)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			fps[pub.Fingerprint] = true
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(fps) != 1 {
		t.Errorf("racing starts made %d different host keys", len(fps))
	}
}

func TestHostKeyExisting(t *testing.T) {
	ed := genKey(t, "ed25519")
	rsaKey := genKey(t, "rsa2048").(*rsa.PrivateKey)
	ec := genKey(t, "p384").(*ecdsa.PrivateKey)
	pkcs8 := func(k crypto.Signer) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	sec1, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	openssh := func(k crypto.Signer) []byte {
		b, err := ssh.MarshalPrivateKey(k, "comment")
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(b)
	}
	pemOf := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	ecParams := []byte("-----BEGIN EC PARAMETERS-----\nBgUrgQQAIg==\n-----END EC PARAMETERS-----\n")

	for name, c := range map[string]struct {
		data []byte
		key  crypto.Signer
	}{
		"Ed25519 PKCS#8":          {pemOf("PRIVATE KEY", pkcs8(ed)), ed},
		"Ed25519 PKCS#8 DER":      {pkcs8(ed), ed},
		"Ed25519 OpenSSH":         {openssh(ed), ed},
		"RSA PKCS#1":              {pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), rsaKey},
		"RSA PKCS#8":              {pemOf("PRIVATE KEY", pkcs8(rsaKey)), rsaKey},
		"RSA OpenSSH":             {openssh(rsaKey), rsaKey},
		"ECDSA SEC1":              {pemOf("EC PRIVATE KEY", sec1), ec},
		"ECDSA SEC1 after params": {append(ecParams, pemOf("EC PRIVATE KEY", sec1)...), ec},
		"ECDSA SEC1 DER":          {sec1, ec},
		"ECDSA OpenSSH":           {openssh(ec), ec},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key")
			write(t, path, c.data)
			signer, pub, err := LoadOrCreateHostKey(path)
			if err != nil {
				t.Fatal(err)
			}
			if want := mustKey(t, c.key); pub.Fingerprint != want.Fingerprint {
				t.Errorf("loaded %s, want %s", pub.Fingerprint, want.Fingerprint)
			}
			digest := sha256.Sum256([]byte("x"))
			var opts crypto.SignerOpts = crypto.SHA256
			if pub.Type == KeyEd25519 {
				opts = crypto.Hash(0)
			}
			if _, err := signer.Sign(rand.Reader, digest[:], opts); err != nil {
				t.Errorf("cannot sign: %v", err)
			}
			if b, _ := os.ReadFile(path); string(b) != string(c.data) {
				t.Errorf("existing key file was rewritten")
			}
		})
	}
}

func TestHostKeyRefuses(t *testing.T) {
	ed := genKey(t, "ed25519")
	der, _ := x509.MarshalPKCS8PrivateKey(ed)
	good := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	small := x509.MarshalPKCS1PrivateKey(genKey(t, "rsa1024").(*rsa.PrivateKey))
	encSSH, err := ssh.MarshalPrivateKeyWithPassphrase(ed, "", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	legacy := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte{1}})

	for name, c := range map[string]struct {
		data []byte
		mode os.FileMode
		says string
	}{
		"group readable":    {good, 0o640, "chmod 600"},
		"world readable":    {good, 0o644, "chmod 600"},
		"public key":        {mustKey(t, ed).PEM(), 0o600, "must be a private key"},
		"small RSA":         {pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: small}), 0o600, "1024 bits is too small"},
		"encrypted OpenSSH": {pem.EncodeToMemory(encSSH), 0o600, "without a passphrase"},
		"encrypted PKCS#8":  {pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}), 0o600, "without a passphrase"},
		"encrypted legacy":  {legacy, 0o600, "without a passphrase"},
		"garbage":           {[]byte("hello"), 0o600, "no private key found"},
		"empty":             {nil, 0o600, "no private key found"},
		"certificate":       {[]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600, `"CERTIFICATE"`},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key")
			write(t, path, c.data)
			if err := os.Chmod(path, c.mode); err != nil {
				t.Fatal(err)
			}
			_, _, err := LoadOrCreateHostKey(path)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.says) {
				t.Errorf("error %q does not say %q", err, c.says)
			}
			if b, _ := os.ReadFile(path); string(b) != string(c.data) {
				t.Errorf("refused key file was overwritten")
			}
			// The error never carries key material.
			if block, _ := pem.Decode(c.data); block != nil && len(block.Bytes) > 8 {
				if strings.Contains(err.Error(), string(block.Bytes[:8])) || strings.Contains(err.Error(), "MC4CAQ") {
					t.Errorf("error contains key bytes: %q", err)
				}
			}
		})
	}
}
