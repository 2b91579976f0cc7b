package vici

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	govici "github.com/strongswan/govici/vici"
)

// ErrCommandFailed matches (with errors.Is) every error in which charon
// answered a command with a failure. The error is a *CommandError.
var ErrCommandFailed = errors.New("vici: command failed")

// CommandError is charon's refusal of a command: success = no, or an
// unknown command. Connection failures are never a CommandError.
type CommandError struct {
	// Command is the VICI command, e.g. "load-conn".
	Command string
	// Errmsg is charon's errmsg, e.g. "no matching SAs to terminate found".
	Errmsg string
	// Log holds the control-log lines charon sent during initiate or
	// terminate, oldest first.
	Log []string
}

// Error returns "vici: <command> failed: <errmsg>", with the control-log
// lines, if any, in parentheses.
func (e *CommandError) Error() string {
	var b strings.Builder
	b.WriteString("vici: ")
	b.WriteString(e.Command)
	b.WriteString(" failed")
	if e.Errmsg != "" {
		b.WriteString(": ")
		b.WriteString(e.Errmsg)
	}
	if len(e.Log) > 0 {
		b.WriteString(" (charon log: ")
		b.WriteString(strings.Join(e.Log, "; "))
		b.WriteString(")")
	}
	return b.String()
}

// Is reports whether target is ErrCommandFailed.
func (e *CommandError) Is(target error) bool { return target == ErrCommandFailed }

// Unavailable reports whether err means that charon could not be reached or
// that the connection to it broke (socket missing, connection refused or
// reset, broken pipe, end of stream): charon is down or restarting, and a
// later call may succeed.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	for _, target := range []error{
		syscall.ECONNREFUSED, syscall.ENOENT, syscall.EPIPE, syscall.ECONNRESET,
		syscall.ECONNABORTED, syscall.EAGAIN, io.EOF, io.ErrUnexpectedEOF, io.ErrClosedPipe,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// Client sends commands to charon over one VICI session. It dials lazily,
// on the first call, and after a call fails for any reason other than
// charon's refusal it closes the session and dials again on the next call
// (charon may have restarted). Every call gets a deadline (WithTimeout).
//
// A Client is safe for concurrent use; a mutex serialises the calls, since
// VICI allows one active command per connection. Events are not received
// here: Watch uses a session of its own.
type Client struct {
	path    string
	opts    options
	optList []Option

	mu     sync.Mutex // serialises calls; guards sess, wire, closed
	sess   *govici.Session
	wire   *wireConn
	closed bool

	statsMu sync.Mutex
	stats   map[string]uint64

	// streamHook, if set, runs for every streamed message (tests).
	streamHook func()
}

// New returns a Client for charon's VICI socket at socketPath (usually
// /var/run/charon.vici). It does not dial yet.
func New(socketPath string, opts ...Option) *Client {
	return &Client{path: socketPath, opts: buildOptions(opts), optList: opts, stats: make(map[string]uint64)}
}

// Watch is Watch(ctx, socketPath, opts...) with the socket and options
// given to New: an event stream over a session of its own.
func (c *Client) Watch(ctx context.Context) <-chan Event {
	return Watch(ctx, c.path, c.optList...)
}

// Close closes the session. It waits for a call in progress (bounded by
// its deadline); later calls fail with an error wrapping net.ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.dropLocked()
	return nil
}

// Stats returns how many times each VICI command was sent to charon since
// New (a call that could not connect sends nothing and is not counted);
// for tests and metrics. The map is a copy.
func (c *Client) Stats() map[string]uint64 {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	return maps.Clone(c.stats)
}

func (c *Client) countCmd(cmd string) {
	c.statsMu.Lock()
	c.stats[cmd]++
	c.statsMu.Unlock()
}

// withDeadline applies the client's timeout (or d, if longer) unless ctx
// already ends sooner.
func (c *Client) withDeadline(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	d = max(d, c.opts.timeout)
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

func (c *Client) dropLocked() {
	if c.sess != nil {
		_ = c.sess.Close()
	}
	c.sess, c.wire = nil, nil
}

// session returns the session, dialling if needed. c.mu is held.
func (c *Client) sessionLocked(ctx context.Context) (*govici.Session, error) {
	if c.closed {
		return nil, fmt.Errorf("vici: client closed: %w", net.ErrClosed)
	}
	if c.sess != nil {
		return c.sess, nil
	}
	var w *wireConn
	s, err := govici.NewSession(govici.WithDialContext(dialWire(ctx, c.path, false, &w)))
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", c.path, err)
	}
	c.sess, c.wire = s, w
	return s, nil
}

// do runs one command with the session under c.mu and a deadline at least
// extra long. After any failure but charon's refusal it drops the session,
// since a cancelled or broken exchange may leave the stream out of step.
func (c *Client) do(ctx context.Context, cmd string, extra time.Duration, fn func(context.Context, *govici.Session, *wireConn) error) error {
	ctx, cancel := c.withDeadline(ctx, extra)
	defer cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := ctx.Err(); err != nil {
		// Expired while queued behind another call: the session is fine.
		return fmt.Errorf("vici: %s: %w", cmd, err)
	}
	s, err := c.sessionLocked(ctx)
	if err != nil {
		return fmt.Errorf("vici: %s: %w", cmd, err)
	}
	err = fn(ctx, s, c.wire)
	if err != nil && !errors.Is(err, ErrCommandFailed) && !errors.Is(err, errDecode) {
		c.opts.logf("vici: %s: %v; closing the session, the next call dials again", cmd, err)
		c.dropLocked()
	}
	return err
}

// errDecode marks errors in decoding a well-formed exchange; the session
// stays usable.
var errDecode = errors.New("vici: undecodable response")

// decodeErr wraps a decoding error so that it matches errDecode.
type decodeErr struct{ error }

func (e decodeErr) Unwrap() error      { return e.error }
func (decodeErr) Is(target error) bool { return target == errDecode }

// commandErr translates govici's error for cmd. resp is charon's answer,
// non-nil when charon refused the command.
func commandErr(cmd string, resp *govici.Message, err error) error {
	if resp != nil {
		e := &CommandError{Command: cmd}
		e.Errmsg, _ = resp.Get("errmsg").(string)
		return e
	}
	if strings.Contains(err.Error(), "unexpected response type: 2") {
		return &CommandError{Command: cmd, Errmsg: "unknown command"} // CMD_UNKNOWN
	}
	return fmt.Errorf("vici: %s: %w", cmd, err)
}

// Call sends the command cmd with the arguments in (nil for none) and
// returns charon's response. When charon refuses the command, it returns
// the response too, with a *CommandError. Streaming commands (list-sas,
// initiate, ...) need their typed methods.
func (c *Client) Call(ctx context.Context, cmd string, in *Msg) (*Msg, error) {
	var out *Msg
	err := c.do(ctx, cmd, 0, func(ctx context.Context, s *govici.Session, _ *wireConn) error {
		c.countCmd(cmd)
		resp, err := s.Call(ctx, cmd, toGovici(in))
		if resp != nil {
			out = fromGovici(resp)
		}
		if err != nil {
			return commandErr(cmd, resp, err)
		}
		return nil
	})
	return out, err
}

// stream runs a streaming command, calling each for every event message
// (in order) and returning the first error. It always consumes the whole
// stream, so the session stays in step; the wireConn keeps govici from
// discarding any of it, and the count of events is checked at the end.
func (c *Client) stream(ctx context.Context, cmd, event string, in *Msg, extra time.Duration, each func(*Msg) error) error {
	return c.do(ctx, cmd, extra, func(ctx context.Context, s *govici.Session, w *wireConn) error {
		c.countCmd(cmd)
		w.stream(event)
		defer w.stream("")
		var n uint64
		var eachErr error
		for m, err := range s.CallStreaming(ctx, cmd, event, toGovici(in)) {
			if err != nil {
				return commandErr(cmd, m, err)
			}
			n++
			w.consume()
			if c.streamHook != nil {
				c.streamHook()
			}
			if eachErr == nil {
				eachErr = each(fromGovici(m))
			}
		}
		if got := w.counted.Load(); got != n {
			return fmt.Errorf("vici: %s: got %d of %d %s events", cmd, n, got, event)
		}
		return eachErr
	})
}

// Version is charon's answer to the version command.
type Version struct {
	Daemon, Version, Sysname, Release, Machine string
}

// Version asks charon for its version. Equivalent to: swanctl --version.
func (c *Client) Version(ctx context.Context) (Version, error) {
	m, err := c.Call(ctx, "version", nil)
	if err != nil {
		return Version{}, err
	}
	return Version{
		Daemon:  m.String("daemon"),
		Version: m.String("version"),
		Sysname: m.String("sysname"),
		Release: m.String("release"),
		Machine: m.String("machine"),
	}, nil
}

// LoadConnMsg returns the load-conn request for the connection name with
// the body conn (a swanctl.conf connection section): {name: conn}.
func LoadConnMsg(name string, conn *Msg) *Msg {
	m := NewMsg()
	if conn == nil {
		conn = NewMsg()
	}
	m.Set(name, conn)
	return m
}

// LoadConn loads (or replaces, in one step) the connection name. conn is
// the connection section as in swanctl.conf, with pubkeys as key data.
// Running SAs of a replaced connection stay up. Equivalent to: swanctl
// --load-conns for one connection.
func (c *Client) LoadConn(ctx context.Context, name string, conn *Msg) error {
	_, err := c.Call(ctx, "load-conn", LoadConnMsg(name, conn))
	return err
}

// UnloadConn unloads the connection name; its SAs stay up.
func (c *Client) UnloadConn(ctx context.Context, name string) error {
	m := NewMsg()
	m.Set("name", name)
	_, err := c.Call(ctx, "unload-conn", m)
	return err
}

// GetConns returns the names of the connections loaded over VICI (by any
// client, swanctl's included).
func (c *Client) GetConns(ctx context.Context) ([]string, error) {
	m, err := c.Call(ctx, "get-conns", nil)
	if err != nil {
		return nil, err
	}
	return m.List("conns"), nil
}

// Conn is one connection as list-conns reports it.
type Conn struct {
	Name string
	Body *Msg
}

// ListConns lists every connection charon knows (not only those loaded
// over VICI). Equivalent to: swanctl --list-conns.
func (c *Client) ListConns(ctx context.Context) ([]Conn, error) {
	var out []Conn
	err := c.stream(ctx, "list-conns", "list-conn", nil, 0, func(m *Msg) error {
		for _, name := range m.Keys() {
			if sec := m.Section(name); sec != nil {
				out = append(out, Conn{Name: name, Body: sec})
			}
		}
		return nil
	})
	return out, err
}

// LoadKeyMsg returns the load-key request.
func LoadKeyMsg(typ string, data []byte) *Msg {
	m := NewMsg()
	m.Set("type", typ)
	m.Set("data", string(data))
	return m
}

// LoadKey loads a private key; typ is "rsa", "ecdsa", "ed25519", "any"...,
// data its PEM or DER encoding. It returns charon's key id (hex SHA-1 of the
// subjectPublicKey, not the keyid of list-sas identities).
func (c *Client) LoadKey(ctx context.Context, typ string, data []byte) (string, error) {
	m, err := c.Call(ctx, "load-key", LoadKeyMsg(typ, data))
	if err != nil {
		return "", err
	}
	return m.String("id"), nil
}

// SharedSecret is a shared secret for load-shared.
type SharedSecret struct {
	// ID names the secret so that UnloadShared can remove it.
	ID string
	// Type is IKE, EAP, XAUTH or NTLM.
	Type string
	// Data is the raw secret.
	Data []byte
	// Owners are the identities the secret is for; none means any peer.
	Owners []string
}

// Msg returns the load-shared request. It contains the secret: do not log
// it.
func (s SharedSecret) Msg() *Msg {
	m := NewMsg()
	if s.ID != "" {
		m.Set("id", s.ID)
	}
	m.Set("type", s.Type)
	m.Set("data", string(s.Data))
	if len(s.Owners) > 0 {
		m.Set("owners", append([]string(nil), s.Owners...))
	}
	return m
}

// LoadShared loads (or replaces, by ID) a shared secret.
func (c *Client) LoadShared(ctx context.Context, s SharedSecret) error {
	_, err := c.Call(ctx, "load-shared", s.Msg())
	return err
}

// UnloadShared unloads the shared secret loaded with id.
func (c *Client) UnloadShared(ctx context.Context, id string) error {
	m := NewMsg()
	m.Set("id", id)
	_, err := c.Call(ctx, "unload-shared", m)
	return err
}

// ListSAsFilter selects the IKE_SAs that ListSAs returns; the zero value
// selects all.
type ListSAsFilter struct {
	// IKE selects IKE_SAs by connection name.
	IKE string
	// IKEID selects the IKE_SA with this unique id.
	IKEID uint64
	// NoBlock lists without waiting for IKE_SAs that are busy (checked
	// out by another thread); those are then missing.
	NoBlock bool
}

// Msg returns the list-sas request.
func (f ListSAsFilter) Msg() *Msg {
	m := NewMsg()
	if f.NoBlock {
		m.Set("noblock", "yes")
	}
	if f.IKE != "" {
		m.Set("ike", f.IKE)
	}
	if f.IKEID != 0 {
		m.Set("ike-id", strconv.FormatUint(f.IKEID, 10))
	}
	return m
}

// ListSAs lists the IKE_SAs and their CHILD_SAs; a nil error means a
// complete listing (see wireConn for how govici's drops are prevented). An
// entry that cannot be decoded fails the call. Equivalent to:
// swanctl --list-sas.
func (c *Client) ListSAs(ctx context.Context, f ListSAsFilter) ([]IKESA, error) {
	var out []IKESA
	err := c.stream(ctx, "list-sas", "list-sa", f.Msg(), 0, func(m *Msg) error {
		sas, err := DecodeSAs(m)
		if err != nil {
			return decodeErr{err}
		}
		out = append(out, sas...)
		return nil
	})
	return out, err
}

// InitiateOpts says what Initiate brings up.
type InitiateOpts struct {
	// Child is the CHILD_SA configuration to initiate (required by charon).
	Child string
	// IKE is the connection to find Child in (optional).
	IKE string
	// Timeout bounds charon's wait for the result: 0 waits until it is
	// known (the call's deadline still applies), a negative value returns
	// at once without a result.
	Timeout time.Duration
}

// Msg returns the initiate request.
func (o InitiateOpts) Msg() *Msg {
	m := NewMsg()
	if o.Child != "" {
		m.Set("child", o.Child)
	}
	if o.IKE != "" {
		m.Set("ike", o.IKE)
	}
	setTimeout(m, o.Timeout)
	return m
}

func setTimeout(m *Msg, d time.Duration) {
	switch {
	case d < 0:
		m.Set("timeout", "-1")
	case d > 0:
		m.Set("timeout", strconv.FormatInt(max(d.Milliseconds(), 1), 10))
	}
}

// logged runs a command that streams control-log (initiate, terminate)
// and, when charon refuses it, gives the *CommandError the log lines.
// timeout is charon's own wait; the call's deadline gets 2 s more.
func (c *Client) logged(ctx context.Context, cmd string, in *Msg, timeout time.Duration) error {
	var log []string
	err := c.stream(ctx, cmd, "control-log", in, timeout+2*time.Second, func(m *Msg) error {
		if s := m.String("msg"); s != "" {
			log = append(log, s)
		}
		return nil
	})
	var ce *CommandError
	if errors.As(err, &ce) {
		ce.Log = log
	}
	return err
}

// Initiate brings up a CHILD_SA (and its IKE_SA if needed). On failure the
// *CommandError carries charon's control-log lines. Equivalent to:
// swanctl --initiate --child <Child>.
func (c *Client) Initiate(ctx context.Context, o InitiateOpts) error {
	return c.logged(ctx, "initiate", o.Msg(), o.Timeout)
}

// TerminateOpts selects the SAs Terminate takes down: by name or id, a
// CHILD_SA when Child or ChildID is set, else IKE_SAs.
type TerminateOpts struct {
	IKE, Child     string
	IKEID, ChildID uint64 // ChildID is the CHILD_SA's unique id
	// Force deletes an IKE_SA without waiting for the peer's answer to
	// the DELETE.
	Force bool
	// Timeout bounds charon's wait, as in InitiateOpts.
	Timeout time.Duration
}

// setSelector sets the SA selection that terminate and rekey share.
func setSelector(m *Msg, ike, child string, ikeID, childID uint64) {
	if child != "" {
		m.Set("child", child)
	}
	if ike != "" {
		m.Set("ike", ike)
	}
	if childID != 0 {
		m.Set("child-id", strconv.FormatUint(childID, 10))
	}
	if ikeID != 0 {
		m.Set("ike-id", strconv.FormatUint(ikeID, 10))
	}
}

// Msg returns the terminate request.
func (o TerminateOpts) Msg() *Msg {
	m := NewMsg()
	setSelector(m, o.IKE, o.Child, o.IKEID, o.ChildID)
	if o.Force {
		m.Set("force", "yes")
	}
	setTimeout(m, o.Timeout)
	return m
}

// Terminate takes SAs down. charon answers "no matching SAs to terminate
// found" (a *CommandError) when nothing matches. Equivalent to: swanctl
// --terminate.
func (c *Client) Terminate(ctx context.Context, o TerminateOpts) error {
	return c.logged(ctx, "terminate", o.Msg(), o.Timeout)
}

// RekeyOpts selects the SAs Rekey rekeys, as in TerminateOpts.
type RekeyOpts struct {
	IKE, Child     string
	IKEID, ChildID uint64
	// Reauth reauthenticates an IKEv2 SA instead of rekeying it.
	Reauth bool
}

// Msg returns the rekey request.
func (o RekeyOpts) Msg() *Msg {
	m := NewMsg()
	setSelector(m, o.IKE, o.Child, o.IKEID, o.ChildID)
	if o.Reauth {
		m.Set("reauth", "yes")
	}
	return m
}

// Rekey queues the rekeying of the selected SAs and returns without
// waiting for it; the result shows as ike-rekey/child-rekey events (or
// down/up events for a reauthentication). Equivalent to: swanctl --rekey.
func (c *Client) Rekey(ctx context.Context, o RekeyOpts) error {
	_, err := c.Call(ctx, "rekey", o.Msg())
	return err
}
