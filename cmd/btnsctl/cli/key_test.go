package cli

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/btnsd/btnsd/fingerprints"
	"github.com/btnsd/btnsd/fingerprints/fptest"
)

// Key files made by strongSwan's pki, with their names from pki --keyid and
// openssl (see fingerprints/key_test.go).
const (
	testdata   = "../../../fingerprints/testdata"
	edFile     = testdata + "/good/pki-ed25519.pem"
	edSHA256   = "SHA256:n4MxRl7tAN8os+FlCuepimAka7tl8Cz/2uO3BCN5yTM"
	edHex      = "9f8331465eed00df28b3e1650ae7a98a60246bbb65f02cffdae3b7042379c933"
	edKeyID    = "6d:2b:63:07:d1:76:f8:44:2b:84:91:46:64:61:11:d4:7d:cf:99:e0"
	rsaFile    = testdata + "/good/pki-rsa2048.pem"
	rsaSHA256  = "SHA256:IfJwgEn+qmHpN8ZmD8gFaxGPOeYEvsQhaTsQEkikRL0"
	sshFile    = testdata + "/good/ssh-ed25519.pub" // comment alice@laptop
	sshSHA256  = "SHA256:CA8KYOWEIMKsJ1pfuPEiCHzp8exuFA20rF4j5mCRAdk"
	p384File   = testdata + "/good/pki-ecdsa384.pem"
	p384SHA256 = "SHA256:G6b5VntUnOeJTGHWcl0nLQLgQKzHt1UnpaxBuB052nM"
)

// TestKeySession walks through what an administrator does: add, look,
// trust, scope, untrust, revoke.
func TestKeySession(t *testing.T) {
	root := t.TempDir()

	out := ok(t, root, "", "key", "add", "--name", "db1", "--identity", "db1.example.org", edFile)
	wantContains(t, "add", out, "added "+edSHA256+` ED25519 "db1": untrusted`, "trust with: btnsctl key trust "+edHex[:12])

	out = ok(t, root, "", "key", "add", "--trust", "--scope", "web", "--scope", "db", rsaFile)
	wantContains(t, "add --trust", out, "added "+rsaSHA256+` RSA 2048 "pki-rsa2048": trusted for BTNS policies of scope db, web`)
	if strings.Contains(out, "trust with") {
		t.Errorf("hint to trust a trusted key:\n%s", out)
	}

	// From standard input, the name from the OpenSSH comment.
	line, _ := os.ReadFile(sshFile)
	out = ok(t, root, string(line), "key", "add", "-")
	wantContains(t, "add -", out, "added "+sshSHA256+` ED25519 "alice@laptop": untrusted`)

	out = ok(t, root, "", "key", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("list has %d lines:\n%s", len(lines), out)
	}
	wantContains(t, "list header", lines[0], "KEY", "NAME", "TYPE", "TRUST", "SCOPE", "IDENTITY", "ADDED", "FINGERPRINT")
	wantContains(t, "list (by name)", lines[1], "alice@laptop", "untrusted", sshSHA256)
	wantContains(t, "list", lines[2], edHex[:12], "db1", "ED25519", "untrusted", "all", "fqdn:db1.example.org", "2025-03-14", edSHA256)
	wantContains(t, "list", lines[3], "pki-rsa2048", "RSA 2048", "trusted", "db,web")

	out = ok(t, root, "", "key", "show", "db1")
	wantContains(t, "show", out,
		"fingerprint   "+edSHA256, "hex           "+edHex, "keyid         "+edKeyID,
		"swanctl id    keyid:#"+strings.ReplaceAll(edKeyID, ":", ""), "type          ED25519",
		"name          db1", "IKE identity  fqdn:db1.example.org", "trust         untrusted",
		"added         2025-03-14T15:09:26Z by root (sudo from alice)",
		"file          "+filepath.Join(root, "pubkeys/fp", edHex))

	// Every way of naming the key finds it.
	for _, name := range []string{edSHA256, edHex, edHex[:6], strings.ToUpper(edHex[:8]), edSHA256[:12], edKeyID, "keyid:#" + strings.ReplaceAll(edKeyID, ":", ""), "db1"} {
		if out := ok(t, root, "", "key", "show", name); !strings.Contains(out, edSHA256) {
			t.Errorf("show %s found another key:\n%s", name, out)
		}
	}

	out = ok(t, root, "", "key", "trust", edHex[:8])
	wantContains(t, "trust", out, edSHA256+` "db1": trusted for all BTNS policies`)
	out = ok(t, root, "", "key", "trust", "db1", "--scope", "db")
	wantContains(t, "trust --scope", out, "trusted for BTNS policies of scope db")
	out = ok(t, root, "", "key", "show", "db1")
	wantContains(t, "show after trust", out, "trust         trusted for BTNS policies of scope db", "changed       2025-03-14T15:09:26Z by root (sudo from alice)")
	out = ok(t, root, "", "key", "trust", "db1", "--all-scopes")
	wantContains(t, "trust --all-scopes", out, "trusted for all BTNS policies")

	out = ok(t, root, "", "key", "list", "--trusted")
	if n := strings.Count(out, "\n"); n != 3 || strings.Contains(out, "alice") {
		t.Errorf("list --trusted:\n%s", out)
	}
	out = ok(t, root, "", "key", "list", "--untrusted")
	if !strings.Contains(out, "alice@laptop") || strings.Contains(out, "db1") {
		t.Errorf("list --untrusted:\n%s", out)
	}
	out = ok(t, root, "", "key", "list", "--scope", "web")
	if strings.Count(out, "\n") != 4 { // all three: db1 (all), rsa (web), alice (all)
		t.Errorf("list --scope web:\n%s", out)
	}

	out = ok(t, root, "", "key", "untrust", "db1")
	wantContains(t, "untrust", out, edSHA256+` "db1": untrusted`)

	out = ok(t, root, "", "key", "revoke", "alice@laptop")
	wantContains(t, "revoke", out, "revoked "+sshSHA256+` "alice@laptop": removed from the store`)
	if out := ok(t, root, "", "key", "list"); strings.Contains(out, "alice") {
		t.Errorf("revoked key still listed:\n%s", out)
	}
	r := btnsctl(t, root, "", "key", "show", sshSHA256)
	if r.code != ExitError || !strings.Contains(r.stderr, "key not found") {
		t.Errorf("show revoked key: %+v", r)
	}
}

func TestKeyListJSON(t *testing.T) {
	root := t.TempDir()
	ok(t, root, "", "key", "add", "--name", "db1", "--comment", "the db", "--identity", "192.0.2.7", "--trust", edFile)
	ok(t, root, "", "key", "add", "--scope", "web", p384File)
	var list []map[string]any
	if err := json.Unmarshal([]byte(ok(t, root, "", "key", "list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 {
		t.Fatalf("%d keys", len(list))
	}
	want := map[string]any{
		"fingerprint": edSHA256, "hex": edHex, "keyid": edKeyID, "type": "ED25519", "bits": 256.0,
		"name": "db1", "comment": "the db", "identity": "ipv4:192.0.2.7", "trust": "trusted", "scope": "all",
		"added": "2025-03-14T15:09:26Z", "file": filepath.Join(root, "pubkeys/fp", edHex),
	}
	for k, v := range want {
		if list[0][k] != v {
			t.Errorf("%s = %v, want %v", k, list[0][k], v)
		}
	}
	if by, _ := list[0]["added_by"].(map[string]any); by["user"] != "root" || by["sudo_user"] != "alice" {
		t.Errorf("added_by = %v", list[0]["added_by"])
	}
	if list[1]["fingerprint"] != p384SHA256 || list[1]["curve"] != "P-384" || fmt.Sprint(list[1]["scope"]) != "[web]" || list[1]["trust"] != "untrusted" {
		t.Errorf("second key: %v", list[1])
	}
	var one map[string]any
	if err := json.Unmarshal([]byte(ok(t, root, "", "key", "show", "--json", "db1")), &one); err != nil || one["fingerprint"] != edSHA256 {
		t.Errorf("show --json: %v %v", one, err)
	}
	// An empty store lists as an empty array, not null.
	if out := ok(t, t.TempDir(), "", "key", "list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("empty list --json = %q", out)
	}
}

func TestKeyAddRefuses(t *testing.T) {
	root := t.TempDir()
	priv := fptest.Signer(t, "ed25519")
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	privFile := filepath.Join(t.TempDir(), "private.pem")
	if err := os.WriteFile(privFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		file, stdin, says string
	}{
		{testdata + "/bad/dsa.pub.pem", "", "DSA"},
		{testdata + "/bad/rsa1024.pub.pem", "", "RSA key of 1024 bits is too small"},
		{testdata + "/bad/garbage.bin", "", "not a public key"},
		{testdata + "/bad/empty", "", "empty input"},
		{testdata + "/bad/cert.pem", "", "X.509 certificate"},
		{testdata + "/bad/ed448.pub.pem", "", "Ed448"},
		{privFile, "", "private key"},
		{"-", "", "stdin: empty input"},
		{"-", "ssh-dss AAAAB3NzaC1kc3MAAACBAP", "ssh-dss"},
		{filepath.Join(root, "missing.pem"), "", "no such file"},
	} {
		r := btnsctl(t, root, c.stdin, "key", "add", "--trust", c.file)
		if r.code != ExitError || !strings.Contains(r.stderr, c.says) || r.stdout != "" {
			t.Errorf("add %s: exit %d, stderr %q; want exit 1 saying %q", c.file, r.code, r.stderr, c.says)
		}
	}
	if out := ok(t, root, "", "key", "list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("refused keys reached the store:\n%s", out)
	}

	// A batch with a bad file adds nothing.
	r := btnsctl(t, root, "", "key", "add", edFile, testdata+"/bad/dsa.pub.pem")
	if r.code != ExitError {
		t.Errorf("batch with a bad key: exit %d", r.code)
	}
	ok(t, root, "", "key", "add", edFile)
	r = btnsctl(t, root, "", "key", "add", rsaFile, edFile)
	if r.code != ExitError || !strings.Contains(r.stderr, "already in the store") || !strings.Contains(r.stderr, `"pki-ed25519"`) {
		t.Errorf("add of a stored key: %+v", r)
	}
	if out := ok(t, root, "", "key", "list"); strings.Contains(out, "rsa") {
		t.Errorf("half a batch was added:\n%s", out)
	}
	out := ok(t, root, "", "key", "add", rsaFile, sshFile, p384File)
	if strings.Count(out, "added ") != 3 || !strings.Contains(out, "trust with: btnsctl key trust KEY") {
		t.Errorf("batch add:\n%s", out)
	}
}

func TestExitCodes(t *testing.T) {
	root := t.TempDir()
	ok(t, root, "", "key", "add", "--name", "twin", edFile)
	ok(t, root, "", "key", "add", "--name", "twin", rsaFile)
	for _, c := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{}, ExitOK, "Usage:"},
		{[]string{"--help"}, ExitOK, "Usage:"},
		{[]string{"key"}, ExitOK, "Available Commands"},
		{[]string{"key", "list", "--help"}, ExitOK, "--json"},
		{[]string{"bogus"}, ExitUsage, `unknown command "bogus" for "btnsctl"`},
		{[]string{"key", "lsit"}, ExitUsage, `did you mean "list"?`},
		{[]string{"key", "list", "--nope"}, ExitUsage, "unknown flag: --nope"},
		{[]string{"key", "list", "extra"}, ExitUsage, "want 0 argument(s)"},
		{[]string{"key", "list", "--trusted", "--untrusted"}, ExitUsage, "--trusted and --untrusted exclude each other"},
		{[]string{"key", "add"}, ExitUsage, "at least 1 argument"},
		{[]string{"key", "add", "--identity", "alice@example.org", edFile}, ExitUsage, "FQDN, IP address and keyid"},
		{[]string{"key", "add", "--scope", "a b", edFile}, ExitUsage, "bad scope name"},
		{[]string{"key", "add", "--name", "x", edFile, rsaFile}, ExitUsage, "give one FILE"},
		{[]string{"key", "show"}, ExitUsage, "want 1 argument(s), got 0"},
		{[]string{"key", "fp", "--format", "md5", edFile}, ExitUsage, "--format"},
		{[]string{"key", "export", "twin", "--format", "der"}, ExitUsage, "want pem or ipseckey"},
		{[]string{"key", "trust", "x", "--scope", "a", "--all-scopes"}, ExitUsage, "exclude each other"},
		{[]string{"key", "show", "twin"}, ExitError, "matches 2 keys"},
		{[]string{"key", "show", "nobody"}, ExitError, "key not found"},
		{[]string{"key", "show", "9f8"}, ExitError, "shorter than 4"},
		{[]string{"key", "trust", "nobody"}, ExitError, "key not found"},
		{[]string{"key", "revoke", "nobody"}, ExitError, "key not found"},
		{[]string{"key", "export", edSHA256, "--format", "ipseckey"}, ExitUsage, "--dns-name is needed"},
	} {
		r := btnsctl(t, root, "", c.args...)
		if r.code != c.code || !strings.Contains(r.stdout+r.stderr, c.says) {
			t.Errorf("btnsctl %s: exit %d, want %d saying %q\nstdout: %s\nstderr: %s",
				strings.Join(c.args, " "), r.code, c.code, c.says, r.stdout, r.stderr)
		}
		if c.code == ExitUsage && !strings.Contains(r.stderr, "--help' for usage") {
			t.Errorf("btnsctl %s: no usage hint: %s", strings.Join(c.args, " "), r.stderr)
		}
	}
	// An ambiguous name lists both keys, so the user can pick one.
	r := btnsctl(t, root, "", "key", "trust", "twin")
	wantContains(t, "ambiguous", r.stderr, edHex, rsaSHA256)
}

func TestKeyFp(t *testing.T) {
	root := filepath.Join(t.TempDir(), "no-store")
	out := ok(t, root, "", "key", "fp", edFile, sshFile)
	wantContains(t, "fp", out, "file         "+edFile, "fingerprint  "+edSHA256, "hex          "+edHex,
		"keyid        "+edKeyID, "type         ED25519", sshSHA256, "comment      alice@laptop")
	line, _ := os.ReadFile(sshFile)
	if out := ok(t, root, string(line), "key", "fp", "--format", "sha256", "-"); out != sshSHA256+"\n" {
		t.Errorf("fp --format sha256 - = %q", out)
	}
	if out := ok(t, root, "", "key", "fp", "--format", "hex", edFile); out != edHex+"\n" {
		t.Errorf("fp --format hex = %q", out)
	}
	r := btnsctl(t, root, "", "key", "fp", "--format", "keyid", edFile, testdata+"/bad/dsa.ssh.pub", sshFile)
	if r.code != ExitError || strings.Count(r.stdout, "\n") != 2 || !strings.Contains(r.stderr, "DSA") {
		t.Errorf("fp with a bad file: %+v", r)
	}
	if _, err := os.Stat(root); err == nil {
		t.Errorf("fp created the store")
	}
}

// TestKeyFpMatchesPKI: the keyid btnsctl prints is the one strongSwan's
// pki prints, for keys pki made (and so charon's identity of the key).
func TestKeyFpMatchesPKI(t *testing.T) {
	pki := fptest.RequireTool(t, "pki")
	dir := t.TempDir()
	for _, c := range [][]string{{"ed25519"}, {"rsa", "--size", "2048"}, {"ecdsa", "--size", "384"}} {
		priv := filepath.Join(dir, c[0]+".key")
		pub := filepath.Join(dir, c[0]+".pub")
		if err := os.WriteFile(priv, fptest.Run(t, pki, append([]string{"--gen", "--outform", "pem", "--type"}, c...)...), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(pub, fptest.Run(t, pki, "--pub", "--in", priv), 0o644); err != nil {
			t.Fatal(err)
		}
		want, _ := fptest.PKIKeyIDs(t, pki, pub)
		if got := ok(t, dir, "", "key", "fp", "--format", "keyid", pub); got != want+"\n" {
			t.Errorf("%s: btnsctl keyid %s, pki %s", c[0], got, want)
		}
	}
}

func TestKeyExport(t *testing.T) {
	root := t.TempDir()
	ok(t, root, "", "key", "add", "--name", "db1", "--identity", "db1.example.org", edFile)
	ok(t, root, "", "key", "add", "--name", "rsa", rsaFile)
	pemOut := ok(t, root, "", "key", "export", "db1")
	want, _ := os.ReadFile(edFile)
	if pemOut != string(want) {
		t.Errorf("export = %q, want the PEM pki wrote %q", pemOut, want)
	}
	out := ok(t, root, "", "key", "export", "db1", "--format", "ipseckey")
	if !strings.HasPrefix(out, "db1.example.org. IN IPSECKEY ( 10 0 4 . ") || !strings.HasSuffix(out, " )\n") {
		t.Errorf("ipseckey = %q", out)
	}
	out = ok(t, root, "", "key", "export", "rsa", "--format", "ipseckey", "--dns-name", "gw.example.net", "--gateway", "192.0.2.1", "--precedence", "20")
	if !strings.HasPrefix(out, "gw.example.net. IN IPSECKEY ( 20 1 2 192.0.2.1 AwEAA") {
		t.Errorf("RSA ipseckey = %q", out)
	}
}

func TestKeyHost(t *testing.T) {
	root := t.TempDir()
	r := btnsctl(t, root, "", "key", "host")
	if r.code != ExitError || !strings.Contains(r.stderr, "btnsctl key host --create") {
		t.Errorf("host without key: %+v", r)
	}
	out := ok(t, root, "", "key", "host", "--create")
	path := filepath.Join(root, "private", "host.pem")
	wantContains(t, "host", out, "fingerprint  SHA256:", "keyid", "type         ED25519", "file         "+path, "-----BEGIN PUBLIC KEY-----")
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("host key file: %v %v", fi, err)
	}
	// The PEM it prints is what a peer adds; the fingerprint agrees.
	pemOut := ok(t, root, "", "key", "host", "--format", "pem")
	peer := t.TempDir()
	added := ok(t, peer, pemOut, "key", "add", "--name", "that-host", "--trust", "-")
	fp := strings.Fields(out)[1]
	if !strings.Contains(added, fp) {
		t.Errorf("peer added %s, host says %s", added, fp)
	}
	if again := ok(t, root, "", "key", "host"); again != out {
		t.Errorf("host key changed between calls")
	}
	out = ok(t, root, "", "key", "host", "--format", "ipseckey", "--dns-name", "me.example.org")
	if !strings.HasPrefix(out, "me.example.org. IN IPSECKEY ( 10 0 4 . ") {
		t.Errorf("host ipseckey = %q", out)
	}
	// An existing key given by path (an OpenSSH RSA key here).
	block, err := ssh.MarshalPrivateKey(fptest.Signer(t, "rsa2048"), "")
	if err != nil {
		t.Fatal(err)
	}
	own := filepath.Join(t.TempDir(), "id_rsa")
	if err := os.WriteFile(own, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	wantContains(t, "host --host-key", ok(t, root, "", "key", "host", "--host-key", own), "type         RSA 2048")
	if err := os.Chmod(own, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := btnsctl(t, root, "", "key", "host", "--host-key", own); r.code != ExitError || !strings.Contains(r.stderr, "chmod 600") {
		t.Errorf("world-readable host key: %+v", r)
	}
}

func TestKeyListProblems(t *testing.T) {
	root := t.TempDir()
	ok(t, root, "", "key", "add", edFile)
	junk := filepath.Join(root, "pubkeys", "fp", "junk.txt")
	if err := os.WriteFile(junk, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := btnsctl(t, root, "", "key", "list")
	if r.code != ExitOK || !strings.Contains(r.stdout, edSHA256) || !strings.Contains(r.stderr, "warning: skipped "+junk+": foreign file") {
		t.Errorf("list with a foreign file: %+v", r)
	}
}

func TestRootFlagAndEnv(t *testing.T) {
	envRoot, flagRoot := t.TempDir(), t.TempDir()
	cmd := NewRootCmd(testEnv(map[string]string{"BTNSD_ROOT": envRoot}))
	cmd.SetOut(new(strings.Builder))
	if code := Run(t.Context(), cmd, []string{"--root", flagRoot, "key", "add", edFile}); code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	if _, err := os.Stat(filepath.Join(flagRoot, "pubkeys/fp", edHex)); err != nil {
		t.Errorf("--root not used: %v", err)
	}
	if _, err := os.Stat(filepath.Join(envRoot, "pubkeys")); !os.IsNotExist(err) {
		t.Errorf("$BTNSD_ROOT used despite --root")
	}
	help := NewRootCmd(testEnv(nil))
	var out strings.Builder
	help.SetOut(&out)
	Run(t.Context(), help, []string{"--help"})
	wantContains(t, "help", out.String(), `(default "/etc/btnsd")`, `(default "/run/btnsd/btnsd.sock")`)
}

// TestKeyConcurrentCLI: several btnsctl runs at once on one store (each
// its own Store, as separate processes would be) lose nothing.
func TestKeyConcurrentCLI(t *testing.T) {
	root := t.TempDir()
	dir := t.TempDir()
	const n = 12
	files := make([]string, n)
	for i := range files {
		k, err := fingerprints.NewPublicKey(fptest.Signer(t, "ed25519").Public())
		if err != nil {
			t.Fatal(err)
		}
		files[i] = filepath.Join(dir, fmt.Sprintf("k%d.pem", i))
		if err := os.WriteFile(files[i], k.PEM(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i := range files {
		wg.Go(func() {
			if r := btnsctl(t, root, "", "key", "add", "--trust", files[i]); r.code != ExitOK {
				t.Errorf("add %d: %+v", i, r)
			}
			if r := btnsctl(t, root, "", "key", "untrust", fmt.Sprintf("k%d", i)); r.code != ExitOK {
				t.Errorf("untrust %d: %+v", i, r)
			}
		})
	}
	wg.Wait()
	out := ok(t, root, "", "key", "list", "--untrusted")
	if got := strings.Count(out, "\n") - 1; got != n {
		t.Errorf("%d untrusted keys listed, want %d:\n%s", got, n, out)
	}
	ents, _ := os.ReadDir(filepath.Join(root, "pubkeys/fp"))
	for _, e := range ents {
		if info, _ := e.Info(); strings.HasPrefix(e.Name(), ".tmp") || (info.Mode()&fs.ModeType) != 0 {
			t.Errorf("stray file %s", e.Name())
		}
	}
}
