package fingerprints

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// HostKeyPath returns where btnsd keeps its own private key under root:
// <root>/private/host.pem.
func HostKeyPath(root string) string { return filepath.Join(root, "private", "host.pem") }

// LoadOrCreateHostKey returns the host's private key from path, creating an
// Ed25519 key there (PKCS#8 PEM, mode 0600, in a directory of mode 0700) if
// there is none. Two processes racing to create it end up with the same key.
// See LoadHostKey for what an existing file may hold.
//
// Errors never contain key material.
func LoadOrCreateHostKey(path string) (crypto.Signer, *PublicKey, error) {
	signer, pub, err := LoadHostKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return signer, pub, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := createExclusive(path, data); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, nil, fmt.Errorf("creating host key: %w", err)
	}
	// Load what is there now: ours, or the key of a process that won the race.
	return LoadHostKey(path)
}

// createExclusive writes a complete file at path with mode 0600, or fails
// with fs.ErrExist if path exists: the data goes to a temporary file that is
// then hard-linked to path, so that no one ever reads half a key.
func createExclusive(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-hostkey-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Link(f.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

// LoadHostKey reads a private key for btnsd to authenticate with: RSA
// (MinRSABits or more), ECDSA (P-256, P-384, P-521) or Ed25519, in PEM
// PKCS#8 ("PRIVATE KEY"), PKCS#1 ("RSA PRIVATE KEY"), SEC1 ("EC PRIVATE
// KEY"), OpenSSH ("OPENSSH PRIVATE KEY", without passphrase), or the DER of
// the first three. The file must not be readable or writable by group or
// others. A missing file gives an error that wraps fs.ErrNotExist.
//
// Errors never contain key material.
func LoadHostKey(path string) (crypto.Signer, *PublicKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("host key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("host key %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, nil, fmt.Errorf("host key %s: mode %04o lets group or others at the private key: chmod 600 it", path, perm)
	}
	b, err := readFileLimited(path)
	if err != nil {
		return nil, nil, fmt.Errorf("host key: %w", err)
	}
	signer, err := parsePrivateKey(b)
	if err != nil {
		return nil, nil, fmt.Errorf("host key %s: %w", path, err)
	}
	pub, err := NewPublicKey(signer.Public())
	if err != nil {
		return nil, nil, fmt.Errorf("host key %s: %w", path, err)
	}
	return signer, pub, nil
}

// parsePrivateKey reads one private key. Its errors name the format found,
// never the bytes.
func parsePrivateKey(b []byte) (crypto.Signer, error) {
	rest := b
	for {
		block, r := pem.Decode(rest)
		if block == nil {
			break
		}
		rest = r
		if block.Headers["Proc-Type"] != "" {
			return nil, errors.New("encrypted private key: btnsd needs it without a passphrase")
		}
		var (
			k   any
			err error
		)
		switch block.Type {
		case "EC PARAMETERS":
			continue
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(block.Bytes)
		case "OPENSSH PRIVATE KEY":
			k, err = ssh.ParseRawPrivateKey(pem.EncodeToMemory(block))
			var missing *ssh.PassphraseMissingError
			if errors.As(err, &missing) {
				return nil, errors.New("encrypted OpenSSH private key: btnsd needs it without a passphrase")
			}
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("encrypted PKCS#8 private key: btnsd needs it without a passphrase")
		case "PUBLIC KEY", "RSA PUBLIC KEY":
			return nil, fmt.Errorf("found a PEM %q block: the host key must be a private key", block.Type)
		default:
			return nil, fmt.Errorf("found a PEM %q block, not a private key", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM %q that does not parse: %s", block.Type, redact(err))
		}
		return asSigner(k)
	}
	if k, err := x509.ParsePKCS8PrivateKey(b); err == nil {
		return asSigner(k)
	}
	if k, err := x509.ParsePKCS1PrivateKey(b); err == nil {
		return asSigner(k)
	}
	if k, err := x509.ParseECPrivateKey(b); err == nil {
		return asSigner(k)
	}
	return nil, errors.New("no private key found (PEM PKCS#8, PKCS#1, SEC1, OpenSSH, or DER)")
}

func asSigner(k any) (crypto.Signer, error) {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	case *ed25519.PrivateKey: // what ssh.ParseRawPrivateKey returns
		return *k, nil
	}
	return nil, fmt.Errorf("%w: private key of Go type %T; use RSA, ECDSA or Ed25519", ErrUnsupportedKey, k)
}

// redact keeps a parse error's message but never echoes input bytes; the
// x509 and ssh parsers do not, but a host key error may end up in a log.
func redact(err error) string {
	s := err.Error()
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return s
}
