package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/btnsd/btnsd/api"
	"github.com/btnsd/btnsd/latchmon"
	"github.com/btnsd/btnsd/latchmon/sockets"
)

// The test binary doubles as an API client run under other credentials:
// BTNSD_API_CALL="METHOD PATH [BODY]" and BTNSD_API_SOCKET; it prints the
// HTTP status, or "dial: <error>".
func TestMain(m *testing.M) {
	if call := os.Getenv("BTNSD_API_CALL"); call != "" {
		method, rest, _ := strings.Cut(call, " ")
		path, body, _ := strings.Cut(rest, " ")
		hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", os.Getenv("BTNSD_API_SOCKET"))
		}}}
		req, _ := http.NewRequest(method, "http://btnsd"+path, strings.NewReader(body))
		resp, err := hc.Do(req)
		if err != nil {
			fmt.Println("dial:", err)
			os.Exit(0)
		}
		b, _ := io.ReadAll(resp.Body)
		fmt.Println(resp.StatusCode, strings.TrimSpace(string(b)))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// quietSockets is a socket source with no sockets.
type quietSockets struct{}

func (quietSockets) Dump(context.Context) ([]sockets.Socket, error) { return nil, nil }
func (quietSockets) Destroy(sockets.Socket) error                   { return sockets.ErrGone }
func (quietSockets) Watch(ctx context.Context) (<-chan sockets.Event, error) {
	ch := make(chan sockets.Event)
	go func() { <-ctx.Done(); close(ch) }()
	return ch, nil
}

// apiEnv is a running daemon (fake charon, no sockets) serving its API.
func apiEnv(t *testing.T) (*testEnv, *api.Client) {
	t.Helper()
	e := newEnv(t, map[string]string{"web.conf": webPolicy})
	mon, err := latchmon.New(latchmon.Config{SAs: e.fake, Sockets: quietSockets{}, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	e.d.mon = mon
	srv, err := e.d.listenAPI()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	e.start()
	c := api.NewClient(e.d.cfg.APISocket())
	waitFor(t, "the first sync", func() bool {
		s, err := c.Status(context.Background())
		return err == nil && !s.LastSync.IsZero()
	})
	return e, c
}

func raw(t *testing.T, sock, method, path, body string) (int, string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	req, err := http.NewRequest(method, "http://btnsd"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e api.Error
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(b, &e); err != nil || e.Error == "" {
			t.Errorf("%s %s: %d with a body that is no JSON error: %q", method, path, resp.StatusCode, b)
		}
		return resp.StatusCode, e.Error
	}
	return resp.StatusCode, string(b)
}

func TestAPIBadRequests(t *testing.T) {
	e, _ := apiEnv(t)
	sock := e.d.cfg.APISocket()
	tests := []struct {
		method, path, body string
		code               int
		want               string // in the error message
	}{
		{"GET", "/v1/nothing", "", 404, "no such endpoint"},
		{"GET", "/v1/latches/x", "", 400, `latch id "x"`},
		{"GET", "/v1/latches/0", "", 400, `latch id "0"`},
		{"GET", "/v1/latches/42", "", 404, "no such latch"},
		{"GET", "/v1/latches/find?proto=sctp&local=10.0.0.1:1", "", 400, `proto "sctp"`},
		{"GET", "/v1/latches/find?proto=tcp&local=10.0.0.1", "", 400, `local "10.0.0.1"`},
		{"GET", "/v1/latches/find?proto=tcp&local=10.0.0.1:80&remote=10.0.0.2:9", "", 404, "no latch"},
		{"POST", "/v1/latches", "", 400, "empty request body"},
		{"POST", "/v1/latches", "{", 400, "bad JSON"},
		{"POST", "/v1/latches", `{"proto":"tcp","local":"10.0.0.1:80","colour":"red"}`, 400, `unknown field "colour"`},
		{"POST", "/v1/latches", `{"proto":"tcp","local":"10.0.0.1:80","on_break":"explode"}`, 400, `on_break "explode"`},
		{"POST", "/v1/latches", `{"proto":"tcp","local":"10.0.0.1:80","remote":"10.0.0.2:9","peer":"SHA256:nope"}`, 400, "peer:"},
		{"POST", "/v1/latches", `{"proto":"tcp","local":"10.0.0.1:80"} {}`, 400, "more than one value"},
		{"POST", "/v1/latches", `{"proto":"tcp","local":"10.0.0.1:80","remote":"10.0.0.2:9","peer":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "over 65536 bytes"},
		{"DELETE", "/v1/latches/7", "", 404, "no such latch"},
		{"POST", "/v1/latches/7/close", `{"reason":"x"}`, 404, "no such latch"},
		{"GET", "/v1/keys/ffff", "", 404, ""},
	}
	for _, tt := range tests {
		code, msg := raw(t, sock, tt.method, tt.path, tt.body)
		if code != tt.code || !strings.Contains(msg, tt.want) {
			t.Errorf("%s %s: %d %q, want %d with %q", tt.method, tt.path, code, msg, tt.code, tt.want)
		}
	}
	// The daemon still serves after all that.
	if code, _ := raw(t, sock, "GET", "/v1/status", ""); code != 200 {
		t.Errorf("status after bad requests: %d", code)
	}
}

// A client that sends half a request and stalls ties up nothing: others
// are served at once, and the stalled connection is dropped.
func TestAPISlowClientDoesNotBlock(t *testing.T) {
	e, c := apiEnv(t)
	stuck, err := net.Dial("unix", e.d.cfg.APISocket())
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	fmt.Fprintf(stuck, "POST /v1/latches HTTP/1.1\r\nHost: btnsd\r\nContent-Length: 100\r\n\r\n{")
	// An alert stream nobody reads.
	follower, err := net.Dial("unix", e.d.cfg.APISocket())
	if err != nil {
		t.Fatal(err)
	}
	defer follower.Close()
	fmt.Fprintf(follower, "GET /v1/alerts HTTP/1.1\r\nHost: btnsd\r\n\r\n")

	start := time.Now()
	for range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Status(ctx)
		cancel()
		if err != nil {
			t.Fatalf("status beside a stalled client: %v", err)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("20 status calls beside stalled clients took %v", d)
	}
}

// The socket is rw for root (and the API group) only; state-changing calls
// also check the caller's credentials, so that a socket opened up by
// mistake still lets others read but not change.
func TestAPIPermissions(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" || os.Getenv("BTNSD_INTEGRATION") == "1" {
			t.Fatal("needs root to run a client as another user; run scripts/test.sh as root")
		}
		t.Skip("needs root to run a client as another user")
	}
	e, _ := apiEnv(t)
	sock := e.d.cfg.APISocket()
	st, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm&0o006 != 0 {
		t.Fatalf("API socket mode %v: writable by others", perm)
	}
	// A copy of the test binary that user nobody can run, in a directory
	// nobody can reach.
	dir, err := os.MkdirTemp("", "btnsd-api-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(sock), 0o755)
	// The test's temporary directories are 0700: open those (and only
	// those, below the system's temporary directory) to nobody.
	tmp := filepath.Clean(os.TempDir())
	for p := filepath.Dir(filepath.Dir(sock)); strings.HasPrefix(p, tmp+string(filepath.Separator)); p = filepath.Dir(p) {
		os.Chmod(p, 0o755)
	}
	self, _ := os.Executable()
	bin := filepath.Join(dir, "client")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	as := func(uid, gid uint32, call string) string {
		cmd := exec.Command(bin)
		cmd.Env = []string{"BTNSD_API_CALL=" + call, "BTNSD_API_SOCKET=" + sock}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("client as %d: %v: %s", uid, err, out.String())
		}
		return strings.TrimSpace(out.String())
	}
	const nobody = 65534
	create := `POST /v1/latches {"proto":"tcp","local":"10.0.0.1:80","remote":"10.0.0.2:9"}`

	if out := as(nobody, nobody, "GET /v1/status"); !strings.Contains(out, "permission denied") {
		t.Errorf("nobody reached the API through a 0660 socket: %s", out)
	}
	// As if an administrator made the socket world-writable: reads work,
	// changes are refused with 403 naming the caller.
	os.Chmod(sock, 0o666)
	if out := as(nobody, nobody, "GET /v1/status"); !strings.HasPrefix(out, "200 ") {
		t.Errorf("nobody reading status: %s", out)
	}
	if out := as(nobody, nobody, create); !strings.HasPrefix(out, "403 ") || !strings.Contains(out, "uid 65534") {
		t.Errorf("nobody creating a latch: %s, want 403 naming uid 65534", out)
	}
	// With an API group, its members may change state.
	e.d.apiGID = 4242
	if out := as(nobody, 4242, create); strings.HasPrefix(out, "403 ") {
		t.Errorf("a member of the API group was refused: %s", out)
	}
	if out := as(nobody, nobody, create); !strings.HasPrefix(out, "403 ") {
		t.Errorf("a non-member was not refused: %s", out)
	}
	// root always may (the answer is about the flow, not the caller).
	if code, msg := raw(t, sock, "POST", "/v1/latches", `{"proto":"tcp","local":"10.0.0.1:80","remote":"10.0.0.2:9"}`); code == 403 {
		t.Errorf("root refused: %s", msg)
	}

}
