package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/btnsd/btnsd/btnsauth"
	"github.com/btnsd/btnsd/fingerprints"
	"github.com/btnsd/btnsd/vici"
	"github.com/btnsd/btnsd/vici/vicitest"
)

// testEnv is a daemon on a temporary root, talking to a fake charon.
type testEnv struct {
	t     *testing.T
	root  string
	store *fingerprints.Store
	fake  *vicitest.Charon
	d     *daemon
	done  chan error
}

func newEnv(t *testing.T, files map[string]string) *testEnv {
	t.Helper()
	root := t.TempDir()
	pdir := filepath.Join(root, "policy.d")
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range files {
		writeFile(t, filepath.Join(pdir, name), text)
	}
	store, err := fingerprints.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	signer, pub, err := fingerprints.LoadOrCreateHostKey(fingerprints.HostKeyPath(root))
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{t: t, root: root, store: store, fake: vicitest.New(), done: make(chan error, 1)}
	cfg := Config{Root: root, RunDir: filepath.Join(root, "run"), Debounce: 5 * time.Millisecond, Logf: t.Logf}
	e.d = newDaemon(cfg, e.fake, store, signer, pub)
	return e
}

func (e *testEnv) start() {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { e.done <- e.d.run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		select {
		case <-e.done:
		case <-time.After(5 * time.Second):
			e.t.Error("daemon did not stop")
		}
	})
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// cli opens the store as btnsctl does: another Store on the same files,
// whose writes the daemon learns of from the file system only.
func (e *testEnv) cli() *fingerprints.Store {
	e.t.Helper()
	s, err := fingerprints.Open(e.root)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *testEnv) addKey(trust fingerprints.Trust) fingerprints.Entry {
	e.t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	k, err := fingerprints.NewPublicKey(pub)
	if err != nil {
		e.t.Fatal(err)
	}
	ent, err := e.cli().Add(k, fingerprints.Meta{Trust: trust})
	if err != nil {
		e.t.Fatal(err)
	}
	return ent
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *testEnv) connNames() []string {
	var names []string
	for n := range e.fake.Conns() {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func (e *testEnv) calls(cmd string) []string {
	var out []string
	for _, c := range e.fake.Calls() {
		if c.Command == cmd {
			out = append(out, c.Args.Keys()...)
		}
	}
	return out
}

const webPolicy = `connections {
  web {
    btns { enabled = yes }
    children { c { mode = tunnel } }
  }
}
`

const otherPolicy = `connections {
  other {
    remote_addrs = 192.0.2.%d
    local { auth = psk }
    remote { auth = psk }
  }
}
`

func TestDaemonAppliesOnlyDifferences(t *testing.T) {
	e := newEnv(t, map[string]string{"web.conf": webPolicy, "other.conf": fmt.Sprintf(otherPolicy, 1)})
	b := e.addKey(fingerprints.Trusted)
	c := e.addKey(fingerprints.Trusted)
	e.addKey(fingerprints.Untrusted)
	e.start()

	nb := btnsauth.ConnName("web", b.Key.Fingerprint.Hex())
	nc := btnsauth.ConnName("web", c.Key.Fingerprint.Hex())
	want := []string{"btns.other", nb, nc}
	slices.Sort(want)
	waitFor(t, "the initial sync", func() bool { return slices.Equal(e.connNames(), want) })
	if n := len(e.fake.Keys()); n != 1 {
		t.Fatalf("charon has %d private keys, want the host key", n)
	}
	body := e.fake.Conns()[nb]
	if got := body.Section("remote").String("id"); got != b.Key.KeyID.Swanctl() {
		t.Errorf("%s: remote id %q, want %q", nb, got, b.Key.KeyID.Swanctl())
	}

	// Editing one file re-sends that file's connection only.
	e.fake.ResetCalls()
	writeFile(t, filepath.Join(e.root, "policy.d", "other.conf"), fmt.Sprintf(otherPolicy, 2))
	waitFor(t, "the edit", func() bool {
		return slices.Contains(e.fake.Conns()["btns.other"].List("remote_addrs"), "192.0.2.2")
	})
	time.Sleep(50 * time.Millisecond) // let any further (wrong) call happen
	if got := e.calls("load-conn"); !slices.Equal(got, []string{"btns.other"}) {
		t.Errorf("load-conn calls after editing other.conf: %v, want only btns.other", got)
	}
	if got := e.calls("unload-conn"); len(got) > 0 {
		t.Errorf("unload-conn calls after an edit: %v", got)
	}

	// A broken edit changes nothing in charon and is reported with its
	// position; the last good version stays in force.
	e.fake.ResetCalls()
	writeFile(t, filepath.Join(e.root, "policy.d", "other.conf"), "connections {\n  other {\n    remote_addrs = 192.0.2.3\n")
	waitFor(t, "the error in the status", func() bool {
		for _, f := range e.d.status.Load().Policies {
			if strings.HasSuffix(f.File, "other.conf") && f.Error != "" {
				return f.Running == "last-good"
			}
		}
		return false
	})
	var perr string
	for _, f := range e.d.status.Load().Policies {
		if strings.HasSuffix(f.File, "other.conf") {
			perr = f.Error
		}
	}
	if !strings.Contains(perr, "/policy.d/other.conf:3:") && !strings.Contains(perr, "/policy.d/other.conf:4:") {
		t.Errorf("policy error %q does not give file:line", perr)
	}
	if len(e.fake.Calls()) != 0 {
		t.Errorf("a broken file caused VICI calls: %v", e.fake.Calls())
	}
	if !slices.Contains(e.fake.Conns()["btns.other"].List("remote_addrs"), "192.0.2.2") {
		t.Errorf("the last good version of other.conf is not in force")
	}

	// Untrusting a key unloads its connection and terminates its SAs.
	e.fake.SetSAs([]vici.IKESA{{Name: nc, UniqueID: 7, State: "ESTABLISHED"}, {Name: nb, UniqueID: 8, State: "ESTABLISHED"}})
	e.fake.ResetCalls()
	if _, err := e.cli().SetTrust(c.Key.Fingerprint, fingerprints.Untrusted, fingerprints.Actor{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the untrusted key's connection to go", func() bool { return e.fake.Conns()[nc] == nil })
	waitFor(t, "its SA to be terminated", func() bool {
		for _, sa := range e.fake.SAs() {
			if sa.UniqueID == 7 {
				return false
			}
		}
		return true
	})
	if got := e.calls("load-conn"); len(got) != 0 {
		t.Errorf("untrusting a key re-sent connections: %v", got)
	}

	// A charon restart loses everything; btnsd loads it all again.
	e.fake.Restart()
	want = []string{"btns.other", nb}
	slices.Sort(want)
	waitFor(t, "everything loaded again after a restart", func() bool {
		return slices.Equal(e.connNames(), want) && len(e.fake.Keys()) == 1
	})
	if r := e.d.status.Load().Charon.Restarts; r != 1 {
		t.Errorf("status counts %d charon restarts, want 1", r)
	}
}

func TestDaemonAnonymousSecretFollowsPolicy(t *testing.T) {
	anon := `connections {
  pub {
    btns {
      enabled = yes
      peers = none
      anonymous = yes
    }
  }
}
`
	e := newEnv(t, map[string]string{"pub.conf": anon})
	e.start()
	waitFor(t, "the anonymous connection", func() bool { return e.fake.Conns()["btns.pub.anon"] != nil })
	if _, ok := e.fake.Shared()[btnsauth.AnonymousSecretID]; !ok {
		t.Fatal("the public PSK is not loaded beside the anonymous connection")
	}
	if u := e.fake.Conns()["btns.pub.anon"].String("unique"); u != "never" {
		t.Errorf("anonymous connection unique = %q, want never", u)
	}
	os.Remove(filepath.Join(e.root, "policy.d", "pub.conf"))
	waitFor(t, "the public PSK to go with the last anonymous connection", func() bool {
		_, ok := e.fake.Shared()[btnsauth.AnonymousSecretID]
		return !ok && len(e.fake.Conns()) == 0
	})
}

func TestDaemonRefusesUnsafeForeignConnection(t *testing.T) {
	e := newEnv(t, map[string]string{"web.conf": webPolicy})
	wild := vici.NewMsg()
	r := vici.NewMsg()
	r.Set("auth", "pubkey")
	r.Set("id", "%any")
	wild.Set("remote", r)
	if err := e.fake.LoadConn(context.Background(), "wild", wild); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := e.d.run(ctx)
	if err == nil || !strings.Contains(err.Error(), `"wild"`) {
		t.Fatalf("run beside an unsafe foreign connection: err = %v", err)
	}
	if n := len(e.calls("load-conn")); n != 1 { // the test's own
		t.Errorf("btnsd loaded connections before refusing: %d load-conn calls", n-1)
	}
}
