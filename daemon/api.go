package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/btnsd/btnsd/api"
	"github.com/btnsd/btnsd/fingerprints"
)

// maxBody bounds request bodies: API requests are small JSON objects.
const maxBody = 64 << 10

// listenAPI serves the API on the Unix socket in RunDir. A stale socket
// (nothing answers on it) is replaced; a live one means another btnsd runs,
// which is an error. The socket is rw for root and the API group only.
func (d *daemon) listenAPI() (*http.Server, error) {
	path := d.cfg.APISocket()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("another btnsd answers on %s", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	gid, err := lookupGroup(d.cfg.APIGroup)
	if err != nil {
		return nil, err
	}
	d.apiGID = gid
	old := syscall.Umask(0o117)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("giving the API socket to group %s: %w", d.cfg.APIGroup, err)
		}
	}
	srv := &http.Server{
		Handler:           d.routes(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		// No WriteTimeout: the alert stream is long-lived; it bounds each
		// of its writes itself, so that a stuck client is dropped.
		MaxHeaderBytes: 16 << 10,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
	go srv.Serve(ln)
	return srv, nil
}

// lookupGroup returns the id of group name (a name or a number), or -1 for
// none.
func lookupGroup(name string) (int, error) {
	if name == "" {
		return -1, nil
	}
	if id, err := strconv.Atoi(name); err == nil {
		return id, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return -1, fmt.Errorf("API group: %w", err)
	}
	return strconv.Atoi(g.Gid)
}

type connKey struct{}

// peerCred returns the credentials of the process at the other end of the
// request's Unix socket.
func peerCred(r *http.Request) (*syscall.Ucred, error) {
	c, ok := r.Context().Value(connKey{}).(*net.UnixConn)
	if !ok {
		return nil, errors.New("not a Unix socket connection")
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *syscall.Ucred
	var cerr error
	err = raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	if err != nil {
		return nil, err
	}
	return cred, cerr
}

// mayChange reports whether the caller may change state: root, or a member
// of the API group (its primary or a supplementary group, read from /proc
// at the time of the call).
func (d *daemon) mayChange(r *http.Request) (bool, string) {
	cred, err := peerCred(r)
	if err != nil {
		return false, "cannot tell who you are: " + err.Error()
	}
	if cred.Uid == 0 {
		return true, ""
	}
	if d.apiGID >= 0 {
		if int(cred.Gid) == d.apiGID || slices.Contains(procGroups(cred.Pid), d.apiGID) {
			return true, ""
		}
		return false, fmt.Sprintf("uid %d is neither root nor in the API group %s", cred.Uid, d.cfg.APIGroup)
	}
	return false, fmt.Sprintf("uid %d is not root (btnsd runs without --api-group)", cred.Uid)
}

func procGroups(pid int32) []int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Groups:"); ok {
			var gs []int
			for _, g := range strings.Fields(rest) {
				if id, err := strconv.Atoi(g); err == nil {
					gs = append(gs, id)
				}
			}
			return gs
		}
	}
	return nil
}

// change wraps a handler that changes state: it checks the caller and
// bounds the request body.
func (d *daemon) change(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ok, why := d.mayChange(r); !ok {
			writeError(w, http.StatusForbidden, "permission denied: "+why)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		h(w, r)
	}
}

// decode reads a JSON request body into v, refusing unknown fields, and
// writes the error response itself when it fails.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", tooBig.Limit))
		case errors.Is(err, io.EOF):
			writeError(w, http.StatusBadRequest, "empty request body; want a JSON object")
		default:
			writeError(w, http.StatusBadRequest, "bad JSON request: "+err.Error())
		}
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "bad JSON request: more than one value")
		return false
	}
	return true
}

func (d *daemon) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.status.Load())
	})
	mux.HandleFunc("GET /v1/policies", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.status.Load().Policies)
	})
	mux.HandleFunc("GET /v1/audit", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.status.Load().Audit)
	})
	mux.HandleFunc("GET /v1/keys", func(w http.ResponseWriter, r *http.Request) {
		entries := d.store.List()
		out := make([]api.Key, 0, len(entries))
		for _, e := range entries {
			out = append(out, apiKey(e))
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/keys/{fp}", func(w http.ResponseWriter, r *http.Request) {
		fp, err := d.store.Resolve(r.PathValue("fp"))
		if err != nil {
			writeError(w, statusOf(err), err.Error())
			return
		}
		e, ok := d.store.Get(fp)
		if !ok {
			writeError(w, http.StatusNotFound, "no key "+fp.String())
			return
		}
		writeJSON(w, http.StatusOK, apiKey(e))
	})
	d.latchRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return mux
}

func apiKey(e fingerprints.Entry) api.Key {
	k := api.Key{
		Fingerprint: e.Key.Fingerprint.String(),
		Hex:         e.Key.Fingerprint.Hex(),
		KeyID:       e.Key.KeyID.String(),
		Type:        e.Key.Description(),
		Name:        e.Name,
		Trust:       e.Trust.String(),
		Scope:       []string(e.Scope),
		PEM:         string(e.Key.PEM()),
	}
	if !e.Identity.IsZero() {
		k.Identity = e.Identity.String()
	}
	return k
}

// statusOf maps errors of the store and the latch machine to HTTP codes.
func statusOf(err error) int {
	switch {
	case errors.Is(err, fingerprints.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, fingerprints.ErrAmbiguous), errors.Is(err, fingerprints.ErrBadFingerprint):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, api.Error{Error: msg})
}
