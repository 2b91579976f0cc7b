package cli

import (
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btnsd/btnsd/api"
)

// fakeDaemon serves a canned API on a Unix socket and records the
// state-changing calls it gets.
type fakeDaemon struct {
	sock  string
	calls []string
}

func newFakeDaemon(t *testing.T) *fakeDaemon {
	t.Helper()
	f := &fakeDaemon{sock: filepath.Join(t.TempDir(), "btnsd.sock")}
	at := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	latch := api.Latch{
		ID: 6, State: "ESTABLISHED", Proto: "tcp", Local: "10.99.0.1:5001", Remote: "10.99.0.2:40000",
		Cookie: 77, Origin: "policy", Disposition: "reset",
		Peer:       api.Peer{Kind: "key", Fingerprint: "SHA256:peer", ID: "a5:01", PublicKey: "-----BEGIN PUBLIC KEY-----\nX\n-----END PUBLIC KEY-----\n"},
		Protection: api.Protection{Conn: "btns.lan.0123456789abcdef", Child: "host", Protocol: "ESP", Mode: "TUNNEL", Encap: true, Encr: "AES_GCM_16", EncrKeySize: 128, LocalID: "b6:e5"},
		SAs:        []uint64{1}, Created: at, Changed: at, Reason: "latched to child SA 1",
	}
	listener := api.Latch{ID: 5, State: "LISTENER", Proto: "tcp", Local: "10.99.0.1:5001", Origin: "policy", Disposition: "reset", Created: at, Changed: at}
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /v1/latches", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, []api.Latch{listener, latch})
	})
	mux.HandleFunc("GET /v1/latches/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") != "6" {
			reply(w, 404, api.Error{Error: "latch: no such latch"})
			return
		}
		reply(w, 200, latch)
	})
	mux.HandleFunc("GET /v1/latches/{id}/channel-binding", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, api.ChannelBinding{Latch: 6, Value: "c0ffee"})
	})
	mux.HandleFunc("POST /v1/latches/{id}/close", func(w http.ResponseWriter, r *http.Request) {
		var req api.CloseLatch
		json.NewDecoder(r.Body).Decode(&req)
		f.calls = append(f.calls, "close "+r.PathValue("id")+" "+req.Reason)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /v1/alerts", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		enc := json.NewEncoder(w)
		enc.Encode(api.Alert{Latch: 6, Proto: "tcp", Local: "10.99.0.1:5001", Remote: "10.99.0.2:40000", From: "ESTABLISHED", To: "BROKEN", Reason: "conflicting child SA 2", At: at})
		enc.Encode(api.Alert{Latch: 6, Proto: "tcp", Local: "10.99.0.1:5001", Remote: "10.99.0.2:40000", From: "BROKEN", To: "CLOSED", Reason: "socket closed", At: at})
		// The stream ends: btnsctl latch watch returns.
	})
	ln, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return f
}

func TestLatchCommands(t *testing.T) {
	f := newFakeDaemon(t)
	root := t.TempDir()
	sock := "--socket=" + f.sock

	out := ok(t, root, "", "latch", "list", sock)
	wantContains(t, "latch list", out, "ID", "STATE", "6", "ESTABLISHED", "10.99.0.2:40000", "SHA256:peer", "btns.lan.0123456789abcdef/host", "LISTENER")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 {
		t.Errorf("latch list: %d lines, want a header and 2 latches:\n%s", len(lines), out)
	}
	out = ok(t, root, "", "latch", "list", "--state", "established", sock)
	if strings.Contains(out, "LISTENER") {
		t.Errorf("--state established lists a listener:\n%s", out)
	}
	var ls []api.Latch
	if err := json.Unmarshal([]byte(ok(t, root, "", "latch", "list", "--json", sock)), &ls); err != nil || len(ls) != 2 {
		t.Errorf("latch list --json: %v, %d latches", err, len(ls))
	}

	out = ok(t, root, "", "latch", "show", "6", sock)
	wantContains(t, "latch show", out, "latch 6: ESTABLISHED", "tcp 10.99.0.1:5001 -> 10.99.0.2:40000", "peer:        SHA256:peer (IKE identity a5:01)",
		"ESP TUNNEL (UDP-encapsulated)", "AES_GCM_16-128", "on break:    reset", "channel binding: c0ffee", "BEGIN PUBLIC KEY")
	var shown map[string]any
	if err := json.Unmarshal([]byte(ok(t, root, "", "latch", "show", "6", "--json", sock)), &shown); err != nil || shown["channel_binding"] == nil {
		t.Errorf("latch show --json: %v, %v", err, shown)
	}
	r := btnsctl(t, root, "", "latch", "show", "9", sock)
	if r.code != ExitError || !strings.Contains(r.stderr, "no such latch") {
		t.Errorf("latch show of a missing latch: exit %d, %q", r.code, r.stderr)
	}
	r = btnsctl(t, root, "", "latch", "show", "six", sock)
	if r.code != ExitUsage || !strings.Contains(r.stderr, `latch id "six"`) {
		t.Errorf("latch show six: exit %d, %q", r.code, r.stderr)
	}

	out = ok(t, root, "", "latch", "close", "6", "--reason", "maintenance", sock)
	wantContains(t, "latch close", out, "latch 6 closed")
	if len(f.calls) != 1 || f.calls[0] != "close 6 maintenance" {
		t.Errorf("close calls: %v", f.calls)
	}

	out = ok(t, root, "", "latch", "watch", sock)
	wantContains(t, "latch watch", out, "latch 6 tcp 10.99.0.1:5001 -> 10.99.0.2:40000: ESTABLISHED -> BROKEN: conflicting child SA 2", "BROKEN -> CLOSED: socket closed")
	out = ok(t, root, "", "latch", "watch", "--json", sock)
	if n := strings.Count(out, `"latch": 6`); n != 2 {
		t.Errorf("latch watch --json: %d alerts, want 2:\n%s", n, out)
	}

	r = btnsctl(t, root, "", "latch", "list", "--socket="+filepath.Join(root, "none.sock"))
	if r.code != ExitError || !strings.Contains(r.stderr, "btnsd is not running") {
		t.Errorf("latch list without btnsd: exit %d, %q", r.code, r.stderr)
	}
}
