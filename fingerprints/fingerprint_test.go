package fingerprints

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFingerprintForms(t *testing.T) {
	// The key of testdata/good/pki-ed25519.pem; SHA-256 by openssl.
	const (
		text = "SHA256:n4MxRl7tAN8os+FlCuepimAka7tl8Cz/2uO3BCN5yTM"
		hexf = "9f8331465eed00df28b3e1650ae7a98a60246bbb65f02cffdae3b7042379c933"
	)
	fp, err := ParseFingerprint(text)
	if err != nil {
		t.Fatal(err)
	}
	if fp.String() != text || fp.Hex() != hexf {
		t.Fatalf("String, Hex = %s, %s", fp, fp.Hex())
	}
	colon := ""
	for i := 0; i < len(hexf); i += 2 {
		if i > 0 {
			colon += ":"
		}
		colon += strings.ToUpper(hexf[i : i+2])
	}
	for _, in := range []string{text, "sha256:" + text[7:], text + "=", " " + text + "\n", hexf, strings.ToUpper(hexf), colon} {
		got, err := ParseFingerprint(in)
		if err != nil || got != fp {
			t.Errorf("ParseFingerprint(%q) = %s, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "SHA256:", "SHA256:abc", hexf[:63], hexf + "0", "MD5:" + hexf, strings.Replace(hexf, "9", "g", 1), "SHA256:" + hexf} {
		if _, err := ParseFingerprint(in); !errors.Is(err, ErrBadFingerprint) {
			t.Errorf("ParseFingerprint(%q) error = %v, want ErrBadFingerprint", in, err)
		}
	}
	b, _ := json.Marshal(struct{ F Fingerprint }{fp})
	if string(b) != `{"F":"`+text+`"}` {
		t.Errorf("JSON %s", b)
	}
	var back struct{ F Fingerprint }
	if err := json.Unmarshal(b, &back); err != nil || back.F != fp {
		t.Errorf("JSON round trip: %v", err)
	}
}

func TestKeyIDForms(t *testing.T) {
	const colon = "6d:2b:63:07:d1:76:f8:44:2b:84:91:46:64:61:11:d4:7d:cf:99:e0"
	const plain = "6d2b6307d176f8442b849146646111d47dcf99e0"
	id, err := ParseKeyID(colon)
	if err != nil {
		t.Fatal(err)
	}
	if id.String() != colon || id.Hex() != plain || id.Swanctl() != "keyid:#"+plain {
		t.Fatalf("forms %s %s %s", id, id.Hex(), id.Swanctl())
	}
	for _, in := range []string{plain, "keyid:#" + plain, "KEYID:#" + strings.ToUpper(plain), "keyid:" + plain, "@#" + plain, "keyid:#" + colon} {
		if got, err := ParseKeyID(in); err != nil || got != id {
			t.Errorf("ParseKeyID(%q) = %s, %v", in, got, err)
		}
	}
	for _, in := range []string{"", plain[:38], "keyid:#", "fqdn:" + plain} {
		if _, err := ParseKeyID(in); err == nil {
			t.Errorf("ParseKeyID(%q) accepted", in)
		}
	}
}

func TestIdentity(t *testing.T) {
	for in, want := range map[string]string{
		"":                        "",
		"host.example.org":        "fqdn:host.example.org",
		"Host.Example.org.":       "fqdn:host.example.org",
		"@peer":                   "fqdn:peer",
		"fqdn:peer.example":       "fqdn:peer.example",
		"192.0.2.1":               "ipv4:192.0.2.1",
		"ipv4:192.0.2.1":          "ipv4:192.0.2.1",
		"::ffff:192.0.2.1":        "ipv4:192.0.2.1",
		"2001:DB8::1":             "ipv6:2001:db8::1",
		"ipv6:2001:db8::1":        "ipv6:2001:db8::1",
		"keyid:#0A1B2C":           "keyid:#0a1b2c",
		"@#0a1b2c":                "keyid:#0a1b2c",
		"keyid:0a:1b:2c":          "keyid:#0a1b2c",
		"  host.example.org  \n ": "fqdn:host.example.org",
	} {
		id, err := ParseIdentity(in)
		if err != nil {
			t.Errorf("ParseIdentity(%q): %v", in, err)
			continue
		}
		if id.String() != want {
			t.Errorf("ParseIdentity(%q) = %q, want %q", in, id, want)
		}
		if again, err := ParseIdentity(id.String()); err != nil || again != id {
			t.Errorf("%q does not read back: %v", id, err)
		}
	}
	for _, in := range []string{"alice@example.org", "CN=peer, O=x", "ipv4:2001:db8::1", "ipv6:192.0.2.1", "keyid:#xyz", "-bad-.example", "a..b", "host name"} {
		if id, err := ParseIdentity(in); !errors.Is(err, ErrBadIdentity) {
			t.Errorf("ParseIdentity(%q) = %q, %v; want ErrBadIdentity", in, id, err)
		}
	}
}

func TestScope(t *testing.T) {
	s, err := ParseScope("web, db,web")
	if err != nil || s.String() != "db,web" || s.All() || !s.Includes("db") || s.Includes("mail") {
		t.Errorf("ParseScope = %v, %v", s, err)
	}
	if s, err := ParseScope("all"); err != nil || !s.All() || !s.Includes("anything") {
		t.Errorf("ParseScope(all) = %v, %v", s, err)
	}
	for _, bad := range []string{"a b", "x,all", ",", "é"} {
		if _, err := ParseScope(bad); err == nil {
			t.Errorf("ParseScope(%q) accepted", bad)
		}
	}
	for _, sc := range []Scope{nil, {"db", "web"}} {
		b, _ := json.Marshal(sc)
		var back Scope
		if err := json.Unmarshal(b, &back); err != nil || back.String() != sc.String() {
			t.Errorf("JSON %s: %v %v", b, back, err)
		}
	}
}

// FuzzParsePublicKey: the parser never panics, and whatever it accepts is
// a key it can name and write out again as the same key.
func FuzzParsePublicKey(f *testing.F) {
	for _, dir := range []string{"testdata/good", "testdata/bad"} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err == nil {
				f.Add(b)
			}
		}
	}
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n"))
	f.Add([]byte("---- BEGIN SSH2 PUBLIC KEY ----\nComment: x\\\n y\nAAAA\n---- END SSH2 PUBLIC KEY ----\n"))
	f.Add([]byte{0x30, 0x82, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		k, err := ParsePublicKey(in)
		if err != nil {
			if k != nil {
				t.Fatal("key and error both returned")
			}
			for _, want := range []error{ErrEmpty, ErrNotKey, ErrPrivateKey, ErrUnsupportedKey} {
				if errors.Is(err, want) {
					return
				}
			}
			t.Fatalf("error wraps no sentinel: %v", err)
		}
		if k.Fingerprint != FingerprintOf(k.SPKI) || k.KeyID != KeyIDOf(k.SPKI) {
			t.Fatal("names do not match the SPKI")
		}
		again, err := ParsePublicKey(k.PEM())
		if err != nil || again.Fingerprint != k.Fingerprint {
			t.Fatalf("PEM() does not read back: %v", err)
		}
		_ = k.Description()
		_ = k.SubjectKeyHash()
		_, _, _ = k.IPSECKEYPublicKey()
	})
}

// The forms a fingerprint is written in, in policy files (btns.peers) and
// on the command line: SHA256:<base64> padded or not, in the standard or
// URL-safe alphabet, in any letter case for the prefix; 64 hex digits in
// either case; 32 colon-separated bytes.
func TestParseFingerprintForms(t *testing.T) {
	const fpB64 = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU" // SHA-256 of ""
	want := Fingerprint{0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
		0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55}
	good := []string{
		fpB64,
		fpB64 + "=",
		"sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
		"SHA256:47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU",
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
		"e3:b0:c4:42:98:fc:1c:14:9a:fb:f4:c8:99:6f:b9:24:27:ae:41:e4:64:9b:93:4c:a4:95:99:1b:78:52:b8:55",
	}
	for _, s := range good {
		f, err := ParseFingerprint(s)
		if err != nil || f != want {
			t.Errorf("ParseFingerprint(%q) = %v, %v", s, f, err)
		}
	}
	if got := want.String(); got != fpB64 {
		t.Errorf("String() = %q", got)
	}
	if got := want.Hex(); got != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("Hex() = %q", got)
	}
	bad := []string{
		"", "SHA256:", "SHA256:abc", "SHA1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8", // 31 bytes
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
		"g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"e3b:0c4:42:98:fc:1c:14:9a:fb:f4:c8:99:6f:b9:24:27:ae:41:e4:64:9b:93:4c:a4:95:99:1b:78:52:b8:55",
		"SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU!",
	}
	for _, s := range bad {
		if _, err := ParseFingerprint(s); err == nil {
			t.Errorf("ParseFingerprint(%q) accepted", s)
		}
	}
}
