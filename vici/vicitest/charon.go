// Package vicitest provides a fake charon for testing the packages above
// vici without a daemon: Charon has the method set of *vici.Client, keeps
// its state in memory, records every call and emits events on demand.
//
// Consumers declare the narrow interface they need (the methods of
// vici.Client they call) and pass a *vici.Client in production and a
// *vicitest.Charon in tests:
//
//	type saSource interface {
//		ListSAs(ctx context.Context, f vici.ListSAsFilter) ([]vici.IKESA, error)
//		Watch(ctx context.Context) <-chan vici.Event
//	}
//
// The fake works at the level of meaning, not the wire: it answers like
// charon 5.9.8 where that matters to btnsd (load-conn replaces, unload-conn
// of an unknown name and terminate without a match are refused with
// charon's messages), and leaves SAs and events to the test (SetSAs, Emit).
package vicitest

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/btnsd/btnsd/vici"
)

// Call is one command received by a Charon.
type Call struct {
	// Command is the VICI command name: "load-conn", "list-sas", ...
	Command string
	// Args is the request message a vici.Client would send for this call
	// (a clone; for LoadShared it contains the secret).
	Args *vici.Msg
}

// Charon is an in-memory fake of charon behind a vici.Client. The zero
// value is not usable; call New. A Charon is safe for concurrent use.
type Charon struct {
	mu      sync.Mutex
	conns   map[string]*vici.Msg
	order   []string // connection names in load order
	keys    map[string]*vici.Msg
	shared  map[string]vici.SharedSecret
	sas     []vici.IKESA
	calls   []Call
	fail    map[string][]error
	version vici.Version
	closed  bool
	handler func(cmd string, in *vici.Msg) (*vici.Msg, error)
	subs    map[*subscriber]struct{}
	events  *subscriber // the Events channel, once asked for
}

type subscriber struct {
	mu     sync.Mutex // held while sending, so that close waits
	ch     chan vici.Event
	done   chan struct{}
	closed bool
}

// New returns an empty Charon that reports itself as charon 5.9.8.
func New() *Charon {
	return &Charon{
		conns:   make(map[string]*vici.Msg),
		keys:    make(map[string]*vici.Msg),
		shared:  make(map[string]vici.SharedSecret),
		fail:    make(map[string][]error),
		subs:    make(map[*subscriber]struct{}),
		version: vici.Version{Daemon: "charon", Version: "5.9.8", Sysname: "Linux", Release: "6.1.0", Machine: "x86_64"},
	}
}

// Refusal returns the error a vici.Client returns when charon refuses cmd
// with errmsg, for FailNext.
func Refusal(cmd, errmsg string) error {
	return &vici.CommandError{Command: cmd, Errmsg: errmsg}
}

// FailNext makes the next call of the VICI command cmd ("load-conn",
// "list-sas", ...) fail with err, without any effect. Calls queue up:
// FailNext twice fails the next two calls. Use Refusal for charon's
// refusals, or wrap a syscall error (e.g. syscall.ECONNREFUSED) to mimic an
// unreachable charon (vici.Unavailable reports true for it).
func (c *Charon) FailNext(cmd string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fail[cmd] = append(c.fail[cmd], err)
}

// Calls returns the calls received since New or ResetCalls, oldest first.
func (c *Charon) Calls() []Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

// ResetCalls forgets the recorded calls (and so resets Stats).
func (c *Charon) ResetCalls() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = nil
}

// Stats counts the recorded calls by command, like vici.Client.Stats.
func (c *Charon) Stats() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]uint64)
	for _, call := range c.calls {
		m[call.Command]++
	}
	return m
}

// SetSAs replaces the SAs that ListSAs reports (deep copies are kept).
func (c *Charon) SetSAs(sas []vici.IKESA) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sas = cloneSAs(sas)
}

// SAs returns the current SAs (after SetSAs and any Terminate).
func (c *Charon) SAs() []vici.IKESA {
	c.mu.Lock()
	defer c.mu.Unlock()
	return cloneSAs(c.sas)
}

// Conns returns the loaded connections by name (clones).
func (c *Charon) Conns() map[string]*vici.Msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]*vici.Msg, len(c.conns))
	for k, v := range c.conns {
		out[k] = v.Clone()
	}
	return out
}

// Keys returns the loaded private keys by the id LoadKey returned: a
// message with "type" and "data".
func (c *Charon) Keys() map[string]*vici.Msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]*vici.Msg, len(c.keys))
	for k, v := range c.keys {
		out[k] = v.Clone()
	}
	return out
}

// Shared returns the loaded shared secrets by ID.
func (c *Charon) Shared() map[string]vici.SharedSecret {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.shared)
}

// SetVersion sets what Version answers.
func (c *Charon) SetVersion(v vici.Version) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.version = v
}

// HandleCall sets the function that answers the generic Call (by default,
// an empty response).
func (c *Charon) HandleCall(h func(cmd string, in *vici.Msg) (*vici.Msg, error)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.handler = h
}

// Restart simulates a charon restart: every connection, key, shared secret
// and SA is gone, and every Watch channel receives a Resync (reason
// vici.ReasonReconnected), as a real stream would after reconnecting.
func (c *Charon) Restart() {
	c.mu.Lock()
	c.conns = make(map[string]*vici.Msg)
	c.order = nil
	c.keys = make(map[string]*vici.Msg)
	c.shared = make(map[string]vici.SharedSecret)
	c.sas = nil
	c.mu.Unlock()
	c.Emit(vici.Resync{Time: time.Now(), Reason: vici.ReasonReconnected})
}

// begin records a call and returns the error to fail it with, if any: ctx
// done, closed, or a queued FailNext.
func (c *Charon) begin(ctx context.Context, cmd string, args *vici.Msg) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, Call{Command: cmd, Args: args.Clone()})
	if c.closed {
		return fmt.Errorf("vici: client closed: %w", net.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("vici: %s: %w", cmd, err)
	}
	if q := c.fail[cmd]; len(q) > 0 {
		c.fail[cmd] = q[1:]
		return q[0]
	}
	return nil
}

// Close makes later calls fail like those of a closed vici.Client. Watch
// channels are not affected (they end with their context).
func (c *Charon) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

// Call records the command and answers with the HandleCall function, or
// an empty message.
func (c *Charon) Call(ctx context.Context, cmd string, in *vici.Msg) (*vici.Msg, error) {
	if in == nil {
		in = vici.NewMsg()
	}
	if err := c.begin(ctx, cmd, in); err != nil {
		return nil, err
	}
	c.mu.Lock()
	h := c.handler
	c.mu.Unlock()
	if h == nil {
		return vici.NewMsg(), nil
	}
	return h(cmd, in.Clone())
}

// Version answers what SetVersion set (charon 5.9.8 by default).
func (c *Charon) Version(ctx context.Context) (vici.Version, error) {
	if err := c.begin(ctx, "version", vici.NewMsg()); err != nil {
		return vici.Version{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version, nil
}

// LoadConn stores (or replaces) the connection name.
func (c *Charon) LoadConn(ctx context.Context, name string, conn *vici.Msg) error {
	if err := c.begin(ctx, "load-conn", vici.LoadConnMsg(name, conn)); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.conns[name]; !ok {
		c.order = append(c.order, name)
	}
	if conn == nil {
		conn = vici.NewMsg()
	}
	c.conns[name] = conn.Clone()
	return nil
}

// UnloadConn removes the connection name; its SAs stay, as in charon.
func (c *Charon) UnloadConn(ctx context.Context, name string) error {
	m := vici.NewMsg()
	m.Set("name", name)
	if err := c.begin(ctx, "unload-conn", m); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.conns[name]; !ok {
		return Refusal("unload-conn", "unload: connection '"+name+"' not found")
	}
	delete(c.conns, name)
	c.order = slices.DeleteFunc(c.order, func(n string) bool { return n == name })
	return nil
}

// GetConns returns the loaded connection names in load order.
func (c *Charon) GetConns(ctx context.Context) ([]string, error) {
	if err := c.begin(ctx, "get-conns", vici.NewMsg()); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.order), nil
}

// ListConns returns the loaded connections in load order, with the bodies
// as loaded (charon's list-conns reports a different shape; tests that
// care should build their own).
func (c *Charon) ListConns(ctx context.Context) ([]vici.Conn, error) {
	if err := c.begin(ctx, "list-conns", vici.NewMsg()); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]vici.Conn, 0, len(c.order))
	for _, name := range c.order {
		out = append(out, vici.Conn{Name: name, Body: c.conns[name].Clone()})
	}
	return out, nil
}

// LoadKey stores the key and returns an id: the hex SHA-1 of data (charon
// uses the SHA-1 of the public key, which the fake does not compute).
func (c *Charon) LoadKey(ctx context.Context, typ string, data []byte) (string, error) {
	if err := c.begin(ctx, "load-key", vici.LoadKeyMsg(typ, data)); err != nil {
		return "", err
	}
	sum := sha1.Sum(data)
	id := hex.EncodeToString(sum[:])
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keys[id] = vici.LoadKeyMsg(typ, data)
	return id, nil
}

// LoadShared stores (or replaces, by ID) the shared secret.
func (c *Charon) LoadShared(ctx context.Context, s vici.SharedSecret) error {
	if err := c.begin(ctx, "load-shared", s.Msg()); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s.Data = slices.Clone(s.Data)
	s.Owners = slices.Clone(s.Owners)
	c.shared[s.ID] = s
	return nil
}

// UnloadShared removes the shared secret id. Like charon 5.9.8, it
// succeeds for an unknown id.
func (c *Charon) UnloadShared(ctx context.Context, id string) error {
	m := vici.NewMsg()
	m.Set("id", id)
	if err := c.begin(ctx, "unload-shared", m); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.shared, id)
	return nil
}

// ListSAs returns copies of the SAs set with SetSAs that match f.
func (c *Charon) ListSAs(ctx context.Context, f vici.ListSAsFilter) ([]vici.IKESA, error) {
	if err := c.begin(ctx, "list-sas", f.Msg()); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []vici.IKESA
	for _, sa := range c.sas {
		if (f.IKE == "" || sa.Name == f.IKE) && (f.IKEID == 0 || sa.UniqueID == f.IKEID) {
			out = append(out, cloneSA(sa))
		}
	}
	return out, nil
}

// Initiate succeeds when a loaded connection (o.IKE, or any) has the child
// o.Child under "children"; it creates no SA and emits nothing (use SetSAs
// and Emit). Otherwise it is refused as by charon.
func (c *Charon) Initiate(ctx context.Context, o vici.InitiateOpts) error {
	if err := c.begin(ctx, "initiate", o.Msg()); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if o.Child == "" {
		return Refusal("initiate", "missing configuration name")
	}
	for _, name := range c.order {
		if o.IKE != "" && name != o.IKE {
			continue
		}
		if c.conns[name].Section("children").Section(o.Child) != nil {
			return nil
		}
	}
	return Refusal("initiate", "CHILD_SA config '"+o.Child+"' not found")
}

// Terminate removes the matching SAs (CHILD_SAs when o.Child or o.ChildID
// is set, else IKE_SAs) from those set with SetSAs; it emits nothing. With
// no match it is refused as by charon.
func (c *Charon) Terminate(ctx context.Context, o vici.TerminateOpts) error {
	if err := c.begin(ctx, "terminate", o.Msg()); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if o.Child == "" && o.IKE == "" && o.ChildID == 0 && o.IKEID == 0 {
		return Refusal("terminate", "missing terminate selector")
	}
	matches := 0
	childSel := o.Child != "" || o.ChildID != 0
	kept := c.sas[:0]
	for _, sa := range c.sas {
		ikeMatch := (o.IKE == "" || sa.Name == o.IKE) && (o.IKEID == 0 || sa.UniqueID == o.IKEID)
		if !childSel {
			if ikeMatch {
				matches++
				continue
			}
			kept = append(kept, sa)
			continue
		}
		if ikeMatch {
			sa.Children = slices.DeleteFunc(sa.Children, func(ch vici.ChildSA) bool {
				m := (o.Child == "" || ch.Name == o.Child) && (o.ChildID == 0 || ch.UniqueID == o.ChildID)
				if m {
					matches++
				}
				return m
			})
		}
		kept = append(kept, sa)
	}
	c.sas = kept
	if matches == 0 {
		return Refusal("terminate", "no matching SAs to terminate found")
	}
	return nil
}

// Rekey succeeds when an SA set with SetSAs matches; it changes nothing and
// emits nothing. With no match it is refused as by charon.
func (c *Charon) Rekey(ctx context.Context, o vici.RekeyOpts) error {
	if err := c.begin(ctx, "rekey", o.Msg()); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if o.Child == "" && o.IKE == "" && o.ChildID == 0 && o.IKEID == 0 {
		return Refusal("rekey", "missing rekey selector")
	}
	childSel := o.Child != "" || o.ChildID != 0
	for _, sa := range c.sas {
		if (o.IKE != "" && sa.Name != o.IKE) || (o.IKEID != 0 && sa.UniqueID != o.IKEID) {
			continue
		}
		if !childSel {
			return nil
		}
		for _, ch := range sa.Children {
			if (o.Child == "" || ch.Name == o.Child) && (o.ChildID == 0 || ch.UniqueID == o.ChildID) {
				return nil
			}
		}
	}
	return Refusal("rekey", "no matching SAs to rekey found")
}

// Watch returns a channel that, like vici.Watch, first delivers a Resync
// (reason vici.ReasonConnected) and then every event passed to Emit, until
// ctx is done, when it is closed. It records no call.
func (c *Charon) Watch(ctx context.Context) <-chan vici.Event {
	s := &subscriber{ch: make(chan vici.Event, 1024), done: make(chan struct{})}
	s.ch <- vici.Resync{Time: time.Now(), Reason: vici.ReasonConnected}
	c.mu.Lock()
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	go func() {
		<-ctx.Done()
		c.mu.Lock()
		delete(c.subs, s)
		c.mu.Unlock()
		close(s.done)
		s.mu.Lock()
		s.closed = true
		close(s.ch)
		s.mu.Unlock()
	}()
	return s.ch
}

// Events returns a channel that receives every event passed to Emit from
// the first call of Events on (the same channel each time, never closed,
// no initial Resync). Prefer Watch, which behaves like the real stream.
func (c *Charon) Events() <-chan vici.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.events == nil {
		c.events = &subscriber{ch: make(chan vici.Event, 1024), done: make(chan struct{})}
		c.subs[c.events] = struct{}{}
	}
	return c.events.ch
}

// Emit delivers ev to Events (once asked for) and to every open Watch
// channel, in the order of Emit calls. Each channel buffers 1024 events;
// Emit blocks while one is full (a Watch channel stops blocking when its
// context is done).
func (c *Charon) Emit(ev vici.Event) {
	c.mu.Lock()
	subs := make([]*subscriber, 0, len(c.subs))
	for s := range c.subs {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	for _, s := range subs {
		s.mu.Lock()
		if !s.closed {
			select {
			case s.ch <- ev:
			case <-s.done:
			}
		}
		s.mu.Unlock()
	}
}

func cloneSAs(sas []vici.IKESA) []vici.IKESA {
	if sas == nil {
		return nil
	}
	out := make([]vici.IKESA, len(sas))
	for i, sa := range sas {
		out[i] = cloneSA(sa)
	}
	return out
}

func cloneSA(sa vici.IKESA) vici.IKESA {
	sa.Children = slices.Clone(sa.Children)
	for i := range sa.Children {
		sa.Children[i].LocalTS = slices.Clone(sa.Children[i].LocalTS)
		sa.Children[i].RemoteTS = slices.Clone(sa.Children[i].RemoteTS)
	}
	return sa
}
