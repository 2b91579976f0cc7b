package fingerprints

import (
	"bytes"
	"crypto"
	"crypto/dsa"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// KeyType is a public key algorithm, named as charon names it in its logs.
type KeyType string

// The key types btnsd accepts.
const (
	KeyRSA     KeyType = "RSA"
	KeyECDSA   KeyType = "ECDSA"
	KeyEd25519 KeyType = "ED25519"
)

// Limits on RSA moduli. Below the minimum a key is refused as too weak
// (and FIPS-minded peers refuse it anyway); above the maximum it is refused
// as a denial of service on signature checks.
const (
	MinRSABits = 2048
	MaxRSABits = 16384
)

// PublicKey is a parsed public key with every name btnsd gives it.
// It is immutable once made; share it freely.
type PublicKey struct {
	// Key is *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey.
	Key crypto.PublicKey
	// SPKI is the key's DER SubjectPublicKeyInfo, encoded canonically (as
	// Go and charon encode it), whatever form the input had.
	SPKI        []byte
	Fingerprint Fingerprint
	KeyID       KeyID
	Type        KeyType
	// Bits is the RSA modulus size, the ECDSA curve size, or 256 for Ed25519.
	Bits int
	// Curve is "P-256", "P-384" or "P-521" for ECDSA keys, else empty.
	Curve string
	// Comment is the comment of an OpenSSH key line or RFC 4716 file.
	Comment string
	// Format says in what form the key was read ("PEM SubjectPublicKeyInfo",
	// "OpenSSH", ...); empty for keys made with NewPublicKey.
	Format string
}

// NewPublicKey checks that k is a key btnsd accepts and names it.
// k may be a pointer or value of the rsa, ecdsa or ed25519 key types.
func NewPublicKey(k crypto.PublicKey) (*PublicKey, error) {
	p := &PublicKey{}
	switch k := k.(type) {
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			return nil, fmt.Errorf("%w: empty RSA key", ErrUnsupportedKey)
		}
		p.Key, p.Type, p.Bits = k, KeyRSA, k.N.BitLen()
		if p.Bits < MinRSABits {
			return nil, fmt.Errorf("%w: RSA key of %d bits is too small (minimum %d)", ErrUnsupportedKey, p.Bits, MinRSABits)
		}
		if p.Bits > MaxRSABits {
			return nil, fmt.Errorf("%w: RSA key of %d bits is too large (maximum %d)", ErrUnsupportedKey, p.Bits, MaxRSABits)
		}
	case rsa.PublicKey:
		return NewPublicKey(&k)
	case *ecdsa.PublicKey:
		if k == nil || k.X == nil || k.Y == nil {
			return nil, fmt.Errorf("%w: empty ECDSA key", ErrUnsupportedKey)
		}
		p.Key, p.Type = k, KeyECDSA
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			p.Curve, p.Bits = k.Curve.Params().Name, k.Curve.Params().BitSize
		default:
			name := "an unknown curve"
			if k.Curve != nil {
				name = k.Curve.Params().Name
			}
			return nil, fmt.Errorf("%w: ECDSA key on %s (accepted: P-256, P-384, P-521)", ErrUnsupportedKey, name)
		}
	case ecdsa.PublicKey:
		return NewPublicKey(&k)
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: Ed25519 key of %d bytes", ErrUnsupportedKey, len(k))
		}
		p.Key, p.Type, p.Bits = k, KeyEd25519, 256
	case *ed25519.PublicKey:
		if k == nil {
			return nil, fmt.Errorf("%w: empty Ed25519 key", ErrUnsupportedKey)
		}
		return NewPublicKey(*k)
	default:
		return nil, fmt.Errorf("%w: %s; use RSA (%d bits or more), ECDSA (P-256, P-384, P-521) or Ed25519",
			ErrUnsupportedKey, describeGoKey(k), MinRSABits)
	}
	der, err := x509.MarshalPKIXPublicKey(p.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: encoding SubjectPublicKeyInfo: %v", ErrUnsupportedKey, err)
	}
	p.SPKI = der
	p.Fingerprint = FingerprintOf(der)
	p.KeyID = KeyIDOf(der)
	return p, nil
}

// Description is the type and size for people: "ED25519", "RSA 3072",
// "ECDSA P-256".
func (k *PublicKey) Description() string {
	switch k.Type {
	case KeyRSA:
		return fmt.Sprintf("RSA %d", k.Bits)
	case KeyECDSA:
		return "ECDSA " + k.Curve
	}
	return string(k.Type)
}

// PEM returns the key as a PEM "PUBLIC KEY" block (SubjectPublicKeyInfo),
// the form charon's pubkeys option and `pki --pub --outform pem` use.
func (k *PublicKey) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: k.SPKI})
}

// SubjectKeyHash returns SHA-1 over the subjectPublicKey bits alone (not the
// whole SubjectPublicKeyInfo): the "subjkey" of `pki --keyid`, and what
// charon's load-key command answers with. It differs from KeyID.
func (k *PublicKey) SubjectKeyHash() KeyID {
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(k.SPKI, &spki); err != nil {
		// SPKI came from x509.MarshalPKIXPublicKey; it always parses.
		panic("fingerprints: own SubjectPublicKeyInfo does not parse: " + err.Error())
	}
	return sha1.Sum(spki.PublicKey.Bytes)
}

// ParsePublicKey reads one public key in any of the forms people hand each
// other: PEM SubjectPublicKeyInfo ("PUBLIC KEY", what `pki --pub --outform pem`
// and `openssl pkey -pubout` write), PEM PKCS#1 ("RSA PUBLIC KEY"), DER of
// either (the default output of `pki --pub`), an OpenSSH key line
// ("ssh-ed25519 AAAA... comment"), an RFC 4716 ("---- BEGIN SSH2 PUBLIC KEY")
// file, and bare base64 of a DER key or an OpenSSH key blob (what
// `pki --pub --outform sshkey` writes).
//
// It accepts RSA of MinRSABits to MaxRSABits, ECDSA on P-256, P-384 and P-521,
// and Ed25519. It refuses everything else with an error that says what it
// found and wraps ErrEmpty, ErrNotKey, ErrPrivateKey or ErrUnsupportedKey.
func ParsePublicKey(data []byte) (*PublicKey, error) {
	text := bytes.TrimSpace(data)
	switch {
	case len(text) == 0:
		return nil, ErrEmpty
	case bytes.HasPrefix(text, []byte("---- BEGIN SSH2 PUBLIC KEY ----")):
		return parseRFC4716(text)
	case bytes.Contains(text, []byte("-----BEGIN ")):
		return parsePEM(text)
	case !isText(text):
		return parseDER(data, "DER")
	}
	if b, err := base64.StdEncoding.DecodeString(string(stripSpace(text))); err == nil && len(b) > 0 {
		if b[0] == 0x30 { // an ASN.1 SEQUENCE
			return parseDER(b, "base64 DER")
		}
		return parseSSHBlob(b, "", "base64 OpenSSH key blob")
	}
	return parseSSHLine(text)
}

func parsePEM(text []byte) (*PublicKey, error) {
	var (
		found *PublicKey
		err   error
		rest  = text
		kinds []string
	)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		kinds = append(kinds, block.Type)
		var k *PublicKey
		switch t := block.Type; {
		case t == "PUBLIC KEY":
			k, err = parseDER(block.Bytes, "PEM")
		case t == "RSA PUBLIC KEY":
			k, err = parsePKCS1(block.Bytes)
		case strings.HasSuffix(t, "PRIVATE KEY"):
			return nil, fmt.Errorf("%w: found a PEM %q block; give the public key (pki --pub --in FILE --outform pem)", ErrPrivateKey, t)
		case t == "EC PARAMETERS":
			continue // openssl ecparam writes it before a key
		case t == "CERTIFICATE" || t == "X509 CERTIFICATE" || t == "TRUSTED CERTIFICATE":
			return nil, fmt.Errorf("%w: found an X.509 certificate; btnsd pins raw keys, extract it with: pki --pub --in FILE --outform pem", ErrNotKey)
		default:
			return nil, fmt.Errorf("%w: found a PEM %q block", ErrNotKey, t)
		}
		if err != nil {
			return nil, err
		}
		if found != nil {
			return nil, fmt.Errorf("%w: found more than one key (%s); give one key at a time", ErrNotKey, strings.Join(kinds, ", "))
		}
		found = k
	}
	if found == nil {
		if len(kinds) == 0 {
			return nil, fmt.Errorf("%w: a -----BEGIN line without a well-formed PEM block", ErrNotKey)
		}
		return nil, fmt.Errorf("%w: found only PEM %s", ErrNotKey, strings.Join(kinds, ", "))
	}
	return found, nil
}

func parsePKCS1(der []byte) (*PublicKey, error) {
	k, err := x509.ParsePKCS1PublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: PEM \"RSA PUBLIC KEY\" that does not parse: %v", ErrNotKey, err)
	}
	return named(k, "PEM PKCS#1 RSA")
}

// parseDER reads a DER SubjectPublicKeyInfo or PKCS#1 RSA public key, and
// tells other DER structures apart to say what they are. format names the
// container: "PEM" (then only a SubjectPublicKeyInfo is right), "DER", ...
func parseDER(der []byte, format string) (*PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(der)
	switch {
	case err == nil:
		return named(k, format+" SubjectPublicKeyInfo")
	case unknownSPKI(der) != "":
		return nil, fmt.Errorf("%w: %s; use RSA (%d bits or more), ECDSA (P-256, P-384, P-521) or Ed25519",
			ErrUnsupportedKey, unknownSPKI(der), MinRSABits)
	case format == "PEM":
		return nil, fmt.Errorf("%w: PEM \"PUBLIC KEY\" that does not parse: %v", ErrNotKey, err)
	}
	if k, err := x509.ParsePKCS1PublicKey(der); err == nil {
		return named(k, format+" PKCS#1 RSA")
	}
	if _, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		return nil, fmt.Errorf("%w: found a %s PKCS#8 private key", ErrPrivateKey, format)
	}
	if _, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return nil, fmt.Errorf("%w: found a %s PKCS#1 RSA private key", ErrPrivateKey, format)
	}
	if _, err := x509.ParseECPrivateKey(der); err == nil {
		return nil, fmt.Errorf("%w: found a %s SEC1 EC private key", ErrPrivateKey, format)
	}
	if _, err := x509.ParseCertificate(der); err == nil {
		return nil, fmt.Errorf("%w: found a %s X.509 certificate; btnsd pins raw keys, extract it with: pki --pub --in FILE --outform pem", ErrNotKey, format)
	}
	return nil, fmt.Errorf("%w: %d bytes of binary data that are no DER public key (starting %s)", ErrNotKey, len(der), hexStart(der))
}

// Algorithm and curve OIDs that x509 does not parse, or that NewPublicKey
// refuses, named for error messages.
var oidNames = map[string]string{
	"1.2.840.10040.4.1":     "DSA",
	"1.2.840.113549.1.1.10": "RSASSA-PSS",
	"1.3.101.110":           "X25519",
	"1.3.101.111":           "X448",
	"1.3.101.112":           "Ed25519",
	"1.3.101.113":           "Ed448",
	"1.2.840.10045.2.1":     "ECDSA",
	"1.2.840.10045.3.1.1":   "P-192",
	"1.3.132.0.33":          "P-224",
	"1.3.132.0.10":          "secp256k1",
	"1.3.36.3.3.2.8.1.1.7":  "brainpoolP256r1",
	"1.3.36.3.3.2.8.1.1.11": "brainpoolP384r1",
	"1.3.36.3.3.2.8.1.1.13": "brainpoolP512r1",
	"1.2.156.10197.1.301":   "SM2",
}

// unknownSPKI names the algorithm of a SubjectPublicKeyInfo that x509 cannot
// parse; it returns "" if der is no SubjectPublicKeyInfo at all.
func unknownSPKI(der []byte) string {
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	rest, err := asn1.Unmarshal(der, &spki)
	if err != nil || len(rest) != 0 || len(spki.Algorithm.Algorithm) == 0 {
		return ""
	}
	oid := spki.Algorithm.Algorithm.String()
	name, ok := oidNames[oid]
	if !ok {
		name = "algorithm " + oid
	}
	if name == "ECDSA" {
		var curve asn1.ObjectIdentifier
		if _, err := asn1.Unmarshal(spki.Algorithm.Parameters.FullBytes, &curve); err == nil {
			c, ok := oidNames[curve.String()]
			if !ok {
				c = "curve " + curve.String()
			}
			return "an ECDSA public key on " + c
		}
		return "an ECDSA public key with explicit or malformed curve parameters"
	}
	return "a public key of type " + name
}

func parseSSHLine(text []byte) (*PublicKey, error) {
	k, comment, _, rest, err := ssh.ParseAuthorizedKey(text)
	if err != nil {
		first, _, _ := bytes.Cut(text, []byte("\n"))
		if f := bytes.Fields(first); len(f) > 0 && looksLikeSSHType(string(f[0])) {
			return nil, fmt.Errorf("%w: an OpenSSH %q key line that does not parse: %v", ErrNotKey, f[0], err)
		}
		return nil, fmt.Errorf("%w: text that is no PEM, OpenSSH or base64 key (starting %q)", ErrNotKey, textStart(text))
	}
	if _, _, _, _, err := ssh.ParseAuthorizedKey(rest); err == nil {
		return nil, fmt.Errorf("%w: found more than one OpenSSH key line; give one key at a time", ErrNotKey)
	}
	return parseSSHBlob(k.Marshal(), comment, "OpenSSH")
}

func parseSSHBlob(blob []byte, comment, format string) (*PublicKey, error) {
	k, err := ssh.ParsePublicKey(blob)
	if err != nil {
		return nil, fmt.Errorf("%w: %s that does not parse: %v", ErrNotKey, format, err)
	}
	if _, ok := k.(*ssh.Certificate); ok {
		return nil, fmt.Errorf("%w: found an OpenSSH certificate (%s); give the plain public key", ErrNotKey, k.Type())
	}
	if strings.HasPrefix(k.Type(), "sk-") {
		return nil, fmt.Errorf("%w: %s is a FIDO security key, which cannot sign for IKE", ErrUnsupportedKey, k.Type())
	}
	ck, ok := k.(ssh.CryptoPublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: OpenSSH key type %s", ErrUnsupportedKey, k.Type())
	}
	p, err := NewPublicKey(ck.CryptoPublicKey())
	if err != nil {
		return nil, fmt.Errorf("%w (read as OpenSSH %s)", err, k.Type())
	}
	p.Format, p.Comment = format, comment
	return p, nil
}

// parseRFC4716 reads the "SSH2 PUBLIC KEY" file format of RFC 4716 (what
// `ssh-keygen -e` writes).
func parseRFC4716(text []byte) (*PublicKey, error) {
	lines := strings.Split(strings.ReplaceAll(string(text), "\r\n", "\n"), "\n")
	var (
		body    strings.Builder
		comment string
		ended   bool
	)
	for i := 1; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if l == "---- END SSH2 PUBLIC KEY ----" {
			ended = true
			break
		}
		if name, value, ok := strings.Cut(l, ":"); ok && !strings.ContainsAny(name, " \t") {
			for strings.HasSuffix(value, `\`) && i+1 < len(lines) { // continued header
				i++
				value = strings.TrimSuffix(value, `\`) + strings.TrimSpace(lines[i])
			}
			if strings.EqualFold(name, "Comment") {
				comment = strings.Trim(strings.TrimSpace(value), `"`)
			}
			continue
		}
		body.WriteString(l)
	}
	if !ended {
		return nil, fmt.Errorf("%w: RFC 4716 key without its END line", ErrNotKey)
	}
	blob, err := base64.StdEncoding.DecodeString(body.String())
	if err != nil {
		return nil, fmt.Errorf("%w: RFC 4716 key with bad base64: %v", ErrNotKey, err)
	}
	return parseSSHBlob(blob, comment, "RFC 4716")
}

// named checks k with NewPublicKey and records the form it was read in.
func named(k crypto.PublicKey, format string) (*PublicKey, error) {
	p, err := NewPublicKey(k)
	if err != nil {
		return nil, fmt.Errorf("%w (read as %s)", err, format)
	}
	p.Format = format
	return p, nil
}

func looksLikeSSHType(s string) bool {
	return strings.HasPrefix(s, "ssh-") || strings.HasPrefix(s, "ecdsa-sha2-") ||
		strings.HasPrefix(s, "sk-") || strings.Contains(s, "@openssh.com")
}

func describeGoKey(k crypto.PublicKey) string {
	switch k := k.(type) {
	case *dsa.PublicKey:
		return "a DSA public key"
	case *ecdh.PublicKey:
		return fmt.Sprintf("an %v key-agreement (ECDH) key, which cannot sign", k.Curve())
	}
	return fmt.Sprintf("a key of Go type %T", k)
}

// isText reports whether b is printable ASCII and white space only.
func isText(b []byte) bool {
	for _, c := range b {
		if (c < 0x20 || c > 0x7e) && c != '\n' && c != '\r' && c != '\t' {
			return false
		}
	}
	return true
}

func stripSpace(b []byte) []byte {
	return bytes.Map(func(r rune) rune {
		if r == ' ' || r == '\n' || r == '\r' || r == '\t' {
			return -1
		}
		return r
	}, b)
}

func textStart(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	if len(s) > 24 {
		s = s[:24] + "..."
	}
	return s
}

func hexStart(b []byte) string {
	n := min(len(b), 8)
	return fmt.Sprintf("% x", b[:n])
}
