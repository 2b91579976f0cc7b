package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btnsd/btnsd/fingerprints"
	"github.com/btnsd/btnsd/fingerprints/fptest"
)

const goodPolicy = `connections {
  lan {
    btns {
      enabled = yes
      peers = all
    }
    children { host { mode = tunnel } }
  }
  office {
    remote_addrs = 192.0.2.1
    local { auth = psk }
    remote { auth = psk }
  }
}
`

func TestPolicyCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.conf")
	os.WriteFile(good, []byte(goodPolicy), 0o644)
	out := ok(t, dir, "", "policy", "check", good)
	wantContains(t, "check output", out, "good.conf: ok", "lan (btns)", "office (swanctl)")

	syntax := filepath.Join(dir, "syntax.conf")
	os.WriteFile(syntax, []byte("connections {\n  lan {\n    btns { enabled = maybe }\n  }\n}\n"), 0o644)
	owned := filepath.Join(dir, "owned.conf")
	os.WriteFile(owned, []byte("connections {\n  lan {\n    btns { enabled = yes }\n    remote { auth = pubkey }\n  }\n}\n"), 0o644)
	r := btnsctl(t, dir, "", "policy", "check", good, syntax, owned)
	if r.code != ExitError {
		t.Fatalf("check of bad files: exit %d, want %d\n%s", r.code, ExitError, r.stderr)
	}
	wantContains(t, "check errors", r.stderr,
		syntax+":3:", "maybe", // the bad value, at its position
		owned+":2:", "remote.auth is set by btnsd",
		"2 of 3 file(s) bad")

	r = btnsctl(t, dir, "", "policy", "check", filepath.Join(dir, "missing.conf"))
	if r.code != ExitError || !strings.Contains(r.stderr, "missing.conf") {
		t.Fatalf("check of a missing file: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestPolicyRender(t *testing.T) {
	root := t.TempDir()
	if _, _, err := fingerprints.LoadOrCreateHostKey(fingerprints.HostKeyPath(root)); err != nil {
		t.Fatal(err)
	}
	store, err := fingerprints.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := fptest.Key(1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Add(peer, fingerprints.Meta{Trust: fingerprints.Trusted}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, "p.conf")
	os.WriteFile(file, []byte(goodPolicy), 0o644)
	out := ok(t, root, "", "policy", "render", file)
	var msgs []map[string]map[string]any
	if err := json.Unmarshal([]byte(out), &msgs); err != nil {
		t.Fatalf("render output is not a JSON array of messages: %v\n%s", err, out)
	}
	names := map[string]map[string]any{}
	for _, m := range msgs {
		for n, body := range m {
			names[n] = body
		}
	}
	lan := names["btns.lan."+peer.Fingerprint.Hex()[:16]]
	if lan == nil || names["btns.office"] == nil || len(names) != 2 {
		t.Fatalf("rendered connections: %v", out)
	}
	remote := lan["remote"].(map[string]any)
	if remote["id"] != peer.KeyID.Swanctl() || remote["auth"] != "pubkey" {
		t.Errorf("remote of the BTNS connection: %v", remote)
	}
}

func TestDaemonCommandsSayWhenBtnsdIsNotRunning(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{"status"}, {"policy", "status"}, {"audit"}} {
		r := btnsctl(t, dir, "", append(args, "--socket", filepath.Join(dir, "none.sock"))...)
		if r.code != ExitError || !strings.Contains(r.stderr, "btnsd is not running") {
			t.Errorf("btnsctl %v without btnsd: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
}
